package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/internal/telemetry"
)

// TestMetricsFlagOffByDefault: without --metrics-addr nothing listens and nothing observes; run, learn and
// rollout all have the flag, empty by default.
func TestMetricsFlagOffByDefault(t *testing.T) {
	var mf metricsFlags
	obs, stop, err := mf.learner(context.Background(), nil)
	if err != nil || obs != nil {
		t.Fatalf("learner endpoint without --metrics-addr: %v, %v", obs, err)
	}
	stop()
	hook, stop, err := mf.worker(context.Background(), nil)
	if err != nil || hook != nil {
		t.Fatalf("worker endpoint without --metrics-addr: %v", err)
	}
	stop()
	root := newRootCmd()
	for _, name := range []string{"run", "learn", "rollout"} {
		c, _, err := root.Find([]string{name})
		if err != nil || c.Name() != name {
			t.Fatalf("no %s command: %v", name, err)
		}
		for flag, def := range map[string]string{"metrics-addr": "", "metrics-allow-remote": "false"} {
			f := c.Flags().Lookup(flag)
			if f == nil || f.DefValue != def {
				t.Errorf("%s --%s: %v, want default %q", name, flag, f, def)
			}
		}
	}
}

// TestMetricsFlagRefusesRemote: a non-loopback host is refused, naming the opt-in, before anything runs;
// with --metrics-allow-remote it binds.
func TestMetricsFlagRefusesRemote(t *testing.T) {
	root := newRootCmd()
	var out, errw bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs([]string{"run", "tiny", "--run-dir", t.TempDir(), "--metrics-addr", "0.0.0.0:0", "--log-level", "error"})
	err := root.Execute()
	if !errors.Is(err, telemetry.ErrNotLoopback) || !strings.Contains(err.Error(), "--metrics-allow-remote") {
		t.Fatalf("trainer run --metrics-addr 0.0.0.0:0: %v; want a refusal naming --metrics-allow-remote", err)
	}
	mf := metricsFlags{addr: "0.0.0.0:0", allowRemote: true}
	obs, stop, err := mf.learner(context.Background(), nil)
	if err != nil || obs == nil {
		t.Fatalf("--metrics-allow-remote: %v", err)
	}
	stop()
}
