// lease.go: the learner lease, so that one learner at a time drives an RL stage of a run over NATS. The
// lease is the key "learner" of the KV bucket SPARROW_<RUN>_<STAGE>_LEASE (Names.LeaseBucket; file storage,
// one revision kept, the bucket's max age is the lease TTL). Its value names the holder (host, pid, run
// directory, since) and its revision is the fencing token. AcquireLease creates the key, which succeeds
// only while nobody holds it; the holder renews it every TTL/4 by a compare-and-set on the revision it last
// wrote, so an entry that nobody renews for a TTL expires on the server. A learner that finds the key held
// watches it: a renewal proves the holder alive and the newcomer refuses, naming it (LeaseHeldError); an
// entry that expires instead (a learner killed or paused) is taken over. A holder whose compare-and-set
// fails — another learner took the key after it expired — or that cannot renew for a whole TTL has lost the
// lease for good: Lost is closed, Err and Check return an error wrapping ErrLeaseLost, and the trainer stops
// before it publishes weights or writes another checkpoint. Release deletes the key (compare-and-set too),
// so that a successor starts at once.

package natsbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaseKey is the key of the learner lease in the stage's lease bucket.
const LeaseKey = "learner"

// DefaultLeaseTTL is the lease TTL when LeaseOptions.TTL is 0.
const DefaultLeaseTTL = 30 * time.Second

// LeaseBucket names the stage's KV bucket of the learner lease.
func (n Names) LeaseBucket() string { return n.stream("LEASE") }

var (
	// ErrLeaseHeld marks a refusal: another learner holds the stage's lease (LeaseHeldError says which).
	ErrLeaseHeld = errors.New("natsbus: another learner holds this stage's lease")
	// ErrLeaseLost marks a learner that no longer holds its lease.
	ErrLeaseLost = errors.New("natsbus: the learner lost its lease")
)

// LeaseHolder is the value of the lease key: who holds it.
type LeaseHolder struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	RunDir  string    `json:"run_dir,omitempty"`
	Since   time.Time `json:"since"`   // when it took the lease (its clock)
	Renewed time.Time `json:"renewed"` // its last renewal (its clock)
	ID      string    `json:"id"`      // tells two holders apart
}

func (h LeaseHolder) String() string {
	s := fmt.Sprintf("host %s pid %d", h.Host, h.PID)
	if h.RunDir != "" {
		s += " (run directory " + h.RunDir + ")"
	}
	return s + " since " + h.Since.Format(time.RFC3339)
}

// LeaseHeldError is AcquireLease's refusal.
type LeaseHeldError struct {
	Holder LeaseHolder
	Bucket string
	TTL    time.Duration
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("natsbus: another learner holds this stage's lease: %s, last renewed %s (KV %s key %s). Stop it first; a learner that is gone loses the lease %s after its last renewal",
		e.Holder, e.Holder.Renewed.Format(time.RFC3339), e.Bucket, LeaseKey, e.TTL)
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// LeaseOptions configure AcquireLease.
type LeaseOptions struct {
	TTL    time.Duration // the lease's time to live without renewal (0: DefaultLeaseTTL)
	RunDir string        // shown to a learner that is refused
	Log    *slog.Logger
}

// Lease is a held learner lease.
type Lease struct {
	kv     jetstream.KeyValue
	bucket string
	ttl    time.Duration
	log    *slog.Logger

	mu     sync.Mutex // serialises renewals
	holder LeaseHolder
	rev    uint64
	lastOK time.Time // of the last confirmed write
	err    error     // why the lease is lost (nil while held)
	lost   chan struct{}

	stop chan struct{}
	wg   sync.WaitGroup
}

// AcquireLease takes the learner lease of the stage names on nc. A lease held by a live learner is refused
// with a *LeaseHeldError as soon as the holder renews it; one nobody renews is taken over once it expires
// (after at most a TTL). It gives up when ctx ends.
func AcquireLease(ctx context.Context, nc *nats.Conn, names Names, o LeaseOptions) (*Lease, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	ttl := o.TTL
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	bucket := names.LeaseBucket()
	cfg := jetstream.KeyValueConfig{Bucket: bucket, History: 1, TTL: ttl, Storage: jetstream.FileStorage,
		Description: "sparrow learner lease (one learner per run and stage)"}
	// An existing bucket keeps its TTL until this learner holds the key: changing it under a live holder
	// that renews at another pace could expire its lease.
	var kv jetstream.KeyValue
	bucketTTL := ttl
	err = retry(ctx, log, "opening the lease bucket "+bucket, max(2*ttl, time.Minute), func(ctx context.Context) error {
		kv, err = js.KeyValue(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		}
		if err != nil {
			return err
		}
		st, err := kv.Status(ctx)
		if err == nil {
			bucketTTL = st.TTL()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	l := &Lease{kv: kv, bucket: bucket, ttl: ttl, log: log, lost: make(chan struct{}), stop: make(chan struct{}),
		holder: LeaseHolder{Host: host, PID: os.Getpid(), RunDir: o.RunDir, ID: randomID()}}
	var (
		seen     uint64      // the revision of the other holder's entry when first seen
		other    LeaseHolder // its value
		deadline time.Time   // when a held entry that neither moved nor expired is refused
		giveUp   = time.Now().Add(max(2*ttl, time.Minute))
		poll     = min(bucketTTL/8, 250*time.Millisecond)
	)
	// held: this learner wrote revision rev of the key
	held := func(rev uint64, at time.Time) *Lease {
		l.rev, l.lastOK = rev, at
		if bucketTTL != ttl {
			if _, err := js.UpdateKeyValue(ctx, cfg); err != nil {
				log.Warn("natsbus: the lease bucket keeps its TTL", "bucket", bucket, "ttl", bucketTTL, "wanted", ttl, "err", err)
				l.ttl = bucketTTL
			}
		}
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.keep() }()
		return l
	}
	for {
		now := time.Now()
		l.holder.Since, l.holder.Renewed = now, now
		val, _ := json.Marshal(l.holder)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rev, err := kv.Create(cctx, LeaseKey, val)
		cancel()
		if err == nil {
			if seen != 0 {
				log.Warn("natsbus: took over the learner lease of a learner that stopped renewing it", "previous", other.String(), "bucket", bucket)
			}
			return held(rev, now), nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			e, gerr := kv.Get(cctx, LeaseKey)
			cancel()
			if errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
				continue // expired or released meanwhile: try again at once
			}
			if gerr == nil {
				var h LeaseHolder
				if jerr := json.Unmarshal(e.Value(), &h); jerr != nil {
					h = LeaseHolder{Host: "?", ID: fmt.Sprintf("an unreadable value (%v)", jerr)}
				}
				switch {
				case h.ID == l.holder.ID: // this learner's own create, whose answer was lost
					l.holder = h
					return held(e.Revision(), h.Renewed), nil
				case seen == 0:
					seen, other, deadline = e.Revision(), h, time.Now().Add(bucketTTL+bucketTTL/2+2*time.Second)
					log.Info("natsbus: the learner lease is held; waiting for its holder to renew it (then this learner refuses) or for it to expire (then this learner takes over)",
						"holder", h.String(), "bucket", bucket, "ttl_s", bucketTTL.Seconds())
				case e.Revision() != seen || time.Now().After(deadline):
					return nil, &LeaseHeldError{Holder: h, Bucket: bucket, TTL: bucketTTL}
				}
			}
		} else if time.Now().After(giveUp) {
			return nil, fmt.Errorf("natsbus: taking the learner lease (KV %s): %w", bucket, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(poll):
		}
	}
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Holder is this learner's lease value.
func (l *Lease) Holder() LeaseHolder {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder
}

// Bucket is the KV bucket of the lease.
func (l *Lease) Bucket() string { return l.bucket }

// TTL is the lease's time to live without renewal.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Revision is the revision of the lease's last write: the fencing token.
func (l *Lease) Revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// Lost is closed when the lease is lost.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err is why the lease is lost (wrapping ErrLeaseLost), nil while it is held.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// keep renews the lease every TTL/4 until Release, or until it is lost.
func (l *Lease) keep() {
	t := time.NewTicker(l.ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.lost:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(l.ttl/4, time.Second))
		err := l.renew(ctx)
		cancel()
		if err != nil && !errors.Is(err, ErrLeaseLost) {
			l.log.Warn("natsbus: renewing the learner lease failed; retrying", "bucket", l.bucket, "err", err,
				"unconfirmed_s", round1(time.Since(l.lastConfirmed()).Seconds()), "ttl_s", l.ttl.Seconds())
		}
	}
}

func (l *Lease) lastConfirmed() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastOK
}

// renew writes the lease again if its revision is still the one this learner wrote last. A revision that
// moved, a key that is gone, or no confirmed write for a whole TTL loses the lease; another failure
// (the server unreachable for a moment) is returned as it is.
func (l *Lease) renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	h := l.holder
	h.Renewed = time.Now()
	val, _ := json.Marshal(h)
	rev, err := l.kv.Update(ctx, LeaseKey, val, l.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyExists) {
		rev, err = l.reassert(ctx, val, err)
	}
	if err == nil {
		l.holder, l.rev, l.lastOK = h, rev, time.Now()
		return nil
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists):
		now := "nobody (it expired)"
		gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if e, gerr := l.kv.Get(gctx, LeaseKey); gerr == nil {
			var other LeaseHolder
			if json.Unmarshal(e.Value(), &other) == nil {
				now = other.String()
			}
		}
		cancel()
		l.lose(fmt.Errorf("%w: its lease (KV %s key %s, revision %d) was taken over after it expired, now held by %s; this learner stops without writing another checkpoint",
			ErrLeaseLost, l.bucket, LeaseKey, l.rev, now))
		return l.err
	case time.Since(l.lastOK) > l.ttl:
		l.lose(fmt.Errorf("%w: not renewed for %s, more than its TTL %s (KV %s): another learner may hold it now; this learner stops without writing another checkpoint (last error: %v)",
			ErrLeaseLost, time.Since(l.lastOK).Round(time.Millisecond), l.ttl, l.bucket, err))
		return l.err
	}
	return fmt.Errorf("natsbus: renewing the learner lease: %w", err)
}

// reassert handles a renewal whose revision did not match. A server restarted without its last writes
// (killed before they reached its disk) can hand back an older revision of this learner's own entry, or no
// entry at all: the lease is still this learner's, and it writes it again at the revision the server has
// (or creates it, which fails if another learner got there first). An entry of another holder is not
// touched: the mismatch stands and the lease is lost.
func (l *Lease) reassert(ctx context.Context, val []byte, mismatch error) (uint64, error) {
	e, err := l.kv.Get(ctx, LeaseKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		l.log.Warn("natsbus: the learner lease entry is gone from the server (restarted without its last writes?); creating it again", "bucket", l.bucket)
		return l.kv.Create(ctx, LeaseKey, val)
	case err != nil:
		return 0, err
	}
	var cur LeaseHolder
	if json.Unmarshal(e.Value(), &cur) != nil || cur.ID != l.holder.ID {
		return 0, mismatch
	}
	l.log.Warn("natsbus: the server holds an older revision of this learner's lease (restarted without its last writes?); renewing from it",
		"bucket", l.bucket, "had", l.rev, "server", e.Revision())
	return l.kv.Update(ctx, LeaseKey, val, e.Revision())
}

// lose records why the lease is lost and closes Lost; l.mu is held.
func (l *Lease) lose(err error) {
	l.err = err
	close(l.lost)
	l.log.Error("natsbus: learner lease lost", "bucket", l.bucket, "err", err)
}

// Check renews the lease now and returns nil once the server confirmed it, an error wrapping ErrLeaseLost
// when it is lost, or ctx's error. A server that does not answer is retried until the lease goes a whole
// TTL unconfirmed (lost).
func (l *Lease) Check(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, max(l.ttl/4, time.Second))
		err := l.renew(cctx)
		cancel()
		if err == nil || errors.Is(err, ErrLeaseLost) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsbus: confirming the learner lease: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Release stops renewing and deletes the key if this learner still holds it, so that the next learner
// starts at once.
func (l *Lease) Release(ctx context.Context) error {
	select {
	case <-l.stop:
		return nil
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil
	}
	l.err = fmt.Errorf("%w: released", ErrLeaseLost)
	close(l.lost)
	if err := l.kv.Delete(ctx, LeaseKey, jetstream.LastRevision(l.rev)); err != nil {
		return fmt.Errorf("natsbus: releasing the learner lease (KV %s; it expires after %s): %w", l.bucket, l.ttl, err)
	}
	return nil
}
