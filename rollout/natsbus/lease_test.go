// lease_test.go: the learner lease against an embedded server — a second learner is refused while the
// holder renews, naming it; a stolen lease is lost at the next compare-and-set; an expired one is taken
// over, after which the paused holder finds it lost; a released one is taken at once.

package natsbus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestLearnerLease(t *testing.T) {
	e := embedded(t, EmbeddedOptions{})
	ctx := context.Background()
	nc, err := Connect(ConnOptions{URL: e.URL(), Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := NewNames("lease run", "rl")
	const ttl = time.Second
	acquire := func(dir string) (*Lease, error) {
		return AcquireLease(ctx, nc, names, LeaseOptions{TTL: ttl, RunDir: dir, Log: quiet()})
	}
	a, err := acquire("runs/a")
	if err != nil {
		t.Fatal(err)
	}

	// a live holder: the newcomer sees it renew and refuses, naming it
	start := time.Now()
	_, err = acquire("runs/b")
	var held *LeaseHeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLeaseHeld) || held.Holder.RunDir != "runs/a" || !strings.Contains(err.Error(), "runs/a") {
		t.Fatalf("second learner: %v, want a refusal naming runs/a", err)
	}
	if d := time.Since(start); d > ttl {
		t.Errorf("refused after %s, want within a renewal period (%s)", d, ttl/4)
	}

	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, names.LeaseBucket())
	if err != nil {
		t.Fatal(err)
	}
	// a server restarted without its last writes: its entry is the holder's own at another revision, or gone;
	// the holder keeps its lease (it writes it again), as a chaos soak with nats-server SIGKILLs showed
	own, err := kv.Get(ctx, LeaseKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, LeaseKey, own.Value()); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(ctx); err != nil {
		t.Fatalf("Check after the server moved the holder's own entry to another revision: %v, want the lease kept", err)
	}
	if err := kv.Delete(ctx, LeaseKey); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(ctx); err != nil {
		t.Fatalf("Check after the server lost the entry: %v, want the lease created again", err)
	}

	// stolen: the holder's next compare-and-set fails
	if _, err := kv.Put(ctx, LeaseKey, []byte(`{"host":"thief","pid":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(ctx); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "thief") {
		t.Fatalf("Check after the lease was taken: %v, want ErrLeaseLost naming the thief", err)
	}
	select {
	case <-a.Lost():
	default:
		t.Fatal("Lost not closed")
	}
	if err := a.Release(ctx); err != nil {
		t.Errorf("releasing a lost lease: %v", err)
	}

	// nobody renews the thief's entry: it expires and the next learner takes over
	start = time.Now()
	c, err := acquire("runs/c")
	if err != nil {
		t.Fatalf("taking over an expired lease: %v", err)
	}
	t.Logf("expired lease taken over after %s", time.Since(start).Round(time.Millisecond))

	// a paused holder (renewals stopped, no release) loses to the learner that takes over after expiry
	close(c.stop)
	c.wg.Wait()
	d, err := acquire("runs/d")
	if err != nil {
		t.Fatalf("taking over from a paused holder: %v", err)
	}
	if err := c.Check(ctx); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "runs/d") {
		t.Fatalf("the paused holder's Check: %v, want ErrLeaseLost naming runs/d", err)
	}

	// released: the next learner starts at once
	if err := d.Release(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	f, err := acquire("runs/f")
	if err != nil {
		t.Fatal(err)
	}
	if dt := time.Since(start); dt > ttl/2 {
		t.Errorf("a released lease took %s to acquire", dt)
	}
	if err := f.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
