// compat_test.go: the bus against every server Sparrow supports, with real servers: the embedded one
// (nats-server/v2 of go.mod) and Debian's nats-server 2.9 (the external server of CI, .ci/install-nats.sh)
// started as a child process. A flood of junk messages on the trajectory and job subjects is terminated
// for good on both (servers before 2.10.4 ignore a termination with a reason), a server without JetStream
// is refused at once with an error that says how to start it, and the version check's table.

package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/internal/natstest"
	"github.com/sparrow-rl/sparrow/rollout"
)

// externalNATS starts Debian's nats-server with JetStream or without (natstest) and returns its URL.
func externalNATS(t *testing.T, jetStream bool) string {
	return natstest.Start(t, natstest.Options{JetStream: jetStream}).URL()
}

// testServers are the servers each compatibility test runs against: name and a function that starts one
// with JetStream and returns its URL.
var testServers = []struct {
	name  string
	start func(t *testing.T) string
}{
	{"embedded", func(t *testing.T) string { return embedded(t, EmbeddedOptions{}).URL() }},
	{"external", func(t *testing.T) string { return externalNATS(t, true) }},
}

// junk publishes n messages that are not what their subject carries (core NATS: the stream stores them,
// nothing acks them to the publisher) and waits until they are all sent.
func junk(t *testing.T, nc *nats.Conn, subject string, n int, hdr map[string]string) {
	t.Helper()
	for i := range n {
		m := &nats.Msg{Subject: subject, Data: []byte(fmt.Sprintf("junk %d", i)), Header: nats.Header{}}
		for k, v := range hdr {
			m.Header.Set(k, v)
		}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func consumerInfo(t *testing.T, js jetstream.JetStream, stream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, name)
	if err != nil {
		t.Fatalf("consumer %s on %s: %v", name, stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer %s on %s: %v", name, stream, err)
	}
	return info
}

// TestJunkFloodTerminated: thousands of malformed group messages on the trajectory subject and malformed
// prompts on the job subject are each terminated once and gone from their consumer (nothing ack-pending,
// nothing redelivered after the ack wait), counted once as malformed, on every server; real prompts and
// groups flow behind them.
func TestJunkFloodTerminated(t *testing.T) {
	const nTraj, nJobs = 5000, 2000
	for _, srv := range testServers {
		t.Run(srv.name, func(t *testing.T) {
			url := srv.start(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			b := testBus() // ack waits of 2 s: a message the server kept comes back within the test
			nc, err := Connect(ConnOptions{URL: url, Log: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			t.Logf("server %s", nc.ConnectedServerVersion())
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			names := NewNames("flood", "rl")
			l, w := learnerAndWorker(t, ctx, nc, names, b)

			start := time.Now()
			junk(t, nc, names.TrajSubject(), nTraj, map[string]string{HdrGroup: "junk", HdrStatus: "ok"})
			// and junk that carries a genuine token (a worker's bug): decoded, malformed, terminated
			const nSigned = 500
			junk(t, nc, names.TrajSubject(), nSigned, map[string]string{HdrGroup: "rl-000009-000", HdrStatus: "ok", HdrToken: l.JobToken("rl-000009-000")})
			junk(t, nc, names.JobSubject(), nJobs, nil)
			g := "rl-000000-000"
			if err := l.Dispatch(ctx, 0, []rollout.Job{job(g, 0)}); err != nil {
				t.Fatal(err)
			}
			j, err := w.NextJob(ctx) // terminates the junk prompts ahead of the real one
			if err != nil || j.GroupID != g {
				t.Fatalf("NextJob = %v, %v; want %s behind the junk", j.GroupID, err, g)
			}
			if err := w.Publish(ctx, group(g, 5)); err != nil {
				t.Fatal(err)
			}
			got, err := l.Collect(ctx, 1)
			if err != nil || len(got) != 1 || got[0].GroupID != g {
				t.Fatalf("Collect = %v, %v; want %s behind the junk", got, err, g)
			}
			if err := l.Commit(ctx, []string{g}); err != nil {
				t.Fatal(err)
			}
			// junk carries no job token: terminated as forged before it is even decoded
			for deadline := time.Now().Add(20 * time.Second); l.Counts()[CountForged] < nTraj; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("learner counts %v after 20 s, want %d forged", l.Counts(), nTraj)
				}
			}
			t.Logf("%d junk groups and %d junk prompts terminated, a real group collected, in %s", nTraj, nJobs, time.Since(start).Round(time.Millisecond))

			// Nothing may stay ack-pending, and nothing may come back once the ack waits have passed.
			settled := func() (*jetstream.ConsumerInfo, *jetstream.ConsumerInfo) {
				return consumerInfo(t, js, names.TrajStream(), "learner"), consumerInfo(t, js, names.JobStream(), "workers")
			}
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				li, wi := settled()
				if li.NumAckPending == 0 && wi.NumAckPending == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("ack pending after 5 s: learner %d, workers %d; want 0 (terminated messages stay pending: the server ignored the termination?)", li.NumAckPending, wi.NumAckPending)
				}
			}
			time.Sleep(secs(max(b.AckWaitS, b.JobAckWaitS)) + time.Second)
			li, wi := settled()
			if li.NumAckPending != 0 || li.NumRedelivered != 0 || li.NumPending != 0 || wi.NumAckPending != 0 || wi.NumRedelivered != 0 || wi.NumPending != 0 {
				t.Fatalf("after the ack wait: learner consumer ack pending %d, redelivered %d, pending %d; workers consumer %d, %d, %d; want all 0",
					li.NumAckPending, li.NumRedelivered, li.NumPending, wi.NumAckPending, wi.NumRedelivered, wi.NumPending)
			}
			if c := l.Counts(); c[CountForged] != nTraj || c[CountMalformed] != nSigned || c[CountRedelivery] != 0 {
				t.Fatalf("learner counts %v: want %d forged and %d malformed, each once, and no redelivery", c, nTraj, nSigned)
			}
			if c := w.Counts(); c[CountMalformed] != nJobs {
				t.Fatalf("worker counts %v: want %d malformed prompts, each once", c, nJobs)
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
				t.Fatalf("the job stream (a work queue) holds %d messages, want none: terminated prompts are removed", info.State.Msgs)
			}
		})
	}
}

// noJetStream starts a server without JetStream: in process (nats-server/v2 of go.mod) or Debian's.
var noJetStream = []struct {
	name  string
	start func(t *testing.T) string
}{
	{"embedded", func(t *testing.T) string {
		srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server without JetStream not ready after 10 s")
		}
		return srv.ClientURL()
	}},
	{"external", func(t *testing.T) string { return externalNATS(t, false) }},
}

// TestJetStreamDisabled: against a server without JetStream the learner, a worker client, a weight
// publisher and a worker process fail within seconds (not after rl.bus.wait_s) with an error that names
// the server and says how to enable JetStream.
func TestJetStreamDisabled(t *testing.T) {
	for _, srv := range noJetStream {
		t.Run(srv.name, func(t *testing.T) {
			url := srv.start(t)
			b := testBus()
			b.WaitS = 30 // what the old behaviour waited before giving up with "no responders"
			names := NewNames("nojs", "rl")
			nc, err := Connect(ConnOptions{URL: url, Log: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			fam, err := envs.New("math", envs.Options{})
			if err != nil {
				t.Fatal(err)
			}
			rc := configs.Default().RL
			rc.Bus = b
			cases := []struct {
				name string
				open func(ctx context.Context) error
			}{
				{"NewLearner", func(ctx context.Context) error {
					l, err := NewLearner(ctx, nc, names, b, 272, 0, quiet())
					if err == nil {
						l.Close()
					}
					return err
				}},
				{"NewWorkerClient", func(ctx context.Context) error {
					w, err := NewWorkerClient(ctx, nc, names, b, 272, "w", quiet())
					if err == nil {
						w.Close()
					}
					return err
				}},
				{"NewWeightPublisher", func(ctx context.Context) error {
					_, err := NewWeightPublisher(ctx, nc, names, b, Policy{Attention: configs.AttentionDense}, quiet())
					return err
				}},
				{"RunWorkers", func(ctx context.Context) error {
					_, err := RunWorkers(ctx, WorkerOptions{Conn: ConnOptions{URL: url}, Names: names, RL: rc, Family: fam, Workers: 1, Log: quiet()})
					return err
				}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					start := time.Now()
					err := c.open(ctx)
					took := time.Since(start)
					t.Logf("%s: %v", took.Round(time.Millisecond), err)
					if err == nil {
						t.Fatal("succeeded against a server without JetStream")
					}
					if !errors.Is(err, jetstream.ErrJetStreamNotEnabled) || !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "-js") {
						t.Fatalf("error %q: want jetstream.ErrJetStreamNotEnabled, naming %s and saying to start it with -js", err, url)
					}
					if took > 5*time.Second {
						t.Fatalf("failed after %s, want within 5 s", took)
					}
				})
			}
		})
	}
}

// TestCheckServer: the embedded server and Debian's, both with JetStream, pass the check.
func TestCheckServer(t *testing.T) {
	for _, srv := range testServers {
		t.Run(srv.name, func(t *testing.T) {
			url := srv.start(t)
			nc, err := Connect(ConnOptions{URL: url, Log: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if err := CheckServer(context.Background(), nc); err != nil {
				t.Fatalf("nats-server %s with JetStream: %v", nc.ConnectedServerVersion(), err)
			}
		})
	}
}

// TestCheckVersion: which server versions the bus accepts, and which understand a termination with a reason.
func TestCheckVersion(t *testing.T) {
	cases := []struct {
		version    string
		supported  bool // checkVersion accepts it
		termReason bool // terminate sends a reason
	}{
		{"2.9.10", true, false}, // Debian bookworm's, the one CI uses
		{"2.9.0", true, false},
		{"v2.9.0", true, false},
		{"v2.9.0-beta", false, false}, // a pre-release precedes its release
		{"2.8.4", false, false},
		{"1.4.1", false, false},
		{"2.10.3", true, false},
		{"2.10.4-beta.1", true, false},
		{"2.10.4", true, true},
		{"2.10.22", true, true},
		{"2.11.0-RC.2", true, true},
		{"2.15.2", true, true}, // the embedded server of go.mod
		{"3.0.0", true, true},
		{"2.10.4+build.7", true, true},
		{"", false, false},
		{"2.10", false, false},
		{"2.x.1", false, false},
		{"garbage", false, false},
	}
	for _, c := range cases {
		err := checkVersion(c.version)
		if (err == nil) != c.supported {
			t.Errorf("checkVersion(%q) = %v, want supported %v", c.version, err, c.supported)
		}
		if err != nil && !strings.Contains(err.Error(), MinServerVersion) {
			t.Errorf("checkVersion(%q) = %q: the error must name the minimum, %s", c.version, err, MinServerVersion)
		}
		if err != nil && c.version != "" && !strings.Contains(err.Error(), c.version) {
			t.Errorf("checkVersion(%q) = %q: the error must name the server's version", c.version, err)
		}
		if got := versionAtLeast(c.version, termReasonVersion); got != c.termReason {
			t.Errorf("versionAtLeast(%q, %s) = %v, want %v", c.version, termReasonVersion, got, c.termReason)
		}
	}
}
