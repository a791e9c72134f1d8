package main

// roles_process_test.go: the least-privilege roles of deploy/nats/sparrow-roles.conf with real processes.
// Debian's nats-server runs the roles configuration (filled by natsbus.Names.RolesConfig); `trainer learn`
// connects as the user learner and two `trainer rollout` processes as the user worker. The run completes
// with every group once and the in-process run's weights, and no process and no server log line reports a
// permission violation but the workers' JetStream check (CheckServer's account info request, which the
// worker role does not allow and which passes unanswered). A second `trainer learn` with the worker's
// credentials can neither take the learner lease nor create the streams: it fails with an error, within the
// lease's bucket deadline (a minute), and the run goes on. Without nats-server the test skips, or fails
// when SPARROW_REQUIRE_NATS=1.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/internal/natstest"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

// startRolesNATS runs Debian's nats-server with the repository's roles template filled for names (a store
// directory and a passwords file of the test's, a new password for each role). It returns the server and
// the passwords.
func startRolesNATS(t *testing.T, names natsbus.Names) (*natstest.Server, map[string]string) {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "sparrow-roles.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf, pw := natstest.RolesConfig(t, names.RolesConfig(string(tmpl)))
	return natstest.Start(t, natstest.Options{Config: conf}), pw
}

// permissionLines are the lines of a process log that mention a permission violation.
func permissionLines(t *testing.T, p *proc) []string {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(strings.ToLower(line), "permission") {
			lines = append(lines, line)
		}
	}
	return lines
}

// serverViolation is a violation line of nats-server's log: the client's name, the user and the subject.
var serverViolation = regexp.MustCompile(`"([^"]*)" - (?:Publish|Subscription) Violation - User "([^"]*)", Subject "([^"]*)"`)

func TestRolesProcesses(t *testing.T) {
	names := natsbus.NewNames("tiny", "rl_math")
	srv, pw := startRolesNATS(t, names)
	addr := srv.Addr()
	url := func(role string) string { return fmt.Sprintf("nats://%s:%s@%s", role, pw[role], addr) }
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	start := time.Now()
	phase := func(what string) { t.Logf("%-58s %6.1f s", what, time.Since(start).Seconds()) }

	w1 := startTrainer(t, dir, "rollout1", busArgs("rollout", url("worker"), "--workers", "1")...)
	w2 := startTrainer(t, dir, "rollout2", busArgs("rollout", url("worker"), "--workers", "1")...)
	learner := startTrainer(t, dir, "learner", busArgs("learn", url("learner"), "--run-dir", runDir)...)
	waitLog(t, learner, "learner lease taken", 60*time.Second)
	phase("learner (user learner) took the lease")

	// a learner with the workers' credentials, while the real one holds the lease: refused by the server
	// (the lease bucket's info, then creating it), it gives up after the bucket deadline of AcquireLease
	// (max(2×TTL, 1 min)) and exits with an error
	badStart := time.Now()
	bad := startTrainer(t, dir, "learner-as-worker", busArgs("learn", url("worker"), "--run-dir", filepath.Join(dir, "bad"))...)

	if err := learner.wait(t, 180*time.Second); err != nil {
		t.Fatalf("learner: %v", err)
	}
	phase("learner finished")
	for i, w := range []*proc{w1, w2} {
		if err := w.wait(t, 30*time.Second); err != nil {
			t.Fatalf("worker %d: %v", i+1, err)
		}
	}
	phase("workers finished")
	checkExactlyOnce(t, runDir)

	const badWithin = 70 * time.Second
	code := exitCode(bad.wait(t, badWithin-time.Since(badStart)))
	took := time.Since(badStart)
	b, _ := os.ReadFile(bad.log)
	if code <= 0 {
		t.Fatalf("trainer learn with the worker's credentials exited %d after %s, want an error\n%s", code, took.Round(time.Millisecond), tail(string(b), 3000))
	}
	if !strings.Contains(string(b), "lease") || !strings.Contains(string(b), "Permissions Violation") {
		t.Errorf("trainer learn with the worker's credentials: exit %d, but its log names neither the lease nor the permission violation\n%s", code, tail(string(b), 3000))
	}
	t.Logf("trainer learn with the worker's credentials: exit %d after %.1f s: %s", code, took.Seconds(), lastLine(string(b)))

	// the processes of the run: no permission violation
	for _, c := range []struct {
		name string
		p    *proc
	}{{"learner", learner}, {"rollout1", w1}, {"rollout2", w2}} {
		lines := permissionLines(t, c.p)
		if len(lines) > 0 {
			t.Errorf("%s logged %d permission violations:\n%s", c.name, len(lines), strings.Join(lines, "\n"))
		}
	}
	// the server's view: the user learner never, the workers' processes never, the
	// worker-credentialed learner on the lease bucket
	var badViolations int
	for _, m := range serverViolation.FindAllStringSubmatch(srv.Output(), -1) {
		client, user, subject := m[1], m[2], m[3]
		switch {
		case user == "worker" && strings.Contains(client, "sparrow-learner"):
			badViolations++
		default:
			t.Errorf("nats-server: a violation of user %q (client %q) on %q", user, client, subject)
		}
	}
	if badViolations == 0 {
		t.Error("nats-server logged no violation of the learner with the worker's credentials")
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
