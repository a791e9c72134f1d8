// Tests of `trainer bench` (bench.go) on the tiny recipe with one repetition: --json prints exactly one JSON
// object on stdout with the fields the issue names, progress goes to stderr only, the table form prints the
// headline rows, and bad arguments are refused.
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runBench(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newBenchCmd()
	var out, errw bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errw)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errw.String(), err
}

func TestBenchCmdJSON(t *testing.T) {
	tests := []struct {
		args []string
		keys []string
	}{
		{[]string{"train-step", "--config", "tiny", "--reps", "1", "--warmup", "0", "--json"},
			[]string{"tokens_per_s", "step_gflops", "sgemm_gflops", "ratio", "step_ms", "backend", "threads", "params", "alloc_bytes_per_step", "cpu_ms_per_step"}},
		{[]string{"decode", "--config", "tiny", "--reps", "1", "--tokens", "8", "--json"},
			[]string{"tokens_per_s", "ms_per_token", "weights"}},
		{[]string{"gemm", "--config", "tiny", "--reps", "1", "--sizes", "16,32", "--min-time", "1ms", "--json"},
			[]string{"square", "model", "model_gflops", "backend"}},
	}
	for _, tc := range tests {
		t.Run(tc.args[0], func(t *testing.T) {
			out, errOut, err := runBench(t, tc.args...)
			if err != nil {
				t.Fatalf("%v (stderr %s)", err, errOut)
			}
			if strings.Count(out, "\n") != 1 {
				t.Fatalf("stdout is not one line: %q", out)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
			}
			for _, k := range tc.keys {
				v, ok := m[k]
				if !ok {
					t.Errorf("JSON lacks %q", k)
				}
				if f, isNum := v.(float64); isNum && !(f > 0) {
					t.Errorf("%s = %v, want positive", k, f)
				}
			}
			if !strings.Contains(errOut, "bench") {
				t.Errorf("no progress lines on stderr: %q", errOut)
			}
		})
	}
}

func TestBenchCmdTable(t *testing.T) {
	out, _, err := runBench(t, "train-step", "--config", "tiny", "--reps", "1", "--batch", "2", "--seq-len", "16")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tokens/s", "step GFLOP/s", "sgemm GFLOP/s", "ratio", "2 × 16 tokens", "allocated per step", "largest GEMMs"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestBenchCmdRegistered checks that the root command carries bench and refuses an unknown benchmark by name.
func TestBenchCmdRegistered(t *testing.T) {
	root := newRootCmd()
	c, _, err := root.Find([]string{"bench", "train-step"})
	if err != nil || c.Name() != "train-step" {
		t.Fatalf("trainer bench train-step not found: %v", err)
	}
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"bench", "matmul"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), `unknown benchmark "matmul"`) {
		t.Fatalf("trainer bench matmul: error %v", err)
	}
}

func TestBenchCmdErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"matmul"}, `"matmul"`},
		{[]string{"train-step", "--config", "tiny", "--reps", "0"}, "--reps 0"},
		{[]string{"decode", "--config", "tiny", "--warmup", "-1"}, "--warmup -1"},
		{[]string{"train-step", "--config", "no-such-recipe"}, "no-such-recipe"},
		{[]string{"gemm", "extra"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := runBench(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestBenchCmdProfiles: for train-step and decode, --cpu-profile and --mem-profile write gzip-compressed pprof
// files (the CPU profile, and the heap profiles before and after the profiled steps or repetitions), and an
// unwritable path is an error naming it.
func TestBenchCmdProfiles(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		args []string
	}{
		{"train-step", []string{"--config", "tiny", "--reps", "1", "--warmup", "0", "--batch", "2", "--seq-len", "16"}},
		{"decode", []string{"--config", "tiny", "--reps", "1", "--warmup", "0", "--batch", "2", "--tokens", "8"}},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			dir := t.TempDir()
			cpu, mem := filepath.Join(dir, "step.cpu"), filepath.Join(dir, "step.mem")
			args := append([]string{tc.cmd}, tc.args...)
			if _, errOut, err := runBench(t, append(args, "--cpu-profile", cpu, "--mem-profile", mem, "--profile-steps", "2", "--json")...); err != nil {
				t.Fatalf("%v (stderr %s)", err, errOut)
			}
			for _, p := range []string{cpu, mem, mem + ".base"} {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
					t.Errorf("%s is not a gzip-compressed profile (%d bytes)", p, len(b))
				}
			}
			bad := filepath.Join(dir, "no-such-dir", "x.cpu")
			_, _, err := runBench(t, append(args, "--cpu-profile", bad)...)
			if err == nil || !strings.Contains(err.Error(), bad) {
				t.Fatalf("unwritable --cpu-profile: error %v, want one naming %s", err, bad)
			}
		})
	}
}
