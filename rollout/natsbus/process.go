// process.go: a rollout worker process (`trainer rollout CONFIG --nats URL --workers N`). It waits for
// the learner's first weights, then runs N rollout.Worker loops over one engine behind a rollout.Gate: each
// pulls a prompt, waits until the weights are recent enough for the staleness bound (max_staleness 0 means
// the exact version the prompt was dispatched with), samples the group and publishes it stamped with the
// version it sampled with. A syncer swaps new versions in through the gate, so a swap happens between
// groups, never inside one, and only after the SHA-256 and the layout checked out.
//
// The workers decode as the learner's policy runs, which the weights say (Policy): densely, or with DeepSeek
// Sparse Attention and its top-k, recording the selections (dsa_topk) when the learner keeps them. A policy
// that differs from what this process's config says (WorkerOptions.Attention, rl.keep_selection), or that
// changes between versions, stops the workers with an error naming both.

package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// WorkerOptions configure RunWorkers.
type WorkerOptions struct {
	Conn  ConnOptions
	Names Names
	RL    configs.RL // the stage's rl section (sampling, group size, staleness, bus, keep_selection)
	// Attention is the policy's attention as this process's config derives it (configs.AttentionDense or
	// AttentionSparse, trainer.RLPolicyAttention), and AttentionWhy the reason; "" when the config cannot
	// tell here (an init_from checkpoint on the learner's machine only): the weights' policy is followed.
	Attention, AttentionWhy string
	Family                  envs.Family
	// Scorer, when set, completes every sampled group before it is published (a distill stage: the
	// teachers' log-probabilities, rollout.TeacherScorer, loaded by this process, never by the learner).
	Scorer  rollout.Scorer
	Workers int
	Log     *slog.Logger
	// OnStart, when set, is called once with the process's counters as the workers start (after the first
	// weights arrived): the Prometheus endpoint reads them when scraped (telemetry.Worker.Attach).
	OnStart func(*WorkerProbe)
}

// WorkerProbe reads a running worker process's counters; its methods are safe for concurrent use and
// stay valid after RunWorkers returns.
type WorkerProbe struct {
	client *WorkerClient
	gate   *rollout.Gate
	sy     *syncer
}

// Groups is the number of groups published.
func (p *WorkerProbe) Groups() int64 { return p.client.Groups.Load() }

// Tokens is the number of completion tokens published.
func (p *WorkerProbe) Tokens() int64 { return p.client.Tokens.Load() }

// Version is the policy version of the weights the workers sample with.
func (p *WorkerProbe) Version() int64 { return p.gate.Version() }

// Swaps is the number of weight versions swapped in after the first.
func (p *WorkerProbe) Swaps() int64 { return p.sy.swaps.Load() }

// Errors counts the process's errors by kind: failed (groups reported as not sampled), oversize (over the
// max payload), malformed (prompts), weights (a version not fetched or not installed).
func (p *WorkerProbe) Errors() map[string]int64 {
	c := p.client.Counts()
	c["weights"] = p.sy.failures.Load()
	return c
}

// WorkerReport is what RunWorkers did.
type WorkerReport struct {
	Groups, Tokens int64
	Version        int64
	Swaps          int
	Policy         Policy // the policy the workers ran, as the learner's weights said
}

// checkPolicy refuses a learner's policy that this worker's config contradicts.
func (o WorkerOptions) checkPolicy(pol Policy) error {
	if o.Attention != "" && o.Attention != pol.Attention {
		return fmt.Errorf("natsbus: the learner's weights say its policy runs %s attention, but this worker's config says %s (%s): start the workers with the learner's config", pol, o.Attention, o.AttentionWhy)
	}
	if o.RL.KeepSelection != pol.KeepSelection {
		return fmt.Errorf("natsbus: the learner's weights say rl.keep_selection %v (policy %s), but this worker's config says rl.keep_selection %v: start the workers with the learner's config", pol.KeepSelection, pol, o.RL.KeepSelection)
	}
	return nil
}

// RunWorkers runs a worker process until the learner announces the end of the stage (nil), ctx ends
// (ctx.Err()), or a wait passes its deadline.
func RunWorkers(ctx context.Context, o WorkerOptions) (WorkerReport, error) {
	log := o.Log
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s-%d", host, os.Getpid())
	o.Conn.Name, o.Conn.Log = "sparrow-rollout "+id, log
	nc, err := Connect(o.Conn)
	if err != nil {
		return WorkerReport{}, err
	}
	defer nc.Close()
	if err := CheckServer(ctx, nc); err != nil {
		return WorkerReport{}, err
	}
	b := o.RL.Bus
	fetcher, err := NewWeightFetcher(nc, o.Names, b, log)
	if err != nil {
		return WorkerReport{}, err
	}
	first, err := waitFirstWeights(ctx, fetcher, o.Names, b, log)
	if err != nil {
		return WorkerReport{}, err
	}
	params, pol, err := fetcher.Fetch(ctx, first)
	if err != nil {
		return WorkerReport{}, err
	}
	if err := o.checkPolicy(pol); err != nil {
		return WorkerReport{Policy: pol}, err
	}
	dtype, err := checkpoints.RolloutDType(o.RL.RolloutDtype)
	if err != nil {
		return WorkerReport{Policy: pol}, err
	}
	if dtype != checkpoints.F32 { // rl.rollout_dtype: decode as a server of bf16 weights does
		if err := checkpoints.CopyRounded(params, params, dtype); err != nil {
			return WorkerReport{Policy: pol}, err
		}
	}
	log.Info("natsbus: weights received", "version", first.Version, "bytes", first.Bytes, "seconds", round1(fetcher.LastGet.Seconds()), "policy", pol.String())
	vocab := params.Config.VocabSize
	tok, err := data.NewTokenizer(vocab)
	if err != nil {
		return WorkerReport{}, err
	}
	client, err := NewWorkerClient(ctx, nc, o.Names, b, vocab, id, log)
	if err != nil {
		return WorkerReport{}, err
	}
	defer client.Close()
	client.Attention = pol.Attention

	gate := rollout.NewGate(first.Version, int64(o.RL.MaxStaleness), secs(b.WaitS), log)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	sy := &syncer{fetcher: fetcher, params: params, dtype: dtype, policy: pol, first: first, gate: gate, stop: stop, log: log}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sy.run(wctx, nc, o.Names) }()
	if o.OnStart != nil {
		o.OnStart(&WorkerProbe{client: client, gate: gate, sy: sy})
	}
	stopBeat := StartHeartbeat(nc, o.Names, secs(b.HeartbeatS), func() Beat {
		return Beat{Worker: id, Workers: o.Workers, Groups: client.Groups.Load(), Tokens: client.Tokens.Load(), Version: gate.Version()}
	})
	defer stopBeat()

	eng := model.NewEngine(params)
	sc := rollout.RLSamplerConfig(o.RL, pol.Sparse(), pol.SparseTopK)
	errs := make([]error, o.Workers)
	for w := range o.Workers {
		worker := &rollout.Worker{Sampler: rollout.NewGroupSampler(eng, tok, o.Family, fmt.Sprintf("%s/w%d", id, w), sc), Weights: gate, Log: log, Scorer: o.Scorer}
		wg.Add(1)
		go func() { defer wg.Done(); errs[w] = worker.Run(wctx, client) }()
	}
	wg.Wait()
	rep := WorkerReport{Groups: client.Groups.Load(), Tokens: client.Tokens.Load(), Version: gate.Version(), Swaps: int(sy.swaps.Load()), Policy: pol}
	if sy.done.Load() {
		return rep, nil
	}
	if err := errors.Join(errs...); err != nil {
		return rep, err
	}
	if sy.err != nil && ctx.Err() == nil {
		return rep, sy.err
	}
	return rep, ctx.Err()
}

// waitFirstWeights waits (at most rl.bus.wait_s, with a log line every 10 s) for the learner's first weights.
func waitFirstWeights(ctx context.Context, fetcher *WeightFetcher, names Names, b configs.Bus, log *slog.Logger) (Notice, error) {
	start, lastLog := time.Now(), time.Time{}
	for {
		n, ok, err := fetcher.Latest(ctx)
		if err == nil && ok && !n.Done {
			return n, nil
		}
		if ctx.Err() != nil {
			return Notice{}, ctx.Err()
		}
		if time.Since(start) > secs(b.WaitS) {
			return Notice{}, fmt.Errorf("natsbus: no weights from the learner after rl.bus.wait_s = %g s (stream %s)", b.WaitS, names.WeightsStream())
		}
		if time.Since(lastLog) > 10*time.Second {
			log.Info("natsbus: worker waiting for the learner's first weights", "stream", names.WeightsStream(), "waited_s", round1(time.Since(start).Seconds()), "deadline_s", b.WaitS, "err", err)
			lastLog = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// syncer follows the learner's weight notices and swaps each new version in through the gate.
type syncer struct {
	fetcher *WeightFetcher
	params  *model.Params // the weights the engine reads
	dtype   checkpoints.DType
	policy  Policy // the workers' policy, from the first version
	first   Notice
	gate    *rollout.Gate
	stop    context.CancelFunc // ends the workers (stage done, or policy changed)
	log     *slog.Logger

	done     atomic.Bool // the learner finished the stage
	swaps    atomic.Int64
	failures atomic.Int64 // versions not swapped in
	err      error        // the last failure (a fetch, a layout mismatch, a policy change)
}

// run follows notices until ctx ends: they arrive on the subject, and a poll every 2 s covers ones missed
// while reconnecting.
func (sy *syncer) run(ctx context.Context, nc *nats.Conn, names Names) {
	notices := make(chan Notice, 16)
	sub, err := nc.Subscribe(names.WeightsSubject(), func(m *nats.Msg) {
		var n Notice
		if json.Unmarshal(m.Data, &n) == nil {
			select {
			case notices <- n:
			default:
			}
		}
	})
	if err != nil {
		sy.err = fmt.Errorf("natsbus: subscribing to weight notices: %w", err)
		sy.stop()
		return
	}
	defer sub.Unsubscribe()
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	current := sy.first.SHA256 // hash of the weights in use
	for {
		var n Notice
		select {
		case <-ctx.Done():
			return
		case n = <-notices:
		case <-poll.C:
			var ok bool
			if n, ok, err = sy.fetcher.Latest(ctx); err != nil || !ok {
				continue
			}
		}
		if n.Done {
			sy.log.Info("natsbus: the learner finished the stage; workers stop after their groups", "version", n.Version)
			sy.done.Store(true)
			sy.stop()
			return
		}
		// the notice is authoritative: a learner resumed from a checkpoint goes back to an older version
		if n.SHA256 == current {
			continue
		}
		if err := sy.swap(ctx, n); err != nil {
			if ctx.Err() != nil {
				return
			}
			sy.err = err
			sy.failures.Add(1)
			if errors.Is(err, errPolicyChanged) {
				sy.log.Error("natsbus: the learner's policy changed; workers stop", "err", err)
				sy.stop()
				return
			}
			sy.log.Error("natsbus: weights not swapped; keeping the current version", "version", n.Version, "err", err)
			continue
		}
		current = n.SHA256
		sy.log.Debug("natsbus: weights swapped", "version", n.Version, "fetch_s", round1(sy.fetcher.LastGet.Seconds()))
	}
}

var errPolicyChanged = errors.New("natsbus: the learner changed its policy mid-stage (restart the workers)")

// swap fetches the weights of notice n and installs them once the groups in flight are done.
func (sy *syncer) swap(ctx context.Context, n Notice) error {
	p, np, err := sy.fetcher.Fetch(ctx, n)
	if err != nil {
		return err
	}
	if np != sy.policy { // never sample one policy's groups with another's decoding
		return fmt.Errorf("weights version %d run policy %s, but the workers run %s since version %d: %w", n.Version, np, sy.policy, sy.first.Version, errPolicyChanged)
	}
	err = sy.gate.Swap(n.Version, func() error { return checkpoints.CopyRounded(sy.params, p, sy.dtype) })
	if err != nil {
		return fmt.Errorf("weights version %d do not fit the running model: %w", n.Version, err)
	}
	sy.swaps.Add(1)
	return nil
}
