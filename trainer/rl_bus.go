// rl_bus.go: the rl stage's transport. With rl.bus.transport inproc the learner and rl.workers workers share
// a rollout.InProc; otherwise the learner talks to its workers over NATS JetStream — an embedded server under
// the run directory (embedded, the default) or a cluster (nats) — through a natsbus.Learner, and with
// local_workers keeps rl.workers workers in-process on a natsbus.WorkerClient. The learner's invariant lives
// here and in natsbus.Learner: every group a step collects is handled (applied, or dropped for a counted
// reason), and only once a checkpoint holding those steps is on disk are the groups acked (rlStage.saved →
// Commit). A restarted learner resumes at its checkpoint's step: every group of an earlier step is acked on
// sight, the others are redelivered, so every group is applied exactly once in the surviving weight history.
// With out-of-process workers the learner publishes the weights after every update (natsbus.WeightPublisher),
// each version carrying the policy's attention (and rl.keep_selection) so that the workers decode as the
// learner trains; the learner refuses any group decoded with another attention (natsbus.Learner.SetAttention).
//
// On a NATS cluster (transport nats) the learner holds the stage's lease (natsbus.Lease) from before it
// touches the streams until the stage ends: it confirms the lease before each step's prompts go out, before
// each weights version is published and before each checkpoint takes its name (fence), so that a learner
// that lost it — paused past its TTL while another took over — stops with natsbus.ErrLeaseLost instead.

package trainer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

// busState is the NATS side of an rl stage.
type busState struct {
	server  *natsbus.Embedded
	nc      *nats.Conn
	learner *natsbus.Learner
	local   *natsbus.WorkerClient
	weights *natsbus.WeightPublisher
	lease   *natsbus.Lease // the learner lease (transport nats)
	beat    func()
	heldSeq uint64 // the highest stream sequence of the groups the completed steps applied

	lastStep                   time.Time
	lastWait, lastDec, lastDis time.Duration
	lastEnc, lastPub           int64
	lastBytes                  int64
}

// RLFamily returns the task family an rl stage samples and verifies (workers in other processes need it).
func RLFamily(st configs.Stage) (envs.Family, error) {
	fam, err := envs.New(st.RL.Env, familyOptions(st))
	if err != nil {
		return nil, fmt.Errorf("stages[%s].rl.env: %w", st.Name, err)
	}
	return fam, nil
}

// BusNames returns the bus names of an rl stage of cfg.
func BusNames(cfg *configs.Config, st configs.Stage) natsbus.Names {
	p := st.RL.Bus.Prefix
	if p == "" {
		p = cfg.Name
	}
	return natsbus.NewNames(p, st.Name)
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// openTransport connects the learner's side of the transport for a stage starting or resuming at step, and
// returns the workers' side for in-process workers (nil when the workers run elsewhere).
func (s *rlStage) openTransport(ctx context.Context, step int) (rollout.WorkerTransport, error) {
	b := s.rc.Bus
	s.bus.lastStep = time.Now()
	if b.Transport == "inproc" {
		t := rollout.NewInProc(s.rc.PromptsPerStep*2, s.params.Config.VocabSize)
		s.transport = t
		return t, nil
	}
	log := s.run.Log.With("stage", s.stage.Name)
	url := b.URL
	if b.Transport == "embedded" {
		dir := filepath.Join(s.run.Dir, "nats")
		srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: dir, MaxPayload: b.MaxPayload})
		if err != nil {
			return nil, err
		}
		s.bus.server, url = srv, srv.URL()
		log.Info("embedded nats-server started", "url", url, "store", dir)
	}
	conn := natsbus.FromConfig(ctx, b, url, "sparrow-learner "+s.stage.Name, log)
	log.Info("rollout bus", "transport", b.Transport, "conn", conn, "local_workers", b.LocalWorkers)
	nc, err := natsbus.Connect(conn)
	if err != nil {
		return nil, err
	}
	s.bus.nc = nc
	names := BusNames(s.run.Config, s.stage)
	if b.Transport == "nats" {
		dir, _ := filepath.Abs(s.run.Dir)
		lease, err := natsbus.AcquireLease(ctx, nc, names, natsbus.LeaseOptions{TTL: s.run.leaseTTL, RunDir: dir, Log: log})
		if err != nil {
			return nil, err
		}
		s.bus.lease = lease
		log.Info("learner lease taken", "bucket", lease.Bucket(), "key", natsbus.LeaseKey, "revision", lease.Revision(), "ttl_s", lease.TTL().Seconds())
	}
	vocab := s.params.Config.VocabSize
	// the job tokens' secret outlives the process: groups published before a restart still verify
	secret, err := natsbus.LoadOrCreateSecret(filepath.Join(s.run.Dir, "nats", "learner-"+names.Stage+".secret"))
	if err != nil {
		return nil, err
	}
	if s.bus.learner, err = natsbus.NewLearner(ctx, nc, names, b, vocab, step, log, natsbus.WithSecret(secret)); err != nil {
		return nil, err
	}
	pol := s.policy()
	s.bus.learner.SetAttention(pol.Attention)
	s.transport = s.bus.learner
	if qw := s.run.queueWatcher(); qw != nil {
		qw.WatchQueue(s.bus.learner.Outstanding)
	}
	s.bus.lastWait, s.bus.lastDec, s.bus.lastDis, s.bus.lastBytes, _ = s.bus.learner.Timings()
	if b.Transport == "nats" && b.Weights != "none" {
		if s.bus.weights, err = natsbus.NewWeightPublisher(ctx, nc, names, b, pol, log); err != nil {
			return nil, err
		}
		if _, err := s.bus.weights.Publish(ctx, s.version, s.params); err != nil {
			return nil, fmt.Errorf("publishing the initial weights: %w", err)
		}
		log.Info("weights published", "version", s.version, "bytes", s.bus.weights.LastBytes, "seconds", round4(s.bus.weights.LastPut.Seconds()))
	}
	if !b.LocalWorkers {
		return nil, nil
	}
	if s.bus.local, err = natsbus.NewWorkerClient(ctx, nc, names, b, vocab, "local", log); err != nil {
		return nil, err
	}
	s.bus.local.Attention = pol.Attention
	s.bus.beat = natsbus.StartHeartbeat(nc, names, secs(b.HeartbeatS), func() natsbus.Beat {
		return natsbus.Beat{Worker: "local", Workers: s.rc.Workers, Groups: s.bus.local.Groups.Load(), Tokens: s.bus.local.Tokens.Load(), Version: s.gate.Version()}
	})
	return s.bus.local, nil
}

// policy is how the stage's policy runs, as its rollout workers must decode it.
func (s *rlStage) policy() natsbus.Policy {
	if !s.sparse {
		return natsbus.Policy{Attention: configs.AttentionDense}
	}
	return natsbus.Policy{Attention: configs.AttentionSparse, SparseTopK: s.layout.selectionK, KeepSelection: s.rc.KeepSelection}
}

// WorkerAttention is the attention a rollout worker process expects of the rl stage st's policy, from its
// config (RLPolicyAttention), and why; "" when the config cannot tell on this machine (the stage starts from
// an init_from checkpoint that is not here): the worker then follows the policy the learner's weights carry.
func WorkerAttention(cfg *configs.Config, st configs.Stage) (string, string, error) {
	if i := slices.IndexFunc(cfg.Stages, func(x configs.Stage) bool { return x.Name == st.Name }); i >= 0 {
		if _, dir, why := cfg.PolicyAttention(i); dir != "" {
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				return "", why + ", not on this machine: the learner's weights say", nil
			}
		}
	}
	return RLPolicyAttention(cfg, st)
}

// closeTransport ends the transport; completed says the stage finished (out-of-process workers are told to
// stop).
func (s *rlStage) closeTransport(completed bool) {
	if s.bus.weights != nil && completed {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.bus.weights.Done(ctx, s.version); err != nil {
			s.run.Log.Warn("could not tell the workers that the stage ended", "stage", s.stage.Name, "err", err)
		}
		cancel()
	}
	if s.bus.beat != nil {
		s.bus.beat()
	}
	if s.bus.local != nil {
		s.bus.local.Close()
	}
	if s.transport != nil {
		s.transport.Close()
	}
	if qw := s.run.queueWatcher(); qw != nil && s.bus.learner != nil {
		qw.WatchQueue(nil)
	}
	if s.bus.nc != nil {
		// the server has the negative acks of the groups not committed (Close) before the lease and the
		// connection go, so that the next learner gets them at once
		_ = s.bus.nc.FlushTimeout(2 * time.Second)
	}
	if s.bus.lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.bus.lease.Release(ctx); err != nil {
			s.run.Log.Warn("could not release the learner lease", "stage", s.stage.Name, "err", err)
		}
		cancel()
	}
	if s.bus.nc != nil {
		s.bus.nc.Close()
	}
	if s.bus.server != nil {
		s.bus.server.Shutdown()
	}
	s.bus = busState{}
	s.transport = nil
}

// publishWeights sends the new policy version to out-of-process workers, under the lease.
func (s *rlStage) publishWeights(ctx context.Context, m map[string]float64) error {
	if s.bus.weights == nil {
		return nil
	}
	if s.bus.lease != nil {
		if err := s.bus.lease.Check(ctx); err != nil {
			return fmt.Errorf("weights version %d not published: %w", s.version, err)
		}
	}
	if _, err := s.bus.weights.Publish(ctx, s.version, s.params); err != nil {
		return fmt.Errorf("publishing weights version %d: %w", s.version, err)
	}
	m["timing_s/weights_publish"] = s.bus.weights.LastPut.Seconds()
	return nil
}

// busMetrics adds the bus's counters and the transport's share of the step to m.
func (s *rlStage) busMetrics(step int, m map[string]float64) {
	stepTime := time.Since(s.bus.lastStep)
	s.bus.lastStep = time.Now()
	l := s.bus.learner
	if l == nil {
		return
	}
	for k, v := range l.Counts() {
		m["bus/"+k] = float64(v)
	}
	wait, dec, dis, bytes, _ := l.Timings()
	dw, dd, dp := wait-s.bus.lastWait, dec-s.bus.lastDec, dis-s.bus.lastDis
	s.bus.lastWait, s.bus.lastDec, s.bus.lastDis = wait, dec, dis
	overhead := dd + dp
	if w := s.bus.local; w != nil {
		enc, pub := w.EncodeNs.Load(), w.PublishNs.Load()
		overhead += time.Duration(enc - s.bus.lastEnc + pub - s.bus.lastPub)
		s.bus.lastEnc, s.bus.lastPub = enc, pub
	}
	m["timing_s/data_wait"], m["timing_s/transport"] = dw.Seconds(), overhead.Seconds()
	if st := stepTime.Seconds(); st > 0 {
		m["bus/data_wait_frac"], m["bus/transport_frac"] = dw.Seconds()/st, overhead.Seconds()/st
	}
	m["bus/mb_received"] = float64(bytes-s.bus.lastBytes) / 1e6
	s.bus.lastBytes = bytes
	live := l.Beats.Live()
	m["rollout/live_workers"] = float64(len(live))
	s.run.Log.Info("rollout workers", "stage", s.stage.Name, "step", step, "live", l.Beats.Summary())
}

// streamSeq is the highest trajectory-stream sequence among the groups a checkpoint taken now holds: those
// of the completed steps (a step stopped while collecting holds groups that it did not apply).
func (s *rlStage) streamSeq() uint64 { return s.bus.heldSeq }

// stepDone records that the groups collected so far are applied.
func (s *rlStage) stepDone() {
	if s.bus.learner != nil {
		s.bus.heldSeq = s.bus.learner.MaxSeq()
	}
}

// collectHeld collects the step's groups under the learner lease: it confirms the lease first, and a lease
// lost while it waits ends the wait (leaseErr then says why).
func (s *rlStage) collectHeld(ctx context.Context, step int) ([]*data.Group, int, error) {
	l := s.bus.lease
	if l == nil {
		return s.collect(ctx, step)
	}
	if err := l.Check(ctx); err != nil {
		return nil, 0, err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.Lost():
			cancel()
		case <-lctx.Done():
		}
	}()
	return s.collect(lctx, step)
}

// leaseErr says why the learner lease is lost (nil while it is held, or without one).
func (s *rlStage) leaseErr() error {
	if s.bus.lease == nil {
		return nil
	}
	return s.bus.lease.Err()
}

// fence confirms the learner lease right before a checkpoint takes its name (stage.go, fencer).
func (s *rlStage) fence() error {
	if s.bus.lease == nil {
		return nil
	}
	return s.bus.lease.Check(context.Background())
}
