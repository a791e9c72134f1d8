// natsbus.go holds the names (streams, subjects, buckets), the connection options with their secrets and
// their redaction, and Connect.

package natsbus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sparrow-rl/sparrow/configs"
)

// Names are the JetStream resources of one RL stage of one run.
type Names struct {
	Prefix, Stage string
}

// NewNames sanitises the prefix (run name) and stage name into subject and stream tokens.
func NewNames(prefix, stage string) Names { return Names{Prefix: token(prefix), Stage: token(stage)} }

// token keeps [A-Za-z0-9_-] and turns everything else into '_' (subjects split on '.', streams refuse
// '.', '*', '>' and spaces).
func token(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

func (n Names) subject(kind string) string { return "sparrow." + n.Prefix + "." + kind + "." + n.Stage }
func (n Names) stream(kind string) string {
	return strings.ToUpper("SPARROW_" + n.Prefix + "_" + n.Stage + "_" + kind)
}

// TrajSubject is sparrow.<run>.traj.<stage>, the subject of finished groups.
func (n Names) TrajSubject() string { return n.subject("traj") }

// JobSubject is sparrow.<run>.jobs.<stage>, the prompt work queue.
func (n Names) JobSubject() string { return n.subject("jobs") }

// WeightsSubject is sparrow.<run>.weights.<stage>, the weight notifications (last one kept).
func (n Names) WeightsSubject() string { return n.subject("weights") }

// HeartbeatSubject is sparrow.<run>.hb.<stage> (core NATS, not stored).
func (n Names) HeartbeatSubject() string { return n.subject("hb") }

// TrajStream, JobStream and WeightsStream name the streams; Bucket names the weights' object store.
func (n Names) TrajStream() string    { return n.stream("TRAJ") }
func (n Names) JobStream() string     { return n.stream("JOBS") }
func (n Names) WeightsStream() string { return n.stream("WEIGHTS") }
func (n Names) Bucket() string        { return n.stream("W") }

// Secrets are the credentials that never go into a config file or a log line.
type Secrets struct {
	Password string
	Token    string
}

type secretsKey struct{}

// WithSecrets returns a context carrying NATS secrets (the CLI parses them out of --nats URLs).
func WithSecrets(ctx context.Context, s Secrets) context.Context {
	return context.WithValue(ctx, secretsKey{}, s)
}

// SecretsFrom returns the secrets of ctx, falling back to SPARROW_NATS_PASSWORD and SPARROW_NATS_TOKEN.
func SecretsFrom(ctx context.Context) Secrets {
	s, _ := ctx.Value(secretsKey{}).(Secrets)
	if s.Password == "" {
		s.Password = os.Getenv("SPARROW_NATS_PASSWORD")
	}
	if s.Token == "" {
		s.Token = os.Getenv("SPARROW_NATS_TOKEN")
	}
	return s
}

// SplitURL removes credentials from NATS URLs (comma-separated): user:password@ or token@. It returns the
// clean URLs, the user name and the secrets found.
func SplitURL(raw string) (clean, user string, sec Secrets, err error) {
	var out []string
	for _, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "://") {
			part = "nats://" + part
		}
		u, perr := url.Parse(part)
		if perr != nil {
			// never echo the URL: it may hold a password
			return "", "", Secrets{}, fmt.Errorf("--nats: a URL does not parse (scheme://[user[:password]@]host:port expected)")
		}
		if u.User != nil {
			if p, ok := u.User.Password(); ok {
				user, sec.Password = u.User.Username(), p
			} else {
				sec.Token = u.User.Username()
			}
			u.User = nil
		}
		out = append(out, u.String())
	}
	if len(out) == 0 {
		return "", "", Secrets{}, errors.New("--nats: no URL")
	}
	return strings.Join(out, ","), user, sec, nil
}

// ConnOptions say how to reach the server. String and LogValue never show the secrets.
type ConnOptions struct {
	URL, User, CredsFile     string
	TLSCA, TLSCert, TLSKey   string
	Secrets                  Secrets
	Name                     string // client name shown by the server
	Log                      *slog.Logger
	ReconnectWait, PingEvery time.Duration
}

// FromConfig builds connection options from rl.bus and the secrets of ctx.
func FromConfig(ctx context.Context, b configs.Bus, url, name string, log *slog.Logger) ConnOptions {
	return ConnOptions{URL: url, User: b.User, CredsFile: b.CredsFile, TLSCA: b.TLSCA, TLSCert: b.TLSCert, TLSKey: b.TLSKey,
		Secrets: SecretsFrom(ctx), Name: name, Log: log}
}

func (o ConnOptions) String() string {
	auth := "none"
	switch {
	case o.CredsFile != "":
		auth = "creds file " + o.CredsFile
	case o.User != "":
		auth = "user " + o.User + " (password redacted)"
	case o.Secrets.Token != "":
		auth = "token (redacted)"
	}
	return fmt.Sprintf("nats %s, auth %s, tls %v", o.URL, auth, o.TLSCA != "" || o.TLSCert != "")
}

// LogValue keeps secrets out of structured logs.
func (o ConnOptions) LogValue() slog.Value { return slog.StringValue(o.String()) }

// Connect dials NATS with reconnection forever (every blocking call of this package has its own deadline)
// and logs disconnects and reconnects. It refuses a server older than MinServerVersion; whether the server
// has JetStream is CheckServer's to say (Setup and RunWorkers call it).
func Connect(o ConnOptions) (*nats.Conn, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	wait := o.ReconnectWait
	if wait == 0 {
		wait = 250 * time.Millisecond
	}
	ping := o.PingEvery
	if ping == 0 {
		ping = 5 * time.Second
	}
	opts := []nats.Option{nats.Name(o.Name), nats.MaxReconnects(-1), nats.ReconnectWait(wait), nats.RetryOnFailedConnect(false),
		nats.PingInterval(ping), nats.MaxPingsOutstanding(3), nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if err != nil && !c.IsClosed() {
				log.Warn("nats: disconnected; reconnecting", "server", o.URL, "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats: reconnected", "server", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("nats: async error", "err", err) }),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Secrets.Password))
	case o.Secrets.Token != "":
		opts = append(opts, nats.Token(o.Secrets.Token))
	}
	if o.TLSCA != "" || o.TLSCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.TLSCA != "" {
			pem, err := os.ReadFile(o.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("rl.bus.tls_ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("rl.bus.tls_ca %s: no PEM certificate", o.TLSCA)
			}
			tc.RootCAs = pool
		}
		if o.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("rl.bus.tls_cert/tls_key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(tc))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsbus: connecting to %s: %w", o.String(), err)
	}
	if v := nc.ConnectedServerVersion(); v != "" {
		if err := checkVersion(v); err != nil {
			url := nc.ConnectedUrlRedacted()
			nc.Close()
			return nil, fmt.Errorf("natsbus: nats-server at %s: %w", url, err)
		}
	}
	log.Info("nats: connected", "server", nc.ConnectedUrlRedacted(), "max_payload", nc.MaxPayload(), "client", o.Name)
	return nc, nil
}

// retry calls f until it succeeds, ctx ends, or the deadline passes, logging each failure at most every
// few seconds with what it was doing (server restarts make JetStream calls fail for a while).
func retry(ctx context.Context, log *slog.Logger, what string, deadline time.Duration, f func(ctx context.Context) error) error {
	start := time.Now()
	lastLog := time.Time{}
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("natsbus: %s: %w", what, perm.error)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > deadline {
			return fmt.Errorf("natsbus: %s: gave up after %s: %w", what, deadline, err)
		}
		if time.Since(lastLog) > 3*time.Second {
			log.Warn("natsbus: retrying", "what", what, "err", err, "waited_s", round1(time.Since(start).Seconds()), "deadline_s", deadline.Seconds())
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// permanentError stops retry at once.
type permanentError struct{ error }

func permanent(err error) error { return permanentError{err} }

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
