// config_test.go tests what needs no server: URL parsing, endpoints (TLS unless http://), the environment,
// redaction of secrets in every printed form, transient-error classification and the backoff schedule.
package objstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in      string
		want    URL
		str     string
		wantErr string
	}{
		{"s3://bucket", URL{"bucket", ""}, "s3://bucket", ""},
		{"s3://bucket/", URL{"bucket", ""}, "s3://bucket", ""},
		{"s3://my-bucket.v2/runs/r1", URL{"my-bucket.v2", "runs/r1"}, "s3://my-bucket.v2/runs/r1", ""},
		{"s3://bkt/runs/r1/", URL{"bkt", "runs/r1"}, "s3://bkt/runs/r1", ""},
		{"http://bucket/x", URL{}, "", "want s3://bucket/prefix"},
		{"/local/dir", URL{}, "", "want s3://bucket/prefix"},
		{"s3://My_Bucket/x", URL{}, "", `bucket "My_Bucket"`},
		{"s3://ab/x", URL{}, "", `bucket "ab"`},
		{"s3://a..b/x", URL{}, "", `bucket "a..b"`},
		{"s3://bucket/a//b", URL{}, "", "empty"},
		{"s3://bucket/a/../b", URL{}, "", `".."`},
		{"s3://bucket/a b", URL{}, "", "whitespace"},
		{`s3://bucket/a\b`, URL{}, "", "backslashes"},
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseURL(%q) error %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want || got.String() != tt.str {
			t.Errorf("ParseURL(%q) = %+v (%s), %v; want %+v (%s)", tt.in, got, got, err, tt.want, tt.str)
		}
	}
}

func TestURLLayout(t *testing.T) {
	run := URL{"b", "runs/r1/checkpoints"}
	ck := run.Join("pretrain-300")
	tests := []struct{ got, want string }{
		{ck.String(), "s3://b/runs/r1/checkpoints/pretrain-300"},
		{ck.Key("manifest.json"), "runs/r1/checkpoints/pretrain-300/manifest.json"},
		{run.Key("latest"), "runs/r1/checkpoints/latest"},
		{ck.Name(), "pretrain-300"},
		{ck.Parent().String(), run.String()},
		{URL{Bucket: "b"}.Join("x").Key("f"), "x/f"},
		{URL{Bucket: "b"}.Key("latest"), "latest"},
		{URL{Bucket: "b", Prefix: "x"}.Parent().String(), "s3://b"},
		{run.dirPrefix(), "runs/r1/checkpoints/"},
		{URL{Bucket: "b"}.dirPrefix(), ""},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d: %q, want %q", i, tt.got, tt.want)
		}
	}
	if !IsURL("s3://b/x") || IsURL("runs/x") {
		t.Error("IsURL")
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		host    string
		secure  bool
		wantErr string
	}{
		{"", "s3.amazonaws.com", true, ""},
		{"http://127.0.0.1:7070", "127.0.0.1:7070", false, ""},
		{"http://127.0.0.1:7070/", "127.0.0.1:7070", false, ""},
		{"https://minio.example.com", "minio.example.com", true, ""},
		{"minio.example.com:9000", "minio.example.com:9000", true, ""}, // bare host: TLS
		{"ftp://x", "", false, "scheme"},
		{"http://host/bucket", "", false, "no path"},
		{"http://user:pw@host", "", false, "no path, query or user info"},
		{"http://", "", false, "no host"},
	}
	for _, tt := range tests {
		host, secure, err := parseEndpoint(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseEndpoint(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || host != tt.host || secure != tt.secure {
			t.Errorf("parseEndpoint(%q) = %q, %v, %v; want %q, %v", tt.in, host, secure, err, tt.host, tt.secure)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL", "http://generic:1")
	t.Setenv("AWS_ENDPOINT_URL_S3", "http://s3specific:2")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE12345")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret/xyz")
	t.Setenv("AWS_SESSION_TOKEN", "tok")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "eu-west-3")
	c := ConfigFromEnv()
	want := Config{Endpoint: "http://s3specific:2", AccessKey: "AKIAEXAMPLE12345", SecretKey: "secret/xyz", SessionToken: "tok", Region: "eu-west-3"}
	if c.Endpoint != want.Endpoint || c.AccessKey != want.AccessKey || c.SecretKey != want.SecretKey || c.SessionToken != want.SessionToken || c.Region != want.Region {
		t.Fatalf("ConfigFromEnv = %#v", []string{c.Endpoint, c.AccessKey, c.Region})
	}
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_REGION", "us-west-2")
	if c := ConfigFromEnv(); c.Endpoint != "http://generic:1" || c.Region != "us-west-2" {
		t.Fatalf("ConfigFromEnv fallbacks: endpoint %q region %q", c.Endpoint, c.Region)
	}
}

func TestConfigRedactsSecrets(t *testing.T) {
	const secret, token, access = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLETOKEN", "AKIAIOSFODNN7EXAMPLE"
	c := Config{Endpoint: "http://127.0.0.1:9", AccessKey: access, SecretKey: secret, SessionToken: token, Region: "us-east-1"}
	var forms []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		forms = append(forms, fmt.Sprintf(verb, c), fmt.Sprintf(verb, &c))
	}
	forms = append(forms, c.String(), fmt.Sprint(struct{ C Config }{c}), fmt.Sprintf("%+v", struct{ C Config }{c}))
	js, err := json.Marshal(struct{ C Config }{c})
	if err != nil {
		t.Fatal(err)
	}
	forms = append(forms, string(js))
	for _, h := range []func(w io.Writer) slog.Handler{
		func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
		func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("store", "config", c, "ptr", &c)
		forms = append(forms, buf.String())
	}
	// New's error names the config: it must be redacted too.
	_, err = New(Config{Endpoint: "ftp://bad", AccessKey: access, SecretKey: secret})
	if err == nil {
		t.Fatal("New accepted an ftp:// endpoint")
	}
	forms = append(forms, err.Error())
	for _, f := range forms {
		for _, s := range []string{secret, token, access} {
			if strings.Contains(f, s) {
				t.Errorf("printed config contains a secret %q: %s", s, f)
			}
		}
	}
	// It still says which endpoint and which key, in a recognisable way.
	if s := c.String(); !strings.Contains(s, "http://127.0.0.1:9") || !strings.Contains(s, "****MPLE") || !strings.Contains(s, "[REDACTED]") {
		t.Errorf("String() = %s", s)
	}
}

func TestIsTransient(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"503", minio.ErrorResponse{StatusCode: 503, Code: "ServiceUnavailable"}, true},
		{"500 internal", minio.ErrorResponse{StatusCode: 500, Code: "InternalError"}, true},
		{"429", minio.ErrorResponse{StatusCode: 429, Code: "TooManyRequests"}, true},
		{"slow down", minio.ErrorResponse{StatusCode: 503, Code: "SlowDown"}, true},
		{"request timeout code", minio.ErrorResponse{StatusCode: 400, Code: "RequestTimeout"}, true},
		{"access denied", minio.ErrorResponse{StatusCode: 403, Code: "AccessDenied"}, false},
		{"no such bucket", minio.ErrorResponse{StatusCode: 404, Code: "NoSuchBucket"}, false},
		{"bad signature", minio.ErrorResponse{StatusCode: 403, Code: "SignatureDoesNotMatch"}, false},
		{"permanent local error", permanent(os.ErrNotExist), false},
		{"wrapped permanent", fmt.Errorf("x: %w", permanent(errors.New("checksum mismatch"))), false},
		{"cancelled", fmt.Errorf("x: %w", errContextCanceled()), false},
	}
	for _, tt := range tests {
		if got := isTransient(tt.err); got != tt.want {
			t.Errorf("%s: isTransient = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func errContextCanceled() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx.Err()
}

func TestWithRetry(t *testing.T) {
	s, err := New(Config{Endpoint: "http://127.0.0.1:9", Retry: Retry{Attempts: 4, Base: time.Millisecond, Max: 2 * time.Millisecond},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	transient := minio.ErrorResponse{StatusCode: 503, Code: "SlowDown", Message: "slow down"}
	tests := []struct {
		name      string
		failFirst int   // calls that fail before one succeeds
		fail      error // the failure
		calls     int
		wantErr   string
	}{
		{"succeeds at once", 0, transient, 1, ""},
		{"transient, then succeeds", 3, transient, 4, ""},
		{"transient every time", 99, transient, 4, "put x: giving up after 4 attempts (endpoint http://127.0.0.1:9): slow down"},
		{"permanent", 99, minio.ErrorResponse{StatusCode: 403, Code: "AccessDenied", Message: "denied"}, 1, "put x: denied"},
	}
	for _, tt := range tests {
		calls := 0
		err := s.withRetry(context.Background(), "put x", func(context.Context) error {
			calls++
			if calls <= tt.failFirst {
				return tt.fail
			}
			return nil
		})
		if calls != tt.calls || (tt.wantErr == "") != (err == nil) || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("%s: %d calls, err %v; want %d calls, err %q", tt.name, calls, err, tt.calls, tt.wantErr)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err = s.withRetry(ctx, "put y", func(context.Context) error { calls++; cancel(); return transient })
	if calls != 1 || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %d calls, err %v", calls, err)
	}
}

func TestBackoffSchedule(t *testing.T) {
	r := Retry{Attempts: 6, Base: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for n, w := range want {
		if got := r.backoff(n + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", n+1, got, w)
		}
	}
	d := Retry{}.withDefaults()
	if d.Attempts != 5 || d.Base != 500*time.Millisecond || d.Max != 15*time.Second {
		t.Errorf("defaults %+v", d)
	}
}
