// rl_bus.go: the RL stage's side of the rollout bus (issue 6). openBus replaces the stage's in-process
// transport with NATS JetStream — an embedded server under the run directory (rl.bus.transport: embedded,
// the default) or a cluster (nats) — and, with local_workers, keeps rl.workers in-process workers on it.
// The learner's invariant lives here and in natsbus.Learner: every group a step collects is recorded
// (applied, or dropped for a counted reason: stale, failed, all-equal rewards); the checkpoint written after
// the step lists those group ids and the policy version, and only once it is on disk are the groups acked
// (Commit). A restarted learner acks on sight any group its checkpoint lists, and gets the rest redelivered,
// so every group is applied exactly once in the surviving weight history. With out-of-process workers the
// learner publishes the weights after every update (natsbus.WeightPublisher), each version carrying the
// policy's attention (and rl.keep_selection) so that the workers decode as the learner trains; the learner
// refuses any group decoded with another attention (natsbus.Learner.SetAttention).
package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

// busExtraKey is the rl stage's entry in trainer_state.json's extra map.
const busExtraKey = "rollout_bus"

// busCursor is what a checkpoint records for exact resume over the bus.
type busCursor struct {
	PolicyVersion int64    `json:"policy_version"`
	Handled       []string `json:"handled_groups"` // every group id applied or deliberately dropped, in order
}

type busState struct {
	server  *natsbus.Embedded
	nc      *nats.Conn
	learner *natsbus.Learner
	local   *natsbus.WorkerClient
	weights *natsbus.WeightPublisher
	beat    func()

	handled     []string // committed: in a checkpoint and acked
	uncommitted []string // handled by completed steps since the last checkpoint
	step        []string // collected by the step in progress
	drops       map[string]float64

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

// openBus connects the stage to its bus (nothing for rl.bus.transport inproc).
func (s *rlStage) openBus(ctx context.Context) error {
	b := s.rc.Bus
	s.bus.lastStep = time.Now()
	if s.bus.drops == nil {
		s.bus.drops = map[string]float64{}
	}
	if b.Transport == "inproc" {
		return nil
	}
	log := s.run.Log.With("stage", s.stage.Name)
	url := b.URL
	if b.Transport == "embedded" {
		dir := filepath.Join(s.run.Dir, "nats")
		srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: dir, MaxPayload: b.MaxPayload})
		if err != nil {
			return fmt.Errorf("stage %s: %w", s.stage.Name, err)
		}
		s.bus.server, url = srv, srv.URL()
		log.Info("embedded nats-server started", "url", url, "store", dir)
	}
	conn := natsbus.FromConfig(ctx, b, url, "sparrow-learner "+s.stage.Name, log)
	log.Info("rollout bus", "transport", b.Transport, "conn", conn, "local_workers", b.LocalWorkers)
	nc, err := natsbus.Connect(conn)
	if err != nil {
		return fmt.Errorf("stage %s: %w", s.stage.Name, err)
	}
	s.bus.nc = nc
	names := BusNames(s.run.Config, s.stage)
	vocab := s.params.Config.VocabSize
	if s.bus.learner, err = natsbus.NewLearner(ctx, nc, names, b, vocab, s.bus.handled, log); err != nil {
		return fmt.Errorf("stage %s: %w", s.stage.Name, err)
	}
	pol := s.policy()
	s.bus.learner.SetAttention(pol.Attention)
	s.transport.Close() // the in-process one newRLStage made
	s.transport = s.bus.learner
	if b.LocalWorkers {
		if s.bus.local, err = natsbus.NewWorkerClient(ctx, nc, names, b, vocab, "local", log); err != nil {
			return fmt.Errorf("stage %s: %w", s.stage.Name, err)
		}
		s.bus.local.Attention = pol.Attention
		s.transport = natsbus.Pair{Learner: s.bus.learner, W: s.bus.local}
		s.bus.beat = natsbus.StartHeartbeat(nc, names, time.Duration(b.HeartbeatS*float64(time.Second)), func() natsbus.Beat {
			return natsbus.Beat{Worker: "local", Workers: len(s.samplers), Groups: s.bus.local.Groups.Load(), Tokens: s.bus.local.Tokens.Load(), Version: s.version.Load()}
		})
	}
	if b.Transport == "nats" && b.Weights != "none" {
		if s.bus.weights, err = natsbus.NewWeightPublisher(ctx, nc, names, b, pol, log); err != nil {
			return fmt.Errorf("stage %s: %w", s.stage.Name, err)
		}
		if _, err := s.bus.weights.Publish(ctx, s.version.Load(), s.params); err != nil {
			return fmt.Errorf("stage %s: publishing the initial weights: %w", s.stage.Name, err)
		}
		log.Info("weights published", "version", s.version.Load(), "bytes", s.bus.weights.LastBytes, "seconds", round4(s.bus.weights.LastPut.Seconds()))
	}
	s.bus.lastWait, s.bus.lastDec, s.bus.lastDis, s.bus.lastBytes, _ = s.bus.learner.Timings()
	return nil
}

// policy is how the stage's policy runs, as its rollout workers must decode it.
func (s *rlStage) policy() natsbus.Policy {
	if !s.sparse {
		return natsbus.Policy{Attention: configs.AttentionDense}
	}
	return natsbus.Policy{Attention: configs.AttentionSparse, SparseTopK: s.dsaK, KeepSelection: s.rc.KeepSelection}
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

// localSamplers are the samplers to run as in-process workers.
func (s *rlStage) localSamplers() []*rollout.GroupSampler {
	if s.rc.Bus.Transport != "inproc" && !s.rc.Bus.LocalWorkers {
		return nil
	}
	return s.samplers
}

// closeBus ends the bus; completed says the stage finished (the workers are told to stop).
func (s *rlStage) closeBus(completed bool) {
	if s.bus.weights != nil && completed {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.bus.weights.Done(ctx, s.version.Load()); err != nil {
			s.run.Log.Warn("could not tell the workers that the stage ended", "stage", s.stage.Name, "err", err)
		}
		cancel()
	}
	if s.bus.beat != nil {
		s.bus.beat()
	}
	if s.transport != nil {
		s.transport.Close()
	}
	if s.bus.nc != nil {
		s.bus.nc.Close()
	}
	if s.bus.server != nil {
		s.bus.server.Shutdown()
	}
	s.bus.nc, s.bus.server, s.bus.beat = nil, nil, nil
}

// admit records a collected group and says whether to train on it; empty groups (a worker failed or the
// group was over the max payload) and groups older than rl.max_staleness are dropped and counted.
func (s *rlStage) admit(g *data.Group) bool {
	if s.bus.drops == nil {
		s.bus.drops = map[string]float64{}
	}
	s.bus.step = append(s.bus.step, g.GroupID)
	if len(g.Trajectories) == 0 {
		s.bus.drops["failed"]++
		return false
	}
	lag := int64(0)
	for _, t := range g.Trajectories {
		lag = max(lag, s.version.Load()-t.PolicyVersion)
	}
	if lag > int64(s.rc.MaxStaleness) {
		s.bus.drops["stale"]++
		s.run.Log.Warn("dropped a stale group", "stage", s.stage.Name, "group", g.GroupID, "lag", lag, "max_staleness", s.rc.MaxStaleness)
		return false
	}
	return true
}

// busStep runs after an update: it marks the step's groups handled, publishes the weights, and adds the
// bus metrics.
func (s *rlStage) busStep(ctx context.Context, m map[string]float64) error {
	s.bus.uncommitted = append(s.bus.uncommitted, s.bus.step...)
	s.bus.step = nil
	m["rollout/dropped_stale"], m["rollout/dropped_failed"] = s.bus.drops["stale"], s.bus.drops["failed"]
	stepTime := time.Since(s.bus.lastStep)
	s.bus.lastStep = time.Now()
	if s.bus.weights != nil {
		if _, err := s.bus.weights.Publish(ctx, s.version.Load(), s.params); err != nil {
			return fmt.Errorf("stage %s: publishing weights version %d: %w", s.stage.Name, s.version.Load(), err)
		}
		m["timing_s/weights_publish"] = s.bus.weights.LastPut.Seconds()
	}
	l := s.bus.learner
	if l == nil {
		return nil
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
	s.run.Log.Info("rollout workers", "stage", s.stage.Name, "step", s.step, "live", l.Beats.Summary())
	return nil
}

// busSaveState records the handled group ids and the policy version in a checkpoint's trainer state.
func (s *rlStage) busSaveState(st *checkpoints.TrainerState) {
	ids := append(slices.Clone(s.bus.handled), s.bus.uncommitted...)
	j, _ := json.Marshal(busCursor{PolicyVersion: s.version.Load(), Handled: ids})
	if st.Extra == nil {
		st.Extra = map[string]json.RawMessage{}
	}
	st.Extra[busExtraKey] = j
	if s.bus.learner != nil {
		st.StreamSeq = s.bus.learner.MaxSeq()
	}
}

// busCommit acks the groups a checkpoint now holds.
func (s *rlStage) busCommit() error {
	if len(s.bus.uncommitted) == 0 {
		return nil
	}
	if c, ok := s.transport.(interface {
		Commit(context.Context, []string) error
	}); ok {
		if err := c.Commit(context.Background(), s.bus.uncommitted); err != nil {
			return fmt.Errorf("stage %s: acking the checkpointed groups: %w", s.stage.Name, err)
		}
	}
	s.bus.handled = append(s.bus.handled, s.bus.uncommitted...)
	s.bus.uncommitted = nil
	return nil
}

// busRestore reads the handled group ids back from a checkpoint.
func (s *rlStage) busRestore(st checkpoints.TrainerState) error {
	raw, ok := st.Extra[busExtraKey]
	if !ok {
		return nil
	}
	var c busCursor
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("resume: trainer_state.json extra.%s: %w", busExtraKey, err)
	}
	if c.PolicyVersion != st.PolicyVersion {
		return fmt.Errorf("resume: trainer_state.json: extra.%s.policy_version %d differs from policy_version %d", busExtraKey, c.PolicyVersion, st.PolicyVersion)
	}
	s.bus.handled = c.Handled
	return nil
}

// HandledGroups reads the group ids a checkpoint directory records as applied or dropped, in order.
func HandledGroups(ckptDir string) ([]string, int64, error) {
	ck, err := checkpoints.Load(ckptDir, checkpoints.LoadOptions{WeightsOnly: true})
	if err != nil {
		return nil, 0, err
	}
	raw, ok := ck.State.Extra[busExtraKey]
	if !ok {
		return nil, 0, fmt.Errorf("%s: trainer_state.json has no extra.%s", ckptDir, busExtraKey)
	}
	var c busCursor
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, 0, fmt.Errorf("%s: extra.%s: %w", ckptDir, busExtraKey, err)
	}
	return c.Handled, c.PolicyVersion, nil
}
