// Tests of rl.log_samples: the lines rollouts.jsonl gets from a tiny rl run (train groups per step with
// their completions, advantages and tokens; eval completions per evaluation), that logging changes no weight,
// and that token pieces concatenate to the completion text through JSON.

package trainer

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/data"
)

func TestTokenPieces(t *testing.T) {
	tok, err := data.NewTokenizer(300)
	if err != nil {
		t.Fatal(err)
	}
	bytesOf := func(s string) []int32 { return tok.Encode(s) }
	cases := []struct {
		name   string
		ids    []int32
		pieces []string
	}{
		{"ascii", bytesOf("1+2"), []string{"1", "+", "2"}},
		{"stopped", append(bytesOf("ab"), data.EOS), []string{"a", "b", ""}},
		{"split character", bytesOf("é!"), []string{"", "é", "!"}},
		{"special", append(append(bytesOf("r"), data.ThinkEnd), bytesOf("3")...), []string{"r", "</think>", "3"}},
		{"invalid byte", []int32{0xff, 'x'}, []string{"\xff", "x"}},
		{"unfinished character at the end", []int32{'x', 0xc3}, []string{"x", "\xc3"}},
		{"special inside a character", []int32{0xc3, data.ThinkEnd, 0xa9}, []string{"\xc3", "</think>", "\xa9"}},
		{"reserved id", []int32{data.NumTokenIDs + 1}, []string{"<｜reserved_1｜>"}},
		{"empty", nil, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text, pieces := tokenPieces(tok, tc.ids)
			if len(pieces) != len(tc.pieces) {
				t.Fatalf("pieces %q, want %q", pieces, tc.pieces)
			}
			for i := range pieces {
				if pieces[i] != tc.pieces[i] {
					t.Fatalf("pieces %q, want %q", pieces, tc.pieces)
				}
			}
			if strings.Join(pieces, "") != text {
				t.Errorf("pieces %q do not concatenate to %q", pieces, text)
			}
			if got, want := jsonRoundTrip(t, strings.Join(jsonRoundTripAll(t, pieces), "")), jsonRoundTrip(t, text); got != want {
				t.Errorf("through JSON the pieces give %q, the text %q", got, want)
			}
		})
	}
}

func jsonRoundTrip(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func jsonRoundTripAll(t *testing.T, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = jsonRoundTrip(t, s)
	}
	return out
}

// readRollouts reads rollouts.jsonl's lines as train groups or eval samples.
func readRollouts(t *testing.T, path string) (train []RolloutGroup, eval []RolloutEval) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for n := 1; sc.Scan(); n++ {
		var kind struct{ Kind string }
		if err := json.Unmarshal(sc.Bytes(), &kind); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		switch kind.Kind {
		case RolloutKindTrain:
			var g RolloutGroup
			if err := json.Unmarshal(sc.Bytes(), &g); err != nil {
				t.Fatalf("line %d: %v", n, err)
			}
			train = append(train, g)
		case RolloutKindEval:
			var e RolloutEval
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("line %d: %v", n, err)
			}
			eval = append(eval, e)
		default:
			t.Fatalf("line %d: kind %q", n, kind.Kind)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return train, eval
}

// TestRolloutLog: two seeded 2-step runs, without and with rl.log_samples 2, end with bit-identical weights;
// the second writes 2 train lines per step (the first groups by id, with every field, advantages summing to 0
// per group, token pieces concatenating to the text) and 2 eval lines per evaluation (start and end).
func TestRolloutLog(t *testing.T) {
	runs := []struct {
		name       string
		logSamples string
	}{{"off", "0"}, {"on", "2"}}
	var weights [][]float32
	dirs := make([]string, len(runs))
	for i, r := range runs {
		dirs[i] = t.TempDir()
		cfg := rlTinyConfig(t, "train.steps=2", "rl.beta=0", "rl.prompts_per_step=3", "rl.eval_tasks=3", "rl.log_samples="+r.logSamples)
		if err := Execute(context.Background(), cfg, Options{Dir: dirs[i], Log: quietLog()}); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		p := loadWeights(t, filepath.Join(dirs[i], "checkpoints", "rl_math-2"))
		var flat []float32
		for _, d := range p.Data {
			flat = append(flat, d...)
		}
		weights = append(weights, flat)
	}
	for j := range weights[0] {
		if math.Float32bits(weights[0][j]) != math.Float32bits(weights[1][j]) {
			t.Fatalf("weight %d differs with rl.log_samples: %v vs %v", j, weights[0][j], weights[1][j])
		}
	}
	if _, err := os.Stat(filepath.Join(dirs[0], RolloutsFile)); !os.IsNotExist(err) {
		t.Errorf("rl.log_samples 0 left a %s (%v)", RolloutsFile, err)
	}

	train, eval := readRollouts(t, filepath.Join(dirs[1], RolloutsFile))
	if len(train) != 4 {
		t.Fatalf("%d train lines, want 2 per step × 2 steps", len(train))
	}
	for i, g := range train {
		step := i/2 + 1
		wantID := []string{"rl_math-000000-000", "rl_math-000000-001", "rl_math-000001-000", "rl_math-000001-001"}[i] // ids count steps from 0
		if g.Stage != "rl_math" || g.Step != step || g.GroupID != wantID || g.Env != "math" || g.PolicyVersion != int64(step-1) {
			t.Errorf("line %d: stage %q step %d group %q env %q version %d, want rl_math %d %s math %d", i, g.Stage, g.Step, g.GroupID, g.Env, g.PolicyVersion, step, wantID, step-1)
		}
		if g.Prompt == "" || g.Answer == "" || strings.ContainsRune(g.Prompt, '｜') {
			t.Errorf("line %d: prompt %q, answer %q: want the task's text and answer", i, g.Prompt, g.Answer)
		}
		if len(g.Completions) != 4 {
			t.Fatalf("line %d: %d completions, want rl.group_size 4", i, len(g.Completions))
		}
		var advSum float64
		for k, c := range g.Completions {
			if c.Advantage == nil {
				t.Fatalf("line %d completion %d: no advantage", i, k)
			}
			advSum += *c.Advantage
			if c.Length != len(c.Tokens) || c.Length == 0 || c.Length > 20 {
				t.Errorf("line %d completion %d: length %d, %d tokens (max_new_tokens 20)", i, k, c.Length, len(c.Tokens))
			}
			if c.FinishReason != "stop" && c.FinishReason != "length" {
				t.Errorf("line %d completion %d: finish_reason %q", i, k, c.FinishReason)
			}
			if _, ok := c.RewardParts["correct"]; !ok {
				t.Errorf("line %d completion %d: reward_parts %v lack correct", i, k, c.RewardParts)
			}
			var b strings.Builder
			for _, tk := range c.Tokens {
				b.WriteString(tk.T)
				if tk.LP > 0 || math.IsNaN(float64(tk.LP)) {
					t.Errorf("line %d completion %d: logp_old %v", i, k, tk.LP)
				}
			}
			if b.String() != c.Text {
				t.Errorf("line %d completion %d: pieces give %q, text is %q", i, k, b.String(), c.Text)
			}
		}
		if math.Abs(advSum) > 1e-6 {
			t.Errorf("line %d: advantages sum to %g, want 0", i, advSum)
		}
	}
	if len(eval) != 4 {
		t.Fatalf("%d eval lines, want 2 per evaluation × 2 (start, end)", len(eval))
	}
	for i, e := range eval {
		if step := []int{0, 0, 2, 2}[i]; e.Stage != "rl_math" || e.Step != step || e.Env != "math" || e.ID == "" || e.Prompt == "" || e.Answer == "" || e.FinishReason == "" {
			t.Errorf("eval line %d: %+v, want stage rl_math, step %d, env math and the task", i, e, step)
		}
	}
	if eval[0].ID != eval[2].ID || eval[1].ID != eval[3].ID {
		t.Errorf("evaluations logged different tasks: %s %s, then %s %s", eval[0].ID, eval[1].ID, eval[2].ID, eval[3].ID)
	}
}
