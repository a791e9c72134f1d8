// roles_test.go: the roles of deploy/nats/sparrow-roles.conf and the job tokens, against real servers:
// Debian's nats-server 2.9 as a child process (skipped when it is not installed, unless
// SPARROW_REQUIRE_NATS=1) and the embedded nats-server 2.15 loading the same file. A learner and a worker
// with their own credentials run the normal flow (the learner's lease taken, released, taken again and
// renewed, weights out, a job out, a group back) with no permission violation but the worker's JetStream
// check; the worker's credentials can not publish jobs, weight notices or weight objects, write or read the
// lease, delete a stream, create a consumer or pull the learner's groups; forged reports and groups (no
// token, another secret's token, another group's token), published before their jobs, are terminated and
// counted as forged, and the real groups arrive and are collected.

package natsbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/internal/natstest"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// rolesServers start a server with the roles configuration conf and return its URL.
var rolesServers = []struct {
	name  string
	start func(t *testing.T, conf string) string
}{
	{"debian nats-server 2.9", startDebianNATS},
	{"embedded nats-server 2.15", startEmbeddedConf},
}

// startDebianNATS runs Debian's nats-server with conf (natstest) and returns its URL.
func startDebianNATS(t *testing.T, conf string) string {
	return natstest.Start(t, natstest.Options{Config: conf}).URL()
}

// startEmbeddedConf runs the embedded server with the options conf gives, on a random loopback port.
func startEmbeddedConf(t *testing.T, conf string) string {
	t.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		t.Fatal("embedded server not ready after 15 s")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.ClientURL()
}

// rolesConf writes the repository's roles template filled for names (natstest.RolesConfig).
func rolesConf(t *testing.T, names Names) (path string, passwords map[string]string) {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "sparrow-roles.conf"))
	if err != nil {
		t.Fatal(err)
	}
	return natstest.RolesConfig(t, names.RolesConfig(string(tmpl)))
}

// violations records the permission violations the server reports to one connection.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err)
}

// waitFor waits up to 5 s for a violation naming subject.
func (v *violations) waitFor(subject string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		v.mu.Lock()
		for _, err := range v.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				v.mu.Unlock()
				return nil
			}
		}
		got := fmt.Sprint(v.errs)
		v.mu.Unlock()
		if time.Now().After(deadline) {
			return fmt.Errorf("no permission violation for %q; errors: %s", subject, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRoles(t *testing.T) {
	names := NewNames("roles run", "rl")
	for _, srv := range rolesServers {
		t.Run(srv.name, func(t *testing.T) {
			conf, pw := rolesConf(t, names)
			testRoles(t, srv.start(t, conf), names, pw)
		})
	}
}

// lockedLog is a log that connections of several goroutines write.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testRoles(t *testing.T, url string, names Names, pw map[string]string) {
	ctx := context.Background()
	b := testBus()
	// the logs of the normal flow's connections (Connect logs the server's permission violations): none
	flowLogs := map[*lockedLog]string{}
	defer func() {
		for l, role := range flowLogs {
			for _, line := range strings.Split(l.String(), "\n") {
				if strings.Contains(strings.ToLower(line), "permission") {
					t.Errorf("%s: a permission violation in the normal flow: %s", role, line)
				}
			}
		}
	}()
	connect := func(role string, opts ...nats.Option) *nats.Conn {
		t.Helper()
		var nc *nats.Conn
		var err error
		if opts == nil {
			l := &lockedLog{}
			flowLogs[l] = role
			nc, err = Connect(ConnOptions{URL: url, User: role, Secrets: Secrets{Password: pw[role]}, Name: role,
				Log: slog.New(slog.NewTextHandler(l, nil))})
		} else {
			nc, err = nats.Connect(url, append(opts, nats.UserInfo(role, pw[role]))...)
		}
		if err != nil {
			t.Fatalf("connecting as %s: %v", role, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}

	// the learner: its lease (the bucket created, the key taken and released, taken again over the delete
	// marker with a longer TTL, renewed meanwhile and released at the end), streams, both consumers, the
	// weights (four versions: the oldest is deleted)
	lnc := connect("learner")
	first, err := AcquireLease(ctx, lnc, names, LeaseOptions{TTL: 2 * time.Second, Log: quiet()})
	if err != nil {
		t.Fatalf("learner taking its lease: %v", err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatalf("learner releasing its lease: %v", err)
	}
	lease, err := AcquireLease(ctx, lnc, names, LeaseOptions{TTL: 3 * time.Second, Log: quiet()})
	if err != nil {
		t.Fatalf("learner taking its released lease: %v", err)
	}
	if lease.TTL() != 3*time.Second || lease.Revision() <= first.Revision() {
		t.Fatalf("lease taken again with TTL %s at revision %d, want the bucket's TTL updated to 3s and a revision after %d",
			lease.TTL(), lease.Revision(), first.Revision())
	}
	defer func() {
		if err := lease.Release(ctx); err != nil {
			t.Errorf("learner releasing its lease: %v", err)
		}
	}()
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLearner(ctx, lnc, names, b, 272, 0, quiet(), WithSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pub, err := NewWeightPublisher(ctx, lnc, names, b, Policy{Attention: configs.AttentionDense}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	p := model.NewParams(configs.Default().Model)
	p.Init(5)
	for v := range int64(4) {
		if _, err := pub.Publish(ctx, v, p); err != nil {
			t.Fatalf("learner publishing weights version %d: %v", v, err)
		}
	}

	// the worker: the weights, the job consumer, heartbeats
	wnc := connect("worker")
	f, err := NewWeightFetcher(wnc, names, b, quiet())
	if err != nil {
		t.Fatal(err)
	}
	notice, ok, err := f.Latest(ctx)
	if err != nil || !ok || notice.Version != 3 {
		t.Fatalf("worker's latest weights: %+v %v %v, want version 3", notice, ok, err)
	}
	if _, _, err := f.Fetch(ctx, notice); err != nil {
		t.Fatalf("worker fetching the weights: %v", err)
	}
	w, err := NewWorkerClient(ctx, wnc, names, b, 272, "w", quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	stopBeat := StartHeartbeat(wnc, names, 100*time.Millisecond, func() Beat { return Beat{Worker: "w", Workers: 1} })
	defer stopBeat()

	// what the worker's and the tools' credentials may not do
	var wv, tv violations
	anc := connect("worker", nats.ErrorHandler(wv.handler))
	tnc := connect("tools", nats.ErrorHandler(tv.handler))
	ajs, err := jetstream.New(anc)
	if err != nil {
		t.Fatal(err)
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 500*time.Millisecond) }
	refused := []struct {
		name, subject string
		v             *violations
		do            func() error
	}{
		{"worker publishes a job", names.JobSubject(), &wv, func() error {
			return anc.Publish(names.JobSubject(), []byte(`{"group_id":"rl-000000-000","token":"x","task":{}}`))
		}},
		{"worker publishes a weight notice", names.WeightsSubject(), &wv, func() error {
			return anc.Publish(names.WeightsSubject(), []byte(`{"version":99}`))
		}},
		{"worker writes the object store", "$O." + names.Bucket() + ".C.junk", &wv, func() error {
			return anc.Publish("$O."+names.Bucket()+".C.junk", []byte("junk"))
		}},
		{"worker deletes the trajectory stream", "$JS.API.STREAM.DELETE." + names.TrajStream(), &wv, func() error {
			c, cancel := short()
			defer cancel()
			return ajs.DeleteStream(c, names.TrajStream())
		}},
		{"worker purges the job stream", "$JS.API.STREAM.PURGE." + names.JobStream(), &wv, func() error {
			return anc.PublishRequest("$JS.API.STREAM.PURGE."+names.JobStream(), anc.NewRespInbox(), []byte("{}"))
		}},
		{"worker creates a consumer", "$JS.API.CONSUMER.CREATE." + names.JobStream() + ".mine." + names.JobSubject(), &wv, func() error {
			c, cancel := short()
			defer cancel()
			_, err := ajs.CreateOrUpdateConsumer(c, names.JobStream(), jetstream.ConsumerConfig{Durable: "mine", FilterSubject: names.JobSubject()})
			return err
		}},
		{"worker pulls the learner's groups", "$JS.API.CONSUMER.MSG.NEXT." + names.TrajStream() + ".learner", &wv, func() error {
			return anc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+names.TrajStream()+".learner", anc.NewRespInbox(), []byte(`{"batch":1}`))
		}},
		{"worker writes the learner lease", "$KV." + names.LeaseBucket() + "." + LeaseKey, &wv, func() error {
			return anc.Publish("$KV."+names.LeaseBucket()+"."+LeaseKey, []byte(`{"host":"thief"}`))
		}},
		{"worker reads the lease bucket", "$JS.API.STREAM.INFO.KV_" + names.LeaseBucket(), &wv, func() error {
			c, cancel := short()
			defer cancel()
			_, err := ajs.KeyValue(c, names.LeaseBucket())
			return err
		}},
		{"tools publish a group", names.TrajSubject(), &tv, func() error {
			return tnc.Publish(names.TrajSubject(), []byte("junk"))
		}},
	}
	for _, c := range refused {
		err := c.do()
		if err == nil && (strings.Contains(c.subject, "$JS.API.STREAM.DELETE") || strings.Contains(c.subject, "$JS.API.CONSUMER.CREATE")) {
			t.Errorf("%s: succeeded", c.name)
		}
		if err := c.v.waitFor(c.subject); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if n, ok, err := f.Latest(ctx); err != nil || !ok || n != notice {
		t.Fatalf("the weight notice after the worker's attempts: %+v %v %v, want %+v", n, ok, err, notice)
	}
	if err := lease.Check(ctx); err != nil {
		t.Fatalf("the learner's lease after the worker's attempts: %v", err)
	}

	// forged reports and groups for the step's groups, published before their jobs with the worker's rights
	g0, g1 := "rl-000000-000", "rl-000000-001"
	other, _ := NewSecret()
	body, _ := data.EncodeGroup(group(g0, 4), 272)
	forged := []struct {
		name, id, status, token, msgID string
		body                           []byte
	}{
		{"junk under the group's old de-duplication id", g1, "ok", "", g1, []byte("junk")},
		{"failure report without a token", g1, "failed", "", "", nil},
		{"failure report with another secret's token", g1, "failed", JobToken(other, g1), JobToken(other, g1), nil},
		{"valid group with another group's token", g0, "ok", l.JobToken(g1), "", body},
	}
	for _, c := range forged {
		m := &nats.Msg{Subject: names.TrajSubject(), Data: c.body, Header: nats.Header{}}
		m.Header.Set(HdrGroup, c.id)
		m.Header.Set(HdrStatus, c.status)
		if c.token != "" {
			m.Header.Set(HdrToken, c.token)
		}
		var opts []jetstream.PublishOpt
		if c.msgID != "" {
			opts = append(opts, jetstream.WithMsgID(c.msgID))
		}
		if _, err := ajs.PublishMsg(ctx, m, opts...); err != nil {
			t.Fatalf("%s: publishing: %v", c.name, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Counts()[CountForged] < int64(len(forged)) {
		if time.Now().After(deadline) {
			t.Fatalf("counts %v: want %d forged", l.Counts(), len(forged))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := w.Publish(ctx, group("rl-000000-009", 4)); err == nil || !strings.Contains(err.Error(), "no job token") {
		t.Fatalf("publishing a group whose job the worker was not given: %v, want a refusal", err)
	}

	// the normal flow: both jobs go out (the forged failure did not stand for g1), both groups come back
	if err := l.Dispatch(ctx, 0, []rollout.Job{job(g0, 0), job(g1, 0)}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		j, err := w.NextJob(ctx)
		if err != nil {
			t.Fatalf("worker taking a job: %v", err)
		}
		if err := w.Publish(ctx, group(j.GroupID, 6)); err != nil {
			t.Fatalf("worker publishing %s: %v", j.GroupID, err)
		}
	}
	got, err := l.Collect(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{g0, g1} {
		if got[i].GroupID != id || len(got[i].Trajectories) != 2 || len(got[i].Trajectories[0].CompletionTokens) != 6 {
			t.Fatalf("collected %s with %d trajectories, want the worker's %s", got[i].GroupID, len(got[i].Trajectories), id)
		}
	}
	if err := l.Commit(ctx, []string{g0, g1}); err != nil {
		t.Fatalf("learner committing: %v", err)
	}
	c := l.Counts()
	if c[CountForged] != int64(len(forged)) || c[CountFailed] != 0 || c[CountMalformed] != 0 || c[CountDuplicate] != 0 || w.Counts()[CountMalformed] != 0 {
		t.Fatalf("learner counts %v, worker counts %v: want only the %d forged", c, w.Counts(), len(forged))
	}
	deadline = time.Now().Add(5 * time.Second)
	for len(l.Beats.Live()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("live workers %s, want the worker's heartbeats", l.Beats.Summary())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLoadOrCreateSecret: the secret is created once (mode 0600) and read back the same; a damaged file is
// an error, never a silent new secret.
func TestLoadOrCreateSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nats", "learner-rl.secret")
	a, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || len(a) != SecretSize {
		t.Fatalf("secret file %v %v, %d bytes; want mode 0600 and %d bytes", st.Mode(), err, len(a), SecretSize)
	}
	b, err := LoadOrCreateSecret(path)
	if err != nil || string(a) != string(b) {
		t.Fatalf("second load: %v, same secret %v", err, string(a) == string(b))
	}
	if JobToken(a, "rl-000001-000") != JobToken(b, "rl-000001-000") || JobToken(a, "rl-000001-000") == JobToken(a, "rl-000001-001") {
		t.Fatal("tokens must depend on the secret and the group id only")
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecret(path); err == nil {
		t.Fatal("a damaged secret file was accepted")
	}
	if _, err := NewLearner(context.Background(), nil, NewNames("x", "rl"), testBus(), 272, 0, quiet(), WithSecret([]byte("short"))); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
}
