// natstest.go: Debian's nats-server as a child process for tests, on a free loopback port, with JetStream
// and a store directory or without, optionally with a configuration file (the roles of deploy/nats), and
// stopped, killed or restarted on the same port and store by the fault tests.

package natstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options say how to start the server.
type Options struct {
	JetStream bool   // -js with a store directory under the test's temporary directory
	Config    string // a configuration file (-c); its own jetstream block, if any, applies
}

// Server is a running nats-server child process.
type Server struct {
	bin, store string
	port       int
	opts       Options
	cmd        *exec.Cmd
	out        *output
}

// Binary returns the path of Debian's nats-server. Without it the test skips, or fails when
// SPARROW_REQUIRE_NATS=1 (CI installs it with .ci/install-nats.sh).
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr == nil {
			return "/usr/sbin/nats-server"
		}
		if os.Getenv("SPARROW_REQUIRE_NATS") == "1" {
			t.Fatal("nats-server is not installed and SPARROW_REQUIRE_NATS=1: run .ci/install-nats.sh")
		}
		t.Skip("nats-server not installed (apt-get install nats-server, or .ci/install-nats.sh)")
	}
	return bin
}

// Start runs nats-server on a free 127.0.0.1 port until the test ends; its output is logged if the test
// fails.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{bin: Binary(t), store: filepath.Join(t.TempDir(), "store"), port: l.Addr().(*net.TCPAddr).Port, opts: o, out: &output{}}
	l.Close()
	s.start(t)
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("--- nats-server output ---\n%s", tail(s.out.String(), 6000))
		}
	})
	return s
}

// URL is nats://127.0.0.1:PORT.
func (s *Server) URL() string { return "nats://" + s.Addr() }

// Addr is 127.0.0.1:PORT.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Output is what the server printed so far (its log).
func (s *Server) Output() string { return s.out.String() }

func (s *Server) start(t testing.TB) {
	t.Helper()
	args := []string{"-a", "127.0.0.1", "-p", fmt.Sprint(s.port)}
	if s.opts.Config != "" {
		args = append(args, "-c", s.opts.Config)
	}
	if s.opts.JetStream {
		args = append(args, "-js", "-sd", s.store)
	}
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", s.bin, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", s.Addr()); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 10 s", s.bin, s.Addr())
		}
	}
}

// Stop ends the server with SIGTERM (a clean shutdown) and waits for it.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL (no shutdown) and waits for it.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(sig)
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Signal sends sig to the server (SIGSTOP and SIGCONT pause and resume it).
func (s *Server) Signal(sig os.Signal) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return fmt.Errorf("natstest: the server is not running")
	}
	return s.cmd.Process.Signal(sig)
}

// Restart starts a stopped or killed server again on the same port and store.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

// RolesConfig writes a roles configuration (deploy/nats/sparrow-roles.conf as natsbus.Names.RolesConfig
// filled it for a run) with its store under the test's temporary directory and fresh passwords for the
// learner, worker and tools users in sparrow-passwords.conf beside it, and returns its path and the
// passwords.
func RolesConfig(t testing.TB, filled string) (path string, passwords map[string]string) {
	t.Helper()
	dir := t.TempDir()
	passwords = map[string]string{}
	var pw strings.Builder
	for _, role := range []string{"learner", "worker", "tools"} {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		passwords[role] = hex.EncodeToString(b)
		fmt.Fprintf(&pw, "%s_PASSWORD: %q\n", strings.ToUpper(role), passwords[role])
	}
	if err := os.WriteFile(filepath.Join(dir, "sparrow-passwords.conf"), []byte(pw.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "roles.conf")
	conf := strings.Replace(filled, "/var/lib/nats/sparrow", filepath.Join(dir, "store"), 1)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, passwords
}

// output collects a child process's output for concurrent readers.
type output struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
