// process.go: a rollout worker process (`trainer rollout CONFIG --nats URL --workers N`). It waits for
// the learner's weights, then runs N workers over one engine: each pulls a prompt, waits (with a deadline
// and a log line) until its weights are recent enough for the staleness bound — max_staleness 0 means the
// exact version the prompt was dispatched with — samples the group under a read lock, and publishes it
// stamped with the version it sampled with. A syncer swaps new versions in under the write lock, so a swap
// happens between groups, never inside one, and only after the SHA-256 and the layout checked out.
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
	"math/rand/v2"
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
	Workers                 int
	Log                     *slog.Logger
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
	b := o.RL.Bus
	wait := secs(b.WaitS)
	fetcher, err := NewWeightFetcher(nc, o.Names, b, log)
	if err != nil {
		return WorkerReport{}, err
	}
	// the first weights
	var first Notice
	start, lastLog := time.Now(), time.Time{}
	for {
		n, ok, err := fetcher.Latest(ctx)
		if err == nil && ok && !n.Done {
			first = n
			break
		}
		if ctx.Err() != nil {
			return WorkerReport{}, ctx.Err()
		}
		if time.Since(start) > wait {
			return WorkerReport{}, fmt.Errorf("natsbus: no weights from the learner after rl.bus.wait_s = %g s (stream %s)", b.WaitS, o.Names.WeightsStream())
		}
		if time.Since(lastLog) > 10*time.Second {
			log.Info("natsbus: worker waiting for the learner's first weights", "stream", o.Names.WeightsStream(), "waited_s", round1(time.Since(start).Seconds()), "deadline_s", b.WaitS, "err", err)
			lastLog = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
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

	var (
		mu      sync.RWMutex // read: sampling a group; write: swapping weights
		cond    = sync.NewCond(&sync.Mutex{})
		version atomic.Int64
		swaps   int
	)
	version.Store(first.Version)
	current := first.SHA256 // hash of the weights in use
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var done atomic.Bool

	// syncer: notices arrive on the subject; a poll every 2 s covers ones missed while reconnecting
	notices := make(chan Notice, 16)
	sub, err := nc.Subscribe(o.Names.WeightsSubject(), func(m *nats.Msg) {
		var n Notice
		if json.Unmarshal(m.Data, &n) == nil {
			select {
			case notices <- n:
			default:
			}
		}
	})
	if err != nil {
		return WorkerReport{}, fmt.Errorf("natsbus: subscribing to weight notices: %w", err)
	}
	defer sub.Unsubscribe()
	var syncErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		poll := time.NewTicker(2 * time.Second)
		defer poll.Stop()
		for {
			var n Notice
			select {
			case <-wctx.Done():
				return
			case n = <-notices:
			case <-poll.C:
				var ok bool
				var err error
				if n, ok, err = fetcher.Latest(wctx); err != nil || !ok {
					continue
				}
			}
			if n.Done {
				log.Info("natsbus: the learner finished the stage; workers stop after their groups", "version", n.Version)
				done.Store(true)
				stop()
				return
			}
			// the notice is authoritative: a learner resumed from a checkpoint goes back to an older version
			if n.SHA256 == current {
				continue
			}
			p, np, err := fetcher.Fetch(wctx, n)
			if err != nil {
				if wctx.Err() != nil {
					return
				}
				log.Error("natsbus: weights fetch failed; keeping the current version", "version", n.Version, "err", err)
				syncErr = err
				continue
			}
			if np != pol { // never sample one policy's groups with another's decoding
				syncErr = fmt.Errorf("natsbus: weights version %d run policy %s, but the workers run %s since version %d: the learner changed its policy mid-stage (restart the workers)", n.Version, np, pol, first.Version)
				log.Error("natsbus: the learner's policy changed; workers stop", "err", syncErr)
				stop()
				return
			}
			mu.Lock() // waits for groups in flight
			err = checkpoints.CopyRounded(params, p, dtype)
			if err == nil {
				version.Store(n.Version)
				current = n.SHA256
				swaps++
			}
			mu.Unlock()
			if err != nil {
				log.Error("natsbus: weights do not fit the running model", "version", n.Version, "err", err)
				syncErr = err
				continue
			}
			cond.L.Lock()
			cond.Broadcast()
			cond.L.Unlock()
			log.Debug("natsbus: weights swapped", "version", n.Version, "fetch_s", round1(fetcher.LastGet.Seconds()))
		}
	}()

	stopBeat := StartHeartbeat(nc, o.Names, secs(b.HeartbeatS), func() Beat {
		return Beat{Worker: id, Workers: o.Workers, Groups: client.Groups.Load(), Tokens: client.Tokens.Load(), Version: version.Load()}
	})
	defer stopBeat()

	eng := model.NewEngine(params)
	rc := o.RL
	errs := make([]error, o.Workers)
	for w := 0; w < o.Workers; w++ {
		gs := &rollout.GroupSampler{Engine: eng, Tok: tok, Family: o.Family,
			Params:    rollout.SamplingParams{Temperature: rc.Temperature, TopP: rc.TopP, TopK: rc.TopK},
			GroupSize: rc.GroupSize, MaxNewTokens: rc.MaxNewTokens, WorkerID: fmt.Sprintf("%s/w%d", id, w),
			Sparse: pol.Sparse(), SparseTopK: pol.SparseTopK, RecordSelection: pol.KeepSelection}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			errs[w] = workerLoop(wctx, client, gs, &mu, cond, &version, int64(rc.MaxStaleness), wait, log)
		}(w)
	}
	// wake waiters when the context ends
	go func() {
		<-wctx.Done()
		cond.L.Lock()
		cond.Broadcast()
		cond.L.Unlock()
	}()
	wg.Wait()
	rep := WorkerReport{Groups: client.Groups.Load(), Tokens: client.Tokens.Load(), Version: version.Load(), Swaps: swaps, Policy: pol}
	if done.Load() {
		return rep, nil
	}
	if err := errors.Join(errs...); err != nil {
		return rep, err
	}
	if syncErr != nil && ctx.Err() == nil {
		return rep, syncErr
	}
	return rep, ctx.Err()
}

func workerLoop(ctx context.Context, c *WorkerClient, gs *rollout.GroupSampler, mu *sync.RWMutex, cond *sync.Cond,
	version *atomic.Int64, maxStale int64, wait time.Duration, log *slog.Logger) error {
	for {
		job, err := c.NextJob(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		// A prompt older than the weights: either redelivered after its ack was lost (a server restart; the
		// learner has its group or has moved on) or from a learner that went back to a checkpoint (its older
		// weights are on their way). Waiting for them here would hold up the prompts behind it, which the
		// learner does wait for: hand it back for later (a prompt is delivered at most 20 times) and go on.
		if version.Load() > job.Version {
			c.Defer(job.GroupID, time.Second)
			continue
		}
		// the staleness bound: weights between job.Version − max_staleness and job.Version
		need := job.Version - maxStale
		start, lastLog := time.Now(), time.Now()
		cond.L.Lock()
		for version.Load() < need && ctx.Err() == nil && time.Since(start) < wait {
			if time.Since(lastLog) > 10*time.Second {
				log.Info("natsbus: worker waiting for newer weights", "worker", gs.WorkerID, "have", version.Load(), "need", need, "group", job.GroupID)
				lastLog = time.Now()
			}
			waitCond(cond, time.Second)
		}
		cond.L.Unlock()
		if ctx.Err() != nil {
			c.Release(job.GroupID)
			return nil
		}
		mu.RLock()
		v := version.Load()
		if v > job.Version { // the weights moved past the prompt while it waited
			mu.RUnlock()
			c.Defer(job.GroupID, time.Second)
			continue
		}
		if v < need {
			mu.RUnlock()
			c.Release(job.GroupID)
			return fmt.Errorf("natsbus: worker %s: weights version in [%d, %d] never arrived (have %d) within rl.bus.wait_s", gs.WorkerID, need, job.Version, v)
		}
		rng := rand.New(rand.NewPCG(job.Seed, 0x9e3779b97f4a7c15))
		g, err := gs.Sample(ctx, job.Task, job.GroupID, v, rng)
		mu.RUnlock()
		if err != nil {
			if ctx.Err() != nil {
				c.Release(job.GroupID)
				return nil
			}
			log.Error("natsbus: sampling failed; the learner is told", "worker", gs.WorkerID, "group", job.GroupID, "err", err)
			g = &data.Group{GroupID: job.GroupID}
		}
		if err := c.Publish(context.WithoutCancel(ctx), g); err != nil {
			return err
		}
	}
}

// waitCond waits on c (whose lock is held) for at most d.
func waitCond(c *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, func() { c.L.Lock(); c.Broadcast(); c.L.Unlock() })
	c.Wait()
	t.Stop()
}
