// worker.go: the rollout workers' side of the bus (rollout.WorkerTransport). A worker binds to the job
// queue's durable consumer "workers", which the learner creates (a worker needs no right to manage streams
// or consumers: deploy/nats/sparrow-roles.conf), shared by every worker so that each prompt goes to one of
// them. NextJob pulls one prompt and keeps it alive with InProgress() while its group is sampled, and keeps
// the job's token (auth.go); Publish encodes the group, refuses (and counts) one over the max payload,
// publishes it with the token in HdrToken and as Nats-Msg-Id, and only then acks the prompt: a worker that
// dies mid-group leaves its prompt un-acked, and the server hands it to another worker after job_ack_wait_s.
// Each group says with which attention it was decoded (HdrAttention), so that the learner refuses groups
// of a policy other than its own.

package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/rollout"
)

// ErrTooLarge marks a group whose encoding exceeds the max payload.
var ErrTooLarge = errors.New("natsbus: group exceeds the max payload")

// WorkerClient is the workers' side of the transport (safe for concurrent use by many workers).
type WorkerClient struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	names Names
	bus   configs.Bus
	vocab int
	log   *slog.Logger
	// ID names this process's workers in headers and heartbeats.
	ID string
	// IdleTimeout ends NextJob with an error after this long without a prompt (0 = wait until ctx ends).
	IdleTimeout time.Duration
	// Attention is the attention this process's samplers decode with (configs.AttentionDense or
	// AttentionSparse), sent with every group as HdrAttention; set it before the first Publish.
	Attention string

	cons   jetstream.Consumer
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	inflight map[string]jetstream.Msg
	tokens   map[string]*jobToken // of the jobs taken and not yet published or returned, by group id
	counts   map[string]int64

	Groups, Tokens, Bytes atomic.Int64
	EncodeNs, PublishNs   atomic.Int64
}

// jobToken is the token of a job taken refs times (a prompt redelivered while this process still samples
// it is taken twice) and not yet published or returned as often.
type jobToken struct {
	token string
	refs  int
}

// workersConsumer is the job queue's durable consumer "workers", shared by every worker. The learner's
// side creates it (Setup); workers only bind to it.
func workersConsumer(n Names, b configs.Bus) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy, AckWait: secs(b.JobAckWaitS),
		MaxDeliver: 20, MaxAckPending: 1 << 12, FilterSubject: n.JobSubject()}
}

// NewWorkerClient binds to the job queue's consumer "workers", which the learner creates: it waits for it
// (rl.bus.wait_s at most) when the learner has not started yet. It fails at once on a server without
// JetStream or older than MinServerVersion (CheckServer).
func NewWorkerClient(ctx context.Context, nc *nats.Conn, names Names, b configs.Bus, vocab int, id string, log *slog.Logger) (*WorkerClient, error) {
	if err := CheckServer(ctx, nc); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	w := &WorkerClient{nc: nc, js: js, names: names, bus: b, vocab: vocab, log: log, ID: id,
		inflight: map[string]jetstream.Msg{}, tokens: map[string]*jobToken{}, counts: map[string]int64{}}
	err = retry(ctx, log, "binding to consumer workers on "+names.JobStream(), secs(b.WaitS), func(ctx context.Context) error {
		w.cons, err = js.Consumer(ctx, names.JobStream(), "workers")
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("%w: the learner creates the stream and the consumer; is it running, with rl.bus.prefix %q and stage %q?", err, names.Prefix, names.Stage)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(1)
	go func() { defer w.wg.Done(); w.keepAlive(cctx) }()
	return w, nil
}

// Counts returns the worker-side counters (failed groups, oversize, malformed prompts).
func (w *WorkerClient) Counts() map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.counts)
}

func (w *WorkerClient) keepAlive(ctx context.Context) {
	t := time.NewTicker(max(secs(w.bus.JobAckWaitS)/3, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(w.inflight))
		for _, m := range w.inflight {
			msgs = append(msgs, m)
		}
		w.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}

// NextJob blocks until a prompt is available.
func (w *WorkerClient) NextJob(ctx context.Context) (rollout.Job, error) {
	start, lastLog := time.Now(), time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return rollout.Job{}, err
		}
		if w.IdleTimeout > 0 && time.Since(start) > w.IdleTimeout {
			return rollout.Job{}, fmt.Errorf("natsbus: worker %s: no prompt for %s (the learner is gone?)", w.ID, w.IdleTimeout)
		}
		if time.Since(lastLog) > 30*time.Second {
			w.log.Info("natsbus: worker waiting for prompts", "worker", w.ID, "waited_s", round1(time.Since(start).Seconds()), "stream", w.names.JobStream())
			lastLog = time.Now()
		}
		batch, err := w.cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() == nil {
				time.Sleep(200 * time.Millisecond)
			}
			continue
		}
		for m := range batch.Messages() {
			var jm jobMsg
			var task envs.Task
			err := json.Unmarshal(m.Data(), &jm)
			if err == nil {
				err = json.Unmarshal(jm.Task, &task)
			}
			if err == nil && jm.GroupID == "" {
				err = errors.New("no group id")
			}
			if err == nil && jm.Token == "" {
				err = errors.New("no job token (a learner of an older version?)")
			}
			if err != nil {
				w.mu.Lock()
				w.counts[CountMalformed]++
				w.mu.Unlock()
				w.log.Warn("natsbus: malformed prompt terminated", "err", err)
				_ = terminate(w.nc, m, "malformed")
				continue
			}
			w.mu.Lock()
			w.inflight[jm.GroupID] = m
			w.take(jm.GroupID, jm.Token)
			w.mu.Unlock()
			return rollout.Job{GroupID: jm.GroupID, Task: task, Version: jm.Version, Seed: jm.Seed}, nil
		}
	}
}

// take records the token of a job taken (w.mu held).
func (w *WorkerClient) take(id, token string) {
	jt := w.tokens[id]
	if jt == nil {
		jt = &jobToken{}
		w.tokens[id] = jt
	}
	jt.token = token // the same for every delivery of the job
	jt.refs++
}

// release forgets one taking of job id's token (w.mu held).
func (w *WorkerClient) release(id string) {
	if jt := w.tokens[id]; jt != nil {
		if jt.refs--; jt.refs <= 0 {
			delete(w.tokens, id)
		}
	}
}

// Grant lets this client publish group id without having taken its job with NextJob, with the token the
// learner gives it (Learner.JobToken): for groups the learner Expects (the transport benchmark, tests).
func (w *WorkerClient) Grant(id, token string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.take(id, token)
}

// Return gives a job's prompt back for redelivery after delay (at once for 0), so that a worker that
// cannot sample it now can take the prompts behind it.
func (w *WorkerClient) Return(job rollout.Job, delay time.Duration) {
	w.mu.Lock()
	m := w.inflight[job.GroupID]
	delete(w.inflight, job.GroupID)
	w.release(job.GroupID)
	w.mu.Unlock()
	switch {
	case m == nil:
	case delay > 0:
		_ = m.NakWithDelay(delay)
	default:
		_ = m.Nak()
	}
}

// Publish sends a group (an empty one tells the learner that sampling failed) and acks its prompt. It
// refuses a group whose job this client does not hold (not taken with NextJob or granted, or returned).
func (w *WorkerClient) Publish(ctx context.Context, g *data.Group) error {
	w.mu.Lock()
	var token string
	if jt := w.tokens[g.GroupID]; jt != nil {
		token = jt.token
	}
	w.mu.Unlock()
	if token == "" {
		return fmt.Errorf("natsbus: worker %s: group %s: no job token: its job was not taken with NextJob (or was returned)", w.ID, g.GroupID)
	}
	msg := &nats.Msg{Subject: w.names.TrajSubject(), Header: nats.Header{}}
	msg.Header.Set(HdrGroup, g.GroupID)
	msg.Header.Set(HdrToken, token)
	msg.Header.Set(HdrWorker, w.ID)
	if w.Attention != "" {
		msg.Header.Set(HdrAttention, w.Attention)
	}
	if len(g.Trajectories) > 0 {
		msg.Header.Set(HdrVersion, strconv.FormatInt(g.Trajectories[0].PolicyVersion, 10))
	}
	t0 := time.Now()
	status := "failed"
	if len(g.Trajectories) > 0 {
		b, err := data.EncodeGroup(g, w.vocab)
		switch {
		case err != nil:
			msg.Header.Set(HdrError, err.Error())
			w.log.Error("natsbus: group not encodable; reported as failed", "group", g.GroupID, "err", err)
		case len(b)+headerSize(msg.Header) > w.limit():
			status = "oversize"
			msg.Header.Set(HdrError, fmt.Sprintf("%d bytes encoded, max payload %d", len(b), w.limit()))
			w.mu.Lock()
			w.counts[CountOversize]++
			w.mu.Unlock()
			w.log.Error("natsbus: group refused: over the max payload (not split, reported to the learner)", "group", g.GroupID,
				"bytes", len(b), "max_payload", w.limit(), "err", ErrTooLarge)
		default:
			status, msg.Data = "ok", b
		}
	} else {
		msg.Header.Set(HdrError, "sampling failed (see the worker's log)")
	}
	if status == "failed" {
		w.mu.Lock()
		w.counts[CountFailed]++
		w.mu.Unlock()
	}
	msg.Header.Set(HdrStatus, status)
	w.EncodeNs.Add(int64(time.Since(t0)))
	t1 := time.Now()
	err := retry(ctx, w.log, "publishing group "+g.GroupID, secs(w.bus.WaitS), func(ctx context.Context) error {
		// de-duplicated by token: only a holder of the job can occupy its group's slot
		_, err := w.js.PublishMsg(ctx, msg, jetstream.WithMsgID(token))
		return err
	})
	if err != nil {
		return err
	}
	w.PublishNs.Add(int64(time.Since(t1)))
	w.Groups.Add(1)
	w.Bytes.Add(int64(len(msg.Data)))
	for _, t := range g.Trajectories {
		w.Tokens.Add(int64(len(t.CompletionTokens)))
	}
	w.mu.Lock()
	m := w.inflight[g.GroupID]
	delete(w.inflight, g.GroupID)
	w.release(g.GroupID)
	w.mu.Unlock()
	if m != nil {
		// a lost ack only means the prompt is sampled again; the group is de-duplicated by token and id
		_ = m.Ack()
	}
	return nil
}

func (w *WorkerClient) limit() int {
	lim := w.bus.MaxPayload
	if mp := int(w.nc.MaxPayload()); mp > 0 && mp < lim {
		lim = mp
	}
	return lim
}

func headerSize(h nats.Header) int {
	n := 12
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// Close stops the keep-alive loop and gives back prompts still in flight.
func (w *WorkerClient) Close() error {
	if w.cancel == nil {
		return nil
	}
	w.cancel()
	w.wg.Wait()
	w.cancel = nil
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, m := range w.inflight {
		_ = m.Nak()
		delete(w.inflight, id)
	}
	clear(w.tokens)
	return nil
}
