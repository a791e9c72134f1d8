package natsbus

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

func embedded(t *testing.T, o EmbeddedOptions) *Embedded {
	t.Helper()
	o.StoreDir = t.TempDir()
	if o.MaxPayload == 0 {
		o.MaxPayload = 8 << 20
	}
	e, err := StartEmbedded(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

func testBus() configs.Bus {
	b := configs.DefaultBus()
	b.AckWaitS, b.JobAckWaitS, b.WaitS, b.HeartbeatS = 2, 2, 10, 0.2
	return b
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)) }

func TestSplitURL(t *testing.T) {
	cases := []struct {
		in, clean, user string
		sec             Secrets
	}{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222", "", Secrets{}},
		{"127.0.0.1:4222", "nats://127.0.0.1:4222", "", Secrets{}},
		{"nats://alice:s3cret@h:4222", "nats://h:4222", "alice", Secrets{Password: "s3cret"}},
		{"tls://tok3n@h:4222,nats://h2:4222", "tls://h:4222,nats://h2:4222", "", Secrets{Token: "tok3n"}},
	}
	for _, c := range cases {
		clean, user, sec, err := SplitURL(c.in)
		if err != nil || clean != c.clean || user != c.user || sec != c.sec {
			t.Errorf("SplitURL(%q) = %q %q %+v %v, want %q %q %+v", c.in, clean, user, sec, err, c.clean, c.user, c.sec)
		}
	}
	if _, _, _, err := SplitURL("nats://u:p%zz@h"); err == nil || strings.Contains(err.Error(), "p%zz") {
		t.Errorf("a bad URL gave %v (must fail without echoing it)", err)
	}
}

// TestSecretsNeverLogged: password and token authentication work, and neither the logs, the errors of a
// failed connection nor the printed options show the secret.
func TestSecretsNeverLogged(t *testing.T) {
	cases := []struct {
		name   string
		server EmbeddedOptions
		conn   ConnOptions
		secret string
		ok     bool
	}{
		{"user and password", EmbeddedOptions{User: "alice", Password: "pw-Xy7-secret"}, ConnOptions{User: "alice", Secrets: Secrets{Password: "pw-Xy7-secret"}}, "pw-Xy7-secret", true},
		{"wrong password", EmbeddedOptions{User: "alice", Password: "pw-Xy7-secret"}, ConnOptions{User: "alice", Secrets: Secrets{Password: "wrong-Qq9"}}, "wrong-Qq9", false},
		{"token", EmbeddedOptions{Token: "tok-Zz3-secret"}, ConnOptions{Secrets: Secrets{Token: "tok-Zz3-secret"}}, "tok-Zz3-secret", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := embedded(t, c.server)
			var logs bytes.Buffer
			c.conn.URL, c.conn.Log = e.URL(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			c.conn.Log.Info("connecting", "conn", c.conn)
			nc, err := Connect(c.conn)
			if c.ok != (err == nil) {
				t.Fatalf("connect error %v, want ok=%v", err, c.ok)
			}
			if nc != nil {
				nc.Close()
			}
			all := logs.String() + fmt.Sprint(err) + fmt.Sprintf("%v %+v %s", c.conn, c.conn, c.conn)
			if strings.Contains(all, c.secret) {
				t.Fatalf("the secret shows in logs or errors:\n%s", all)
			}
		})
	}
}

func job(id string, v int64) rollout.Job {
	return rollout.Job{GroupID: id, Task: envs.Task{ID: "1+2", Family: "math", Prompt: "1+2=", Answer: "3"}, Version: v, Seed: 7}
}

func group(id string, n int) *data.Group {
	g := &data.Group{GroupID: id}
	for i := 0; i < 2; i++ {
		tr := data.Trajectory{GroupID: id, PromptID: "1+2", Env: "math", PromptTokens: []int32{1, 2}, KeptOffsets: []int32{0}, FinishReason: "stop",
			RewardParts: map[string]float32{}, Timings: map[string]float32{}}
		for k := 0; k < n; k++ {
			tr.CompletionTokens = append(tr.CompletionTokens, int32((k*31+i)%260))
			tr.LossMask = append(tr.LossMask, 1)
			tr.LogpOld = append(tr.LogpOld, float32(-k)*0.37)
			tr.KeptOffsets = append(tr.KeptOffsets, 0)
		}
		g.Trajectories = append(g.Trajectories, tr)
	}
	return g
}

// TestLearnerWorkerStream: prompts reach workers and groups come back through the streams; a group over the
// max payload is refused and reported, a second copy of a group is de-duplicated, a malformed message is
// terminated and counted; committed groups are never delivered again, uncommitted ones are; a copy of a group
// of a step before the learner's watermark is acked as a duplicate and never collected.
//
// It runs on the embedded server and on Debian's nats-server 2.9.10 (testServers).
func TestLearnerWorkerStream(t *testing.T) {
	for _, srv := range testServers {
		t.Run(srv.name, func(t *testing.T) { testLearnerWorkerStream(t, srv.start(t)) })
	}
}

func testLearnerWorkerStream(t *testing.T, url string) {
	ctx := context.Background()
	b := testBus()
	b.MaxPayload = 8 << 10
	nc, err := Connect(ConnOptions{URL: url, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := NewNames("test run", "rl")
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	l, w := learnerAndWorker(t, ctx, nc, names, b, WithSecret(secret))
	g0, g1, g2 := "rl-000000-000", "rl-000000-001", "rl-000000-002"
	if err := l.Dispatch(ctx, 0, []rollout.Job{job(g0, 0), job(g1, 0), job(g2, 0)}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		j, err := w.NextJob(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 10
		if j.GroupID == g2 {
			n = 4000 // ~30 KB of incompressible-ish values: over the 8 KiB payload
		}
		if err := w.Publish(ctx, group(j.GroupID, n)); err != nil {
			t.Fatal(err)
		}
	}
	// a second copy of g0 with other content, outside the server's de-duplication (no msg id), and garbage
	// for g1, both with their jobs' tokens (so neither is forged)
	dup := &nats.Msg{Subject: names.TrajSubject(), Header: nats.Header{}}
	dup.Data, _ = data.EncodeGroup(group(g0, 3), 272)
	dup.Header.Set(HdrGroup, g0)
	dup.Header.Set(HdrStatus, "ok")
	dup.Header.Set(HdrToken, l.JobToken(g0))
	bad := &nats.Msg{Subject: names.TrajSubject(), Data: []byte("garbage"), Header: nats.Header{}}
	bad.Header.Set(HdrGroup, g1)
	bad.Header.Set(HdrStatus, "ok")
	bad.Header.Set(HdrToken, l.JobToken(g1))
	for _, m := range []*nats.Msg{dup, bad} {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Collect(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].GroupID != g0 || got[1].GroupID != g1 || got[2].GroupID != g2 {
		t.Fatalf("collected %v", got)
	}
	if len(got[0].Trajectories[0].CompletionTokens) != 10 || len(got[2].Trajectories) != 0 {
		t.Fatalf("g0 has %d tokens (want the first copy, 10), oversize g2 has %d trajectories (want 0)", len(got[0].Trajectories[0].CompletionTokens), len(got[2].Trajectories))
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Counts()[CountDuplicate] < 1 || l.Counts()[CountMalformed] < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("counts %v: want a duplicate and a malformed message", l.Counts())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := l.Counts(); c[CountOversize] != 1 || w.Counts()[CountOversize] != 1 {
		t.Fatalf("oversize counted %d by the learner and %d by the worker, want 1 and 1", c[CountOversize], w.Counts()[CountOversize])
	}
	// the stream sequence a checkpoint taken now records: the highest of the groups collected (not of the
	// duplicate or the junk after them, and not one checkpoint behind)
	if seq := l.MaxSeq(); seq != 3 {
		t.Fatalf("MaxSeq after collecting the first three messages = %d, want 3", seq)
	}
	// commit g0 and g2 only; g1 stays pending and comes back to the next learner, the others never do
	if err := l.Commit(ctx, []string{g0, g2}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// the resumed learner has the run's secret: g1, published for the first learner's job, still verifies
	l2, err := NewLearner(ctx, nc, names, b, 272, 0, quiet(), WithSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if err := l2.Dispatch(ctx, 0, []rollout.Job{job(g1, 0)}); err != nil {
		t.Fatal(err)
	}
	got, err = l2.Collect(ctx, 1)
	if err != nil || len(got) != 1 || got[0].GroupID != g1 {
		t.Fatalf("resumed learner collected %v, %v; want g1 redelivered", got, err)
	}
	time.Sleep(300 * time.Millisecond)
	if c := l2.Counts(); c[CountDuplicate] != 0 || c[CountRedelivery] != 1 || c[CountForged] != 0 {
		t.Fatalf("resumed learner counts %v: want g1 redelivered once and nothing committed seen again", c)
	}
	// step 1: a late copy of a step-0 group (another message id) is settled by the watermark
	if err := l2.Commit(ctx, []string{g1}); err != nil {
		t.Fatal(err)
	}
	g3 := "rl-000001-000"
	if err := l2.Dispatch(ctx, 1, []rollout.Job{job(g3, 1)}); err != nil {
		t.Fatal(err)
	}
	late := &nats.Msg{Subject: names.TrajSubject(), Header: nats.Header{}}
	late.Data, _ = data.EncodeGroup(group(g0, 5), 272)
	late.Header.Set(HdrGroup, g0)
	late.Header.Set(HdrStatus, "ok")
	late.Header.Set(HdrToken, l2.JobToken(g0))
	if err := nc.PublishMsg(late); err != nil {
		t.Fatal(err)
	}
	j, err := w.NextJob(ctx)
	if err != nil || j.GroupID != g3 {
		t.Fatalf("worker got %v, %v; want %s", j.GroupID, err, g3)
	}
	if err := w.Publish(ctx, group(g3, 6)); err != nil {
		t.Fatal(err)
	}
	got, err = l2.Collect(ctx, 1)
	if err != nil || len(got) != 1 || got[0].GroupID != g3 {
		t.Fatalf("step 1 collected %v, %v; want %s", got, err, g3)
	}
	deadline = time.Now().Add(5 * time.Second)
	for l2.Counts()[CountDuplicate] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("counts %v: want the late step-0 copy acked as one duplicate", l2.Counts())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestParseGroupIDWatermark: the learner's watermark reads the step from group ids.
func TestParseGroupIDWatermark(t *testing.T) {
	l := &Learner{step: 3, committed: map[string]bool{"rl-a-000003-001": true}}
	for _, c := range []struct {
		id   string
		want bool
	}{{"rl-a-000002-007", true}, {"rl-a-000003-001", true}, {"rl-a-000003-002", false}, {"rl-a-000004-000", false}, {"junk", false}} {
		if got := l.settled(c.id); got != c.want {
			t.Errorf("settled(%q) = %v, want %v", c.id, got, c.want)
		}
	}
}

// TestWeightSync: published weights come back bit for bit with their version; a notice whose hash does not
// match the object is refused.
func TestWeightSync(t *testing.T) {
	e := embedded(t, EmbeddedOptions{})
	ctx := context.Background()
	b := testBus()
	nc, err := Connect(ConnOptions{URL: e.URL(), Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := NewNames("w", "rl")
	cfg := configs.Default().Model
	p := model.NewParams(cfg)
	p.Init(3)
	pub, err := NewWeightPublisher(ctx, nc, names, b, Policy{Attention: configs.AttentionDense}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewWeightFetcher(nc, names, b, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := f.Latest(ctx); err != nil || ok {
		t.Fatalf("Latest before any publication: ok=%v err=%v", ok, err)
	}
	for v := int64(0); v < 5; v++ {
		p.Data[0][0] = float32(v)
		if _, err := pub.Publish(ctx, v, p); err != nil {
			t.Fatal(err)
		}
	}
	n, ok, err := f.Latest(ctx)
	if err != nil || !ok || n.Version != 4 {
		t.Fatalf("Latest = %+v %v %v, want version 4", n, ok, err)
	}
	q, _, err := f.Fetch(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Data {
		if !bytes.Equal(f32bytes(p.Data[i]), f32bytes(q.Data[i])) {
			t.Fatalf("tensor %s differs after the round trip", p.Specs[i].Name)
		}
	}
	bad := n
	bad.SHA256 = strings.Repeat("0", 64)
	if _, _, err := f.Fetch(ctx, bad); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("a notice with the wrong hash gave %v", err)
	}
	if _, _, err := f.Fetch(ctx, Notice{Version: 0, Object: "v000000000000", Bytes: n.Bytes, SHA256: n.SHA256}); err == nil {
		t.Fatal("a deleted old version (only the last 3 are kept) was fetched")
	}
	if err := checkpoints.CopyRounded(model.NewParams(cfg), q, checkpoints.F32); err != nil {
		t.Fatal(err)
	}
}

func f32bytes(v []float32) []byte {
	var b bytes.Buffer
	for _, x := range v {
		fmt.Fprintf(&b, "%08x", x)
	}
	return b.Bytes()
}

// TestMalformedCountedOnce: a malformed message delivered again (a copy redelivered before the server saw its
// termination, as a consumer slowed past its ack wait sees) is terminated again and counted once.
func TestMalformedCountedOnce(t *testing.T) {
	e := embedded(t, EmbeddedOptions{})
	ctx := context.Background()
	nc, err := Connect(ConnOptions{URL: e.URL(), Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := NewNames("test run", "rl")
	l, err := NewLearner(ctx, nc, names, testBus(), 272, 0, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	bad := &nats.Msg{Subject: names.TrajSubject(), Data: []byte("garbage"), Header: nats.Header{}}
	bad.Header.Set(HdrGroup, "g1")
	bad.Header.Set(HdrStatus, "ok")
	bad.Header.Set(HdrToken, l.JobToken("g1"))
	if err := nc.PublishMsg(bad); err != nil {
		t.Fatal(err)
	}
	// The same stream message, delivered twice more through consumers of our own.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		cons, err := js.CreateConsumer(ctx, names.TrajStream(), jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			l.receive(m)
			n++
		}
		if n != 1 {
			t.Fatalf("fetched %d messages, want the malformed one", n)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Counts()[CountMalformed] < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c := l.Counts()[CountMalformed]; c != 1 {
		t.Fatalf("malformed counted %d times, want 1", c)
	}
}

// TestLearnerExpect: groups registered with Expect are collected like dispatched ones, and no prompt is
// published for them.
func TestLearnerExpect(t *testing.T) {
	e := embedded(t, EmbeddedOptions{})
	ctx := context.Background()
	b := testBus()
	nc, err := Connect(ConnOptions{URL: e.URL(), Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := NewNames("expect run", "rl")
	l, w := learnerAndWorker(t, ctx, nc, names, b)
	l.Expect("e1", "e0")
	for _, id := range []string{"e0", "x", "e1"} { // x: published but not expected, so not collected
		w.Grant(id, l.JobToken(id))
		if err := w.Publish(ctx, group(id, 5)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Collect(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GroupID != "e0" || got[1].GroupID != "e1" {
		t.Fatalf("collected %v, want e0 and e1", got)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, names.JobStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("the job stream holds %d messages after Expect, want none", info.State.Msgs)
	}
}

// TestRecentSeqs: a sequence is new once; memory stays at the last n.
func TestRecentSeqs(t *testing.T) {
	r := newRecentSeqs(3)
	for i, c := range []struct {
		seq  uint64
		want bool
	}{{1, true}, {1, false}, {2, true}, {3, true}, {4, true}, {1, true}, {4, false}, {2, true}} {
		if got := r.add(c.seq); got != c.want {
			t.Fatalf("add #%d (%d) = %v, want %v", i, c.seq, got, c.want)
		}
		if len(r.seen) > 3 {
			t.Fatalf("remembers %d sequences, want at most 3", len(r.seen))
		}
	}
}

// learnerAndWorker sets up a learner (vocabulary 272, from step 0, with opts) and a worker client "w" on nc,
// closed when the test ends.
func learnerAndWorker(t *testing.T, ctx context.Context, nc *nats.Conn, names Names, b configs.Bus, opts ...LearnerOption) (*Learner, *WorkerClient) {
	t.Helper()
	l, err := NewLearner(ctx, nc, names, b, 272, 0, quiet(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	w, err := NewWorkerClient(ctx, nc, names, b, 272, "w", quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return l, w
}
