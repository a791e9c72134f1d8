// config.go is how Sparrow reaches S3-compatible object storage: the endpoint (a flag or config value, else
// AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS S3; an http:// endpoint means plain HTTP, https:// or a bare
// host means TLS), the usual AWS_* credentials, path-style bucket lookup, and the retry policy. Secrets never
// reach a log: Config's String, GoString, LogValue and JSON forms redact them.

package objstore

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// DefaultEndpoint is used when neither the config nor the environment names one.
const DefaultEndpoint = "https://s3.amazonaws.com"

// Config says where the object store is and how to authenticate.
type Config struct {
	Endpoint     string       // http://host:port (plain HTTP), https://host or host[:port] (TLS); "" = DefaultEndpoint
	AccessKey    string       // AWS_ACCESS_KEY_ID; "" with SecretKey "" = anonymous
	SecretKey    string       `json:"-"` // AWS_SECRET_ACCESS_KEY, never printed
	SessionToken string       `json:"-"` // AWS_SESSION_TOKEN, never printed
	Region       string       // AWS_REGION (or AWS_DEFAULT_REGION); "" = asked from the server
	Retry        Retry        // transient-error policy of every operation
	Log          *slog.Logger `json:"-"` // nil = slog.Default()
}

// Retry is the exponential backoff of an operation that failed with a transient error (network error,
// HTTP 5xx, 408, 429, SlowDown...): Attempts tries in all, waiting Base, 2·Base, 4·Base... capped at Max.
type Retry struct {
	Attempts int           // default 5
	Base     time.Duration // default 500 ms
	Max      time.Duration // default 15 s
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 5
	}
	if r.Base <= 0 {
		r.Base = 500 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 15 * time.Second
	}
	return r
}

// ConfigFromEnv reads AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN and AWS_REGION (or AWS_DEFAULT_REGION).
func ConfigFromEnv() Config {
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := strings.TrimSpace(os.Getenv(k)); v != "" {
				return v
			}
		}
		return ""
	}
	return Config{
		Endpoint:     first("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		AccessKey:    first("AWS_ACCESS_KEY_ID"),
		SecretKey:    first("AWS_SECRET_ACCESS_KEY"),
		SessionToken: first("AWS_SESSION_TOKEN"),
		Region:       first("AWS_REGION", "AWS_DEFAULT_REGION"),
	}
}

// redactedKey shows enough of an access key id to tell two apart (its last 4 characters), never a secret.
func redactedKey(k string) string {
	switch {
	case k == "":
		return ""
	case len(k) <= 8:
		return "****"
	}
	return "****" + k[len(k)-4:]
}

func redacted(secret string) string {
	if secret == "" {
		return ""
	}
	return "[REDACTED]"
}

// String describes c without its secrets.
func (c Config) String() string {
	return fmt.Sprintf("objstore.Config{Endpoint: %q, AccessKey: %q, SecretKey: %q, SessionToken: %q, Region: %q}",
		c.Endpoint, redactedKey(c.AccessKey), redacted(c.SecretKey), redacted(c.SessionToken), c.Region)
}

// GoString makes %#v redact like %v.
func (c Config) GoString() string { return c.String() }

// Format makes every fmt verb (%v, %+v, %s, %q...) use String, so no verb prints the struct's fields raw.
func (c Config) Format(f fmt.State, verb rune) { fmt.Fprint(f, c.String()) }

// LogValue makes slog print c redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint),
		slog.String("access_key", redactedKey(c.AccessKey)),
		slog.String("secret_key", redacted(c.SecretKey)),
		slog.String("session_token", redacted(c.SessionToken)),
		slog.String("region", c.Region))
}

// MarshalJSON writes c redacted.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"endpoint": c.Endpoint, "access_key": redactedKey(c.AccessKey), "secret_key": redacted(c.SecretKey),
		"session_token": redacted(c.SessionToken), "region": c.Region})
}

// parseEndpoint splits an endpoint into minio-go's host[:port] and whether to use TLS.
func parseEndpoint(ep string) (host string, secure bool, err error) {
	if ep == "" {
		ep = DefaultEndpoint
	}
	raw := ep
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep // a bare host means TLS
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", false, fmt.Errorf("endpoint %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		secure = true
	default:
		return "", false, fmt.Errorf("endpoint %q: scheme %q, want http:// (plain HTTP) or https://", raw, u.Scheme)
	}
	if u.Host == "" {
		return "", false, fmt.Errorf("endpoint %q: no host", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", false, fmt.Errorf("endpoint %q: want scheme://host[:port] only (no path, query or user info)", raw)
	}
	return u.Host, secure, nil
}

// Store is a client of one object store. It is safe for concurrent use.
type Store struct {
	client *minio.Client
	cfg    Config
	retry  Retry
	log    *slog.Logger
}

// minioRetries is minio-go's own per-request retry count (it retries a single part or request quickly); the
// Store's Retry policy wraps whole operations around it with a longer exponential backoff.
const minioRetries = 3

// New returns a Store for cfg (path-style bucket lookup, static credentials).
func New(cfg Config) (*Store, error) {
	host, secure, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("object storage: %w", err)
	}
	cl, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   minioRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("object storage client for %s: %w", cfg, err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Store{client: cl, cfg: cfg, retry: cfg.Retry.withDefaults(), log: log}, nil
}

// NewFromEnv is New(ConfigFromEnv()).
func NewFromEnv() (*Store, error) { return New(ConfigFromEnv()) }

// Config returns the store's configuration (print it freely: it redacts itself).
func (s *Store) Config() Config { return s.cfg }
