// server.go: the embedded nats-server `trainer run` starts (JetStream on, file store under the run
// directory, loopback only, random port), and the creation of the stage's streams and object store, which
// the learner does idempotently (NewLearner, NewWeightPublisher); workers wait for them, and need no right
// to manage them.

package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sparrow-rl/sparrow/configs"
)

// Embedded is an in-process nats-server.
type Embedded struct {
	srv *server.Server
}

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	StoreDir   string // JetStream file store
	MaxPayload int    // bytes
	Port       int    // 0 = random
	User       string // optional user/password (tests)
	Password   string
	Token      string
}

// StartEmbedded starts a server on 127.0.0.1 and waits until it accepts connections.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: o.StoreDir, MaxPayload: int32(o.MaxPayload),
		NoSigs: true, NoLog: true, ServerName: "sparrow-embedded", JetStreamMaxStore: 64 << 30, JetStreamMaxMemory: 256 << 20,
		Username: o.User, Password: o.Password, Authorization: o.Token}
	if o.MaxPayload > 8<<20 {
		opts.MaxPending = int64(o.MaxPayload) * 4
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsbus: embedded server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("natsbus: embedded server not ready after 15 s")
	}
	return &Embedded{srv: srv}, nil
}

// URL is the client URL (nats://127.0.0.1:PORT).
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Setup creates (or updates) the stage's streams, object store and the job queue's consumer "workers": all
// that workers use and need no right to manage. The learner's side calls it (NewLearner, NewWeightPublisher).
// It fails at once on a server without JetStream or older than MinServerVersion (CheckServer).
func Setup(ctx context.Context, js jetstream.JetStream, n Names, b configs.Bus, log *slog.Logger) error {
	if err := CheckServer(ctx, js.Conn()); err != nil {
		return err
	}
	dup := secs(b.DupWindowS)
	maxAge := secs(b.MaxAgeS)
	if maxAge > 0 && dup > maxAge {
		dup = maxAge
	}
	streams := []jetstream.StreamConfig{
		{Name: n.TrajStream(), Subjects: []string{n.TrajSubject()}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
			MaxBytes: b.MaxBytes, MaxAge: maxAge, Duplicates: dup, MaxMsgSize: int32(b.MaxPayload), Description: "sparrow rollout groups (Arrow IPC + zstd)"},
		{Name: n.JobStream(), Subjects: []string{n.JobSubject()}, Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy,
			Duplicates: dup, Description: "sparrow rollout prompts (work queue)"},
		{Name: n.WeightsStream(), Subjects: []string{n.WeightsSubject()}, Storage: jetstream.FileStorage, MaxMsgsPerSubject: 1,
			Description: "sparrow weight notifications (last kept)"},
	}
	wait := secs(b.WaitS)
	for _, sc := range streams {
		err := retry(ctx, log, "creating stream "+sc.Name, wait, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		})
		if err != nil {
			return err
		}
	}
	err := retry(ctx, log, "creating consumer workers on "+n.JobStream(), wait, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateConsumer(ctx, n.JobStream(), workersConsumer(n, b))
		return err
	})
	if err != nil {
		return err
	}
	if b.Weights == "objectstore" {
		err := retry(ctx, log, "creating object store "+n.Bucket(), wait, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: n.Bucket(), Storage: jetstream.FileStorage,
				Description: "sparrow policy weights"})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
