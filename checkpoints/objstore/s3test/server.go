// server.go runs versitygw (posix backend) for a test on 127.0.0.1 with a random free port and a temporary
// root directory. The binary is looked up in $PATH, then in $(go env GOPATH)/bin (install it with
// .ci/install-s3.sh or `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`). When it is missing,
// tests skip — unless SPARROW_REQUIRE_S3=1 (CI sets it), where they fail with instructions. The server can be
// killed and restarted on the same directory and port to test faults, and its posix directory exposes
// objects as plain files (bucket/key) to test corruption.

package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Credentials and region of every test server.
const (
	AccessKey = "sparrowtestkey"
	SecretKey = "sparrow-test-secret-0123456789"
	Region    = "us-east-1"
)

// RequireEnv is the variable that turns a missing versitygw from a skip into a failure.
const RequireEnv = "SPARROW_REQUIRE_S3"

// Server is a running versitygw.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Addr     string // 127.0.0.1:PORT
	Dir      string // posix root: <Dir>/<bucket>/<key> are the objects' bytes

	t       testing.TB
	bin     string
	sidecar string // "" when the filesystem keeps user xattrs
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan error
}

// Binary returns the path of versitygw: $PATH first, then $(go env GOPATH)/bin.
func Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw not found in $PATH nor in %s", strings.Join(dirs, ", "))
}

// Required reports whether SPARROW_REQUIRE_S3=1: S3 tests must run, not skip.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// SkipOrFail skips t with why, or fails it when SPARROW_REQUIRE_S3=1.
func SkipOrFail(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (%s=1: S3 tests must run; install with .ci/install-s3.sh)", why, RequireEnv)
		return
	}
	t.Skipf("%s; set %s=1 to make this a failure", why, RequireEnv)
}

// Start starts versitygw for the test; it is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		SkipOrFail(t, fmt.Sprintf("no S3 server for this test: %v (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)", err))
	}
	base := t.TempDir()
	s := &Server{t: t, bin: bin, Dir: filepath.Join(base, "root"), logPath: filepath.Join(base, "versitygw.log")}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if !userXattrs(s.Dir) {
		s.sidecar = filepath.Join(base, "sidecar")
		if err := os.MkdirAll(s.sidecar, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(s.Stop)
	var lastErr error
	for range 3 { // another process may take the free port between probing and binding
		addr, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(addr); lastErr == nil {
			return s
		}
	}
	t.Fatalf("start versitygw: %v", lastErr)
	return nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs versitygw on addr and waits until it answers HTTP.
func (s *Server) start(addr string) error {
	args := []string{"--port", addr, "--quiet", "posix"}
	if s.sidecar != "" {
		args = append(args, "--sidecar", s.sidecar)
	}
	args = append(args, s.Dir)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey, "VGW_REGION="+Region)
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", s.bin, err)
	}
	exit := make(chan error, 1)
	go func() { exit <- cmd.Wait(); logf.Close() }()
	s.mu.Lock()
	s.cmd, s.exit, s.Addr, s.Endpoint = cmd, exit, addr, "http://"+addr
	s.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-exit:
			exit <- err
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("versitygw on %s exited: %v; log:\n%s", addr, err, s.log())
		default:
		}
		if resp, err := client.Get(s.Endpoint + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("versitygw on %s did not answer within 15 s; log:\n%s", addr, s.log())
}

func (s *Server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(bytes.TrimSpace(b))
}

// Stop kills the server (SIGKILL: no graceful shutdown, like a crash) and waits for it to exit.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exit := s.cmd, s.exit
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exit
}

// Restart starts the server again on the same directory and port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for range 50 { // the kernel may hold the port briefly
		if err = s.start(s.Addr); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restart versitygw on %s: %v", s.Addr, err)
}

// Client returns a minio-go client of the server.
func (s *Server) Client() *minio.Client {
	s.t.Helper()
	c, err := minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Region: Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		s.t.Fatalf("minio client of %s: %v", s.Endpoint, err)
	}
	return c
}

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(name string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Client().MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region}); err != nil {
		s.t.Fatalf("make bucket %s: %v", name, err)
	}
}

// SetEnv points the AWS_* environment variables at the server for the rest of the test.
func (s *Server) SetEnv(t testing.TB) {
	t.Helper()
	t.Setenv("AWS_ENDPOINT_URL", s.Endpoint)
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ACCESS_KEY_ID", AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", Region)
	t.Setenv("AWS_DEFAULT_REGION", Region)
}

// ObjectPath returns the file that holds an object's bytes in the posix backend.
func (s *Server) ObjectPath(bucket, key string) string {
	return filepath.Join(s.Dir, bucket, filepath.FromSlash(key))
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
