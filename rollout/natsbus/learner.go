// learner.go: the learner's side of the bus (rollout.LearnerTransport). NewLearner creates the streams and
// both durable consumers (its own, and the workers' that a worker only binds to). Dispatch publishes the
// step's prompts to the work queue, each with its job token (auth.go; Nats-Msg-Id = the token), a fetch
// loop pulls groups from the trajectory stream through a durable pull consumer with explicit acks, and
// Collect hands the trainer the groups of the ids it dispatched. The invariant: a group is acked only by Commit, which the trainer calls once a checkpoint
// holding the update that applied (or deliberately dropped) it is on disk; until then InProgress() keeps it
// from redelivery. A group seen again is acked as a duplicate without reaching the trainer: a copy of a group
// held or committed in this step, or any group of a step before the watermark (the step the learner started
// or resumed at, then every step it dispatches), whose groups a checkpoint holds. The learner's state is so
// bounded by the groups of the steps since the last checkpoint, however long the run. A group or report whose
// job token does not verify is terminated and counted (CountForged) before anything else. A group is checked
// once, where it enters: decoding (data.DecodeGroup) checks the encoding and the records (data.Group.Validate);
// a malformed message or an invalid group is terminated and counted. A group decoded with another attention
// than the learner's policy (HdrAttention; SetAttention) is terminated and stops the run: training a sparse
// policy on dense rollouts, or the reverse, is a configuration error, never a drop.

package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/rollout"
)

// Message headers of a group.
const (
	HdrGroup   = "Sparrow-Group"
	HdrWorker  = "Sparrow-Worker"
	HdrVersion = "Sparrow-Version"
	// HdrStatus is "ok" (the body is an encoded group), "failed" (sampling failed) or "oversize" (the
	// encoded group exceeded the max payload); the last two have an empty body and HdrError says why.
	HdrStatus = "Sparrow-Status"
	HdrError  = "Sparrow-Error"
	// HdrAttention is the attention the group was decoded with: "dense" or "sparse". A group without it
	// comes from a worker that predates sparse policies, which decodes densely.
	HdrAttention = "Sparrow-Attention"
	// HdrToken is the job token (auth.go) a worker echoes in the group or report it publishes.
	HdrToken = "Sparrow-Token"
)

// Drop reasons a Learner counts.
const (
	CountMalformed  = "malformed" // not a group message (bad encoding or headers)
	CountInvalid    = "invalid"   // a decodable group whose records fail data.Group.Validate
	CountDuplicate  = "duplicate"
	CountFailed     = "failed"
	CountOversize   = "oversize"
	CountRedelivery = "redelivered"
	CountAttention  = "attention_mismatch"
	CountForged     = "forged" // a job token that does not verify (absent, or not its group id's)
)

// jobMsg is a prompt on the wire.
type jobMsg struct {
	GroupID string          `json:"group_id"`
	Token   string          `json:"token"` // the job token, echoed in HdrToken
	Task    json.RawMessage `json:"task"`
	Version int64           `json:"version"`
	Seed    uint64          `json:"seed"`
}

type held struct {
	msg    jetstream.Msg
	seq    uint64
	group  *data.Group
	status string
}

// Learner is the learner's side of the transport.
type Learner struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	names Names
	bus   configs.Bus
	vocab int
	log   *slog.Logger
	Beats *Heartbeats
	// secret signs the job tokens (WithSecret)
	secret []byte

	cons   jetstream.Consumer
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	arrived   chan struct{} // closed and replaced when a group arrives
	buf       map[string]*held
	expected  map[string]bool
	pending   map[string]*held // collected, not yet committed
	step      int              // the watermark: every group of an earlier step is settled
	committed map[string]bool  // committed groups of steps from the watermark on
	counts    map[string]int64
	malformed recentSeqs // stream sequences of the malformed, invalid or forged messages terminated lately
	attention string     // of the policy trained ("" accepts any; SetAttention)
	fatal     error      // a group of another policy's attention arrived: Collect returns it
	maxSeq    uint64
	wait      time.Duration // time spent blocked in Collect
	decode    time.Duration // time spent decoding groups
	dispatch  time.Duration // time spent publishing prompts
	bytes     int64
	groups    int64
}

// LearnerOption configures NewLearner.
type LearnerOption func(*Learner) error

// WithSecret makes the learner sign its jobs with the run secret secret (SecretSize bytes or more, kept
// where a resumed learner finds it: LoadOrCreateSecret). Without it the learner draws a secret of its own,
// and the groups published for an earlier learner's jobs are rejected as forged.
func WithSecret(secret []byte) LearnerOption {
	return func(l *Learner) error {
		if len(secret) < SecretSize {
			return fmt.Errorf("natsbus: a run secret of %d bytes, want %d or more", len(secret), SecretSize)
		}
		l.secret = secret
		return nil
	}
}

// NewLearner sets up the streams and the workers' consumer (Setup), its durable consumer "learner" on the
// trajectory stream, and the fetch loop. step is the learner step the stage starts or resumes at: every
// group of an earlier step is in its checkpoint, and is acked on sight if it is delivered again. Jobs are
// signed with the run secret of WithSecret.
func NewLearner(ctx context.Context, nc *nats.Conn, names Names, b configs.Bus, vocab int, step int, log *slog.Logger, opts ...LearnerOption) (*Learner, error) {
	l := &Learner{nc: nc, names: names, bus: b, vocab: vocab, log: log, arrived: make(chan struct{}),
		buf: map[string]*held{}, expected: map[string]bool{}, pending: map[string]*held{}, step: step, committed: map[string]bool{},
		counts: map[string]int64{}, malformed: newRecentSeqs(1 << 14)}
	for _, o := range opts {
		if err := o(l); err != nil {
			return nil, err
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	l.js = js
	if l.secret == nil {
		if l.secret, err = NewSecret(); err != nil {
			return nil, err
		}
		log.Warn("natsbus: no run secret given: this learner signs its jobs with a secret of its own (groups of an earlier learner's jobs will be rejected as forged)")
	}
	if err := Setup(ctx, js, names, b, log); err != nil {
		return nil, err
	}
	err = retry(ctx, log, "creating consumer learner on "+names.TrajStream(), secs(b.WaitS), func(ctx context.Context) error {
		l.cons, err = js.CreateOrUpdateConsumer(ctx, names.TrajStream(), jetstream.ConsumerConfig{Durable: "learner",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: secs(b.AckWaitS), MaxAckPending: 1 << 16, MaxDeliver: -1,
			DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubject: names.TrajSubject()})
		return err
	})
	if err != nil {
		return nil, err
	}
	if l.Beats, err = WatchHeartbeats(nc, names, secs(3*b.HeartbeatS)); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.fetchLoop(lctx) }()
	go func() { defer l.wg.Done(); l.keepAlive(lctx) }()
	return l, nil
}

// Counts returns the learner's counters (malformed, invalid, forged, duplicate, failed, oversize, redelivered).
func (l *Learner) Counts() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.counts)
}

// Timings returns the cumulative time blocked in Collect, decoding and dispatching, and the bytes and groups
// received.
func (l *Learner) Timings() (wait, decode, dispatch time.Duration, bytes, groups int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.wait, l.decode, l.dispatch, l.bytes, l.groups
}

// Outstanding is the number of groups dispatched (or expected) and not collected yet, arrived or not: the
// depth of the learner's queue.
func (l *Learner) Outstanding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.expected)
}

// MaxSeq is the highest stream sequence of the groups collected so far: between steps, of the groups the
// updates so far used, which a checkpoint taken then holds.
func (l *Learner) MaxSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxSeq
}

func (l *Learner) count(k string) { l.counts[k]++ }

// JobToken is the token of the job of group id: what a worker must echo to publish its group. Dispatch
// puts it in the job; a caller that publishes groups without jobs (Expect) hands it to the worker
// (WorkerClient.Grant).
func (l *Learner) JobToken(id string) string { return JobToken(l.secret, id) }

func (l *Learner) fetchLoop(ctx context.Context) {
	lastErr := time.Time{}
	for ctx.Err() == nil {
		batch, err := l.cons.Fetch(64, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if time.Since(lastErr) > 3*time.Second {
				l.log.Warn("natsbus: fetching groups failed; retrying", "stream", l.names.TrajStream(), "err", err)
				lastErr = time.Now()
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for m := range batch.Messages() {
			l.receive(m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil && time.Since(lastErr) > 3*time.Second {
			l.log.Warn("natsbus: group fetch ended with an error", "err", err)
			lastErr = time.Now()
		}
	}
}

func (l *Learner) receive(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		l.log.Warn("natsbus: group message without JetStream metadata; terminated", "err", err)
		_ = m.Term()
		return
	}
	hdr := m.Headers()
	id := hdr.Get(HdrGroup)
	status := hdr.Get(HdrStatus)
	if !verifyToken(l.secret, id, hdr.Get(HdrToken)) {
		l.forged(m, meta.Sequence.Stream, id, hdr)
		return
	}
	t0 := time.Now()
	var g *data.Group
	switch status {
	case "ok":
		g, err = data.DecodeGroup(m.Data(), l.vocab)
		if err == nil && g.GroupID != id {
			err = fmt.Errorf("body is group %q, header says %q", g.GroupID, id)
		}
	case "failed", "oversize":
		if id == "" {
			err = errors.New("no group id header")
		}
		g = &data.Group{GroupID: id}
	default:
		err = fmt.Errorf("status header %q", status)
	}
	dec := time.Since(t0)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.decode += dec
	if err != nil {
		// A copy redelivered before the server saw the first termination (a slow consumer past its ack wait)
		// is terminated again but counted once.
		if l.malformed.add(meta.Sequence.Stream) {
			reason := CountMalformed
			if te := (*data.TrajectoryError)(nil); errors.As(err, &te) {
				reason = CountInvalid
			}
			l.count(reason)
			l.log.Warn("natsbus: "+reason+" group message terminated", "stream_seq", meta.Sequence.Stream, "group", id, "err", err, reason+"_total", l.counts[reason])
		}
		_ = terminate(l.nc, m, "malformed")
		return
	}
	l.bytes += int64(len(m.Data()))
	seq := meta.Sequence.Stream
	if l.settled(id) {
		l.count(CountDuplicate)
		l.log.Debug("natsbus: group already applied in a checkpoint; acked", "group", id, "stream_seq", seq)
		_ = m.Ack()
		return
	}
	for _, set := range []map[string]*held{l.buf, l.pending} {
		if h, ok := set[id]; ok {
			if h.seq == seq { // the same message again (redelivered): keep the newest handle, ack nothing
				h.msg = m
				return
			}
			l.count(CountDuplicate)
			l.log.Debug("natsbus: duplicate copy of a held group acked", "group", id, "stream_seq", seq, "held_seq", h.seq)
			_ = m.Ack()
			return
		}
	}
	if status == "ok" {
		if err := l.checkAttention(hdr.Get(HdrAttention)); err != nil {
			l.count(CountAttention)
			l.fatal = fmt.Errorf("natsbus: group %s from worker %s: %w", id, hdr.Get(HdrWorker), err)
			l.log.Error("natsbus: group of another attention terminated; the learner stops", "stream_seq", seq, "err", l.fatal)
			_ = terminate(l.nc, m, "attention mismatch")
			close(l.arrived)
			l.arrived = make(chan struct{})
			return
		}
	}
	if meta.NumDelivered > 1 {
		l.count(CountRedelivery)
	}
	if status != "ok" {
		l.count(status)
		l.log.Warn("natsbus: a worker could not deliver a group", "group", id, "status", status, "worker", hdr.Get(HdrWorker), "err", hdr.Get(HdrError))
	}
	l.groups++
	l.buf[id] = &held{msg: m, seq: seq, group: g, status: status}
	close(l.arrived)
	l.arrived = make(chan struct{})
}

// forged terminates a message whose job token does not verify, and counts it once (a copy redelivered
// before the server saw the termination is terminated again). Nothing else of the learner's state changes:
// such a message is never a duplicate, a report or a group.
func (l *Learner) forged(m jetstream.Msg, seq uint64, id string, hdr nats.Header) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.malformed.add(seq) {
		l.count(CountForged)
		why := "a token that is not its group's"
		if hdr.Get(HdrToken) == "" {
			why = "no token (a worker of an older version, or a client that was not given the job)"
		}
		l.log.Warn("natsbus: group message with "+why+" terminated", "stream_seq", seq, "group", id, "status", hdr.Get(HdrStatus),
			"worker", hdr.Get(HdrWorker), CountForged+"_total", l.counts[CountForged])
	}
	_ = m.Term()
}

// settled says whether group id is in a checkpoint already: committed in this step, or of an earlier step
// than the watermark. An id that does not parse is the trainer's to judge.
func (l *Learner) settled(id string) bool {
	if l.committed[id] {
		return true
	}
	gid, err := rollout.ParseGroupID(id)
	return err == nil && gid.Step < l.step
}

// SetAttention makes the learner refuse groups decoded with another attention than att
// (configs.AttentionDense or AttentionSparse): the first one ends Collect with an error naming both.
func (l *Learner) SetAttention(att string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attention = att
}

// checkAttention says whether a group decoded with attention got (its HdrAttention, "" for a worker that
// predates sparse policies and decodes densely) may train the learner's policy.
func (l *Learner) checkAttention(got string) error {
	want := l.attention
	if want == "" || got == want || (got == "" && want == configs.AttentionDense) {
		return nil
	}
	if got == "" {
		got = "dense (a worker that does not say; it predates sparse policies)"
	}
	return fmt.Errorf("decoded with %s attention, but the policy runs %s attention: rollout and learner must attend alike (are the workers and the learner on different configs or versions?)", got, want)
}

// keepAlive tells the server every AckWait/3 that held groups are still being worked on.
func (l *Learner) keepAlive(ctx context.Context) {
	every := secs(l.bus.AckWaitS) / 3
	t := time.NewTicker(max(every, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		var msgs []jetstream.Msg
		for _, set := range []map[string]*held{l.buf, l.pending} {
			for _, h := range set {
				msgs = append(msgs, h.msg)
			}
		}
		l.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}

// Dispatch publishes the prompts of learner step step to the work queue. A prompt whose group already
// arrived (redelivered after a learner restart) is not published again. The watermark moves to step: groups
// of earlier steps held but never collected are acked as settled.
func (l *Learner) Dispatch(ctx context.Context, step int, jobs []rollout.Job) error {
	t0 := time.Now()
	defer func() { l.mu.Lock(); l.dispatch += time.Since(t0); l.mu.Unlock() }()
	l.advance(step)
	for _, j := range jobs {
		l.mu.Lock()
		l.expected[j.GroupID] = true
		_, have := l.buf[j.GroupID]
		l.mu.Unlock()
		if have {
			continue
		}
		task, err := json.Marshal(j.Task)
		if err != nil {
			return fmt.Errorf("natsbus: job %s: %w", j.GroupID, err)
		}
		token := l.JobToken(j.GroupID)
		body, _ := json.Marshal(jobMsg{GroupID: j.GroupID, Token: token, Task: task, Version: j.Version, Seed: j.Seed})
		msg := &nats.Msg{Subject: l.names.JobSubject(), Data: body, Header: nats.Header{}}
		msg.Header.Set(HdrGroup, j.GroupID)
		err = retry(ctx, l.log, "publishing prompt "+j.GroupID, secs(l.bus.WaitS), func(ctx context.Context) error {
			// de-duplicated by token, not by group id: a slot nobody without the secret can occupy first
			_, err := l.js.PublishMsg(ctx, msg, jetstream.WithMsgID(token))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Expect makes Collect wait for the groups ids as Dispatch does, without publishing their prompts: for groups
// published without a job (the transport benchmark pushes its groups itself; its worker needs their tokens,
// JobToken and WorkerClient.Grant).
func (l *Learner) Expect(ids ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.expected[id] = true
	}
}

// Collect blocks until n of the dispatched groups have arrived, and returns them (sorted by id). It logs
// what it waits for every 10 s and gives up after rl.bus.wait_s.
func (l *Learner) Collect(ctx context.Context, n int) ([]*data.Group, error) {
	start := time.Now()
	defer func() { l.mu.Lock(); l.wait += time.Since(start); l.mu.Unlock() }()
	deadline := time.NewTimer(secs(l.bus.WaitS))
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		l.mu.Lock()
		if err := l.fatal; err != nil {
			l.mu.Unlock()
			return nil, err
		}
		var ready, missing []string
		for id := range l.expected {
			if _, ok := l.buf[id]; ok {
				ready = append(ready, id)
			} else {
				missing = append(missing, id)
			}
		}
		if len(ready) >= n {
			sort.Strings(ready)
			out := make([]*data.Group, 0, n)
			for _, id := range ready[:n] {
				h := l.buf[id]
				delete(l.buf, id)
				delete(l.expected, id)
				l.pending[id] = h
				l.maxSeq = max(l.maxSeq, h.seq)
				out = append(out, h.group)
			}
			l.mu.Unlock()
			return out, nil
		}
		arrived := l.arrived
		l.mu.Unlock()
		select {
		case <-arrived:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			sort.Strings(missing)
			l.log.Info("natsbus: learner waiting for groups", "have", len(ready), "want", n, "missing", firstN(missing, 8),
				"waited_s", round1(time.Since(start).Seconds()), "deadline_s", l.bus.WaitS, "live_workers", l.Beats.Summary())
		case <-deadline.C:
			sort.Strings(missing)
			return nil, fmt.Errorf("natsbus: no group for %v after rl.bus.wait_s = %g s (live workers: %s)", firstN(missing, 8), l.bus.WaitS, l.Beats.Summary())
		}
	}
}

// advance moves the watermark to step.
func (l *Learner) advance(step int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if step <= l.step {
		return
	}
	l.step = step
	for id := range l.committed {
		if gid, err := rollout.ParseGroupID(id); err != nil || gid.Step < step {
			delete(l.committed, id)
		}
	}
	for id, h := range l.buf {
		if gid, err := rollout.ParseGroupID(id); err == nil && gid.Step < step && !l.expected[id] {
			l.count(CountDuplicate)
			_ = h.msg.Ack()
			delete(l.buf, id)
		}
	}
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), "…+"+strconv.Itoa(len(s)-n))
	}
	return s
}

// Commit acks the groups of ids (applied or deliberately dropped by updates that a checkpoint now holds).
func (l *Learner) Commit(ctx context.Context, ids []string) error {
	for _, id := range ids {
		l.mu.Lock()
		_, ok := l.pending[id]
		l.mu.Unlock()
		if !ok {
			continue
		}
		err := retry(ctx, l.log, "acking group "+id, secs(l.bus.WaitS), func(ctx context.Context) error {
			l.mu.Lock()
			m := l.pending[id].msg // the newest delivery's handle
			l.mu.Unlock()
			return m.DoubleAck(ctx)
		})
		if err != nil {
			return err
		}
		l.mu.Lock()
		delete(l.pending, id)
		if gid, err := rollout.ParseGroupID(id); err != nil || gid.Step >= l.step {
			l.committed[id] = true // the watermark covers the others
		}
		l.mu.Unlock()
	}
	return nil
}

// Close stops fetching. Groups not committed are negatively acked so that a resumed learner gets them at
// once (they were never acked, so nothing is lost either way).
func (l *Learner) Close() error {
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	l.wg.Wait()
	l.cancel = nil
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, set := range []map[string]*held{l.buf, l.pending} {
		for _, h := range set {
			_ = h.msg.Nak()
		}
	}
	l.Beats.Close()
	return nil
}
