// worker.go: the rollout workers' side of the bus (rollout.WorkerTransport). NextJob pulls one prompt from the work queue (a durable
// consumer shared by every worker, so each prompt goes to one of them) and keeps it alive with
// InProgress() while its group is sampled; Publish encodes the group, refuses (and counts) one over the max
// payload, publishes it with Nats-Msg-Id = group id, and only then acks the prompt: a worker that dies
// mid-group leaves its prompt un-acked, and the server hands it to another worker after job_ack_wait_s.
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
	counts   map[string]int64

	Groups, Tokens, Bytes atomic.Int64
	EncodeNs, PublishNs   atomic.Int64
}

// NewWorkerClient sets up the streams and the shared consumer "workers".
func NewWorkerClient(ctx context.Context, nc *nats.Conn, names Names, b configs.Bus, vocab int, id string, log *slog.Logger) (*WorkerClient, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	if err := Setup(ctx, js, names, b, log); err != nil {
		return nil, err
	}
	w := &WorkerClient{nc: nc, js: js, names: names, bus: b, vocab: vocab, log: log, ID: id,
		inflight: map[string]jetstream.Msg{}, counts: map[string]int64{}}
	err = retry(ctx, log, "creating consumer workers on "+names.JobStream(), secs(b.WaitS), func(ctx context.Context) error {
		w.cons, err = js.CreateOrUpdateConsumer(ctx, names.JobStream(), jetstream.ConsumerConfig{Durable: "workers",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: secs(b.JobAckWaitS), MaxDeliver: 20, MaxAckPending: 1 << 12,
			FilterSubject: names.JobSubject()})
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

// Counts returns the worker-side counters (oversize, malformed prompts).
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
			w.mu.Unlock()
			return rollout.Job{GroupID: jm.GroupID, Task: task, Version: jm.Version, Seed: jm.Seed}, nil
		}
	}
}

// Return gives a job's prompt back for redelivery after delay (at once for 0), so that a worker that
// cannot sample it now can take the prompts behind it.
func (w *WorkerClient) Return(job rollout.Job, delay time.Duration) {
	w.mu.Lock()
	m := w.inflight[job.GroupID]
	delete(w.inflight, job.GroupID)
	w.mu.Unlock()
	switch {
	case m == nil:
	case delay > 0:
		_ = m.NakWithDelay(delay)
	default:
		_ = m.Nak()
	}
}

// Publish sends a group (an empty one tells the learner that sampling failed) and acks its prompt.
func (w *WorkerClient) Publish(ctx context.Context, g *data.Group) error {
	msg := &nats.Msg{Subject: w.names.TrajSubject(), Header: nats.Header{}}
	msg.Header.Set(HdrGroup, g.GroupID)
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
	msg.Header.Set(HdrStatus, status)
	w.EncodeNs.Add(int64(time.Since(t0)))
	t1 := time.Now()
	err := retry(ctx, w.log, "publishing group "+g.GroupID, secs(w.bus.WaitS), func(ctx context.Context) error {
		_, err := w.js.PublishMsg(ctx, msg, jetstream.WithMsgID(g.GroupID))
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
	w.mu.Unlock()
	if m != nil {
		// a lost ack only means the prompt is sampled again; the group is de-duplicated by id
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
	return nil
}
