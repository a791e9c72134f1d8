// Tests of the error messages: every bad input must be refused with a message that names the file (or the
// --set expression), the line and the key, for decoding errors and validation errors alike.
package configs

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

type errCase struct {
	name string
	yml  string
	sets []string
	want []string // each must appear in the error
}

func runErrCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yml), "configs/x.yaml", tc.sets)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with its error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Errorf("error is not a *KeyError: %T", err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	runErrCases(t, []errCase{
		{"unknown top-level key", "seed: 1\nfoo: 1\n", nil,
			[]string{"configs/x.yaml:2: foo: unknown key (known keys: name, seed, model"}},
		{"unknown nested key", "optimizer:\n  lr: 1\n  lrr: 1\n", nil,
			[]string{"configs/x.yaml:3: optimizer.lrr: unknown key (did you mean lr?)"}},
		{"unknown model key", "model:\n  hiden_size: 3\n", nil,
			[]string{"configs/x.yaml:2: model.hiden_size: unknown key (did you mean hidden_size?)"}},
		{"unknown key in a stage", "stages:\n  - name: rl_math\n    kind: rl\n    optimizer:\n      lrr: 2\n", nil,
			[]string{"configs/x.yaml:5: stages[rl_math].optimizer.lrr: unknown key (did you mean lr?)"}},
		{"unknown key in an unnamed stage", "stages:\n  - kind: rl\n    trian: {}\n", nil,
			[]string{"configs/x.yaml:3: stages[0].trian: unknown key (did you mean train?)"}},
		{"all unknown keys reported", "foo: 1\ntrain:\n  bar: 2\n", nil,
			[]string{"configs/x.yaml:1: foo: unknown key", "configs/x.yaml:3: train.bar: unknown key"}},
		{"string for an integer", "train:\n  steps: abc\n", nil,
			[]string{`configs/x.yaml:2: train.steps: want an integer, got "abc"`}},
		{"fraction for an integer", "train:\n  batch_size: 1.5\n", nil,
			[]string{`configs/x.yaml:2: train.batch_size: want an integer, got "1.5"`}},
		{"list for a number", "optimizer:\n  lr: [1]\n", nil,
			[]string{"configs/x.yaml:2: optimizer.lr: want a number, got a list"}},
		{"quoted number", "optimizer:\n  lr: \"3e-3\"\n", nil,
			[]string{`configs/x.yaml:2: optimizer.lr: want a number, got "3e-3"`}},
		{"infinite number", "optimizer:\n  lr: .inf\n", nil,
			[]string{`configs/x.yaml:2: optimizer.lr: want a finite number, got ".inf"`}},
		{"string for a bool", "run:\n  tensorboard: yes\n", nil,
			[]string{`configs/x.yaml:2: run.tensorboard: want true or false, got "yes"`}},
		{"scalar for a list", "data:\n  ops: +\n", nil,
			[]string{`configs/x.yaml:2: data.ops: want a list, got "+"`}},
		{"mapping for a string", "name: {a: 1}\n", nil,
			[]string{"configs/x.yaml:1: name: want a string, got a mapping"}},
		{"scalar for a section", "\ntrain: 5\n", nil,
			[]string{`configs/x.yaml:2: train: want a mapping, got "5"`}},
		{"list element of the wrong type", "data:\n  ops: [+, {a: 1}]\n", nil,
			[]string{"configs/x.yaml:2: data.ops[1]: want a string, got a mapping"}},
		{"integer overflow", "seed: 99999999999999999999\n", nil,
			[]string{"configs/x.yaml:1: seed: want an integer"}},
		{"stages not a list", "stages: 3\n", nil,
			[]string{`configs/x.yaml:1: stages: want a list of stages, got "3"`}},
		{"stage not a mapping", "stages:\n  - pretrain\n", nil,
			[]string{`configs/x.yaml:2: stages[0]: want a mapping`}},
		{"document not a mapping", "- a\n", nil,
			[]string{"configs/x.yaml:1: want a mapping, got a list"}},
		{"YAML syntax", "train:\n  steps: [1,\n", nil,
			[]string{"configs/x.yaml:2: invalid YAML"}},
		{"duplicate key", "optimizer:\n  lr: 1\n  lr: 2\n", nil,
			[]string{"configs/x.yaml:3: invalid YAML", `"lr" already defined`}},
		{"two documents", "seed: 1\n---\nseed: 2\n", nil,
			[]string{"configs/x.yaml:2: want one YAML document, found 2"}},
		{"unknown alias", "optimizer: *nope\n", nil,
			[]string{"configs/x.yaml:1: optimizer: unknown alias *nope"}},
		{"merge key in a section", "optimizer:\n  <<: {lr: 1}\n", nil,
			[]string{"configs/x.yaml:2: optimizer: merge keys (<<) are not supported"}},

		{"--set unknown key", "", []string{"optimizer.lrr=1"},
			[]string{"--set optimizer.lrr=1: unknown key optimizer.lrr (did you mean lr?)"}},
		{"--set unknown section", "", []string{"optimiser.lr=1"},
			[]string{"--set optimiser.lr=1: unknown key optimiser (did you mean optimizer?)"}},
		{"--set unknown key in a stage", "", []string{"stages.pretrain.train.stepz=1"},
			[]string{"--set stages.pretrain.train.stepz=1: unknown key stages[pretrain].train.stepz (did you mean steps?)"}},
		{"--set bad integer", "", []string{"train.steps=abc"},
			[]string{`--set train.steps=abc: train.steps: want an integer, got "abc"`}},
		{"--set bad float", "", []string{"optimizer.lr=fast"},
			[]string{`--set optimizer.lr=fast: optimizer.lr: want a number, got "fast"`}},
		{"--set bad bool", "", []string{"run.plots=1"},
			[]string{`--set run.plots=1: run.plots: want true or false, got "1"`}},
		{"--set bad list", "", []string{"data.ops=[+,"},
			[]string{`--set data.ops=[+,: data.ops: cannot parse value "[+,"`}},
		{"--set without =", "", []string{"train.steps"},
			[]string{"--set train.steps: want key=value"}},
		{"--set empty segment", "", []string{"train..steps=1"},
			[]string{"--set train..steps=1: train..steps: empty key segment"}},
		{"--set into a value", "", []string{"train.steps.max=1"},
			[]string{"--set train.steps.max=1: train.steps: is a value, not a section"}},
		{"--set unknown stage", "", []string{"stages.rl_math.train.steps=1"},
			[]string{`--set stages.rl_math.train.steps=1: stages.rl_math: no stage named "rl_math" (stages: pretrain)`}},
		{"--set the stage list", "", []string{"stages=[]"},
			[]string{"--set stages=[]: stages: set keys of one stage"}},
		{"--set flow mapping with an unknown key", "", []string{"optimizer={lrr: 1}"},
			[]string{"--set optimizer={lrr: 1}: unknown key optimizer.lrr"}},
	})
}

func TestValidationErrors(t *testing.T) {
	runErrCases(t, []errCase{
		// Ranges.
		{"lr <= 0", "optimizer:\n  lr: 0\n", nil, []string{"configs/x.yaml:2: optimizer.lr: must be > 0, got 0"}},
		{"lr < 0 in a stage", "stages:\n  - name: rl_math\n    kind: rl\n    optimizer:\n      lr: -1\n", nil,
			[]string{"configs/x.yaml:5: stages[rl_math].optimizer.lr: must be > 0, got -1"}},
		{"beta1 = 1", "optimizer: {beta1: 1}\n", nil, []string{"configs/x.yaml:1: optimizer.beta1: must be in [0, 1), got 1"}},
		{"beta2 < 0", "optimizer:\n  beta2: -0.1\n", nil, []string{"configs/x.yaml:2: optimizer.beta2: must be in [0, 1)"}},
		{"eps = 0", "optimizer:\n  eps: 0\n", nil, []string{"configs/x.yaml:2: optimizer.eps: must be > 0"}},
		{"weight_decay < 0", "optimizer:\n  weight_decay: -1\n", nil, []string{"configs/x.yaml:2: optimizer.weight_decay: must be >= 0"}},
		{"grad_clip < 0", "optimizer:\n  grad_clip: -1\n", nil, []string{"configs/x.yaml:2: optimizer.grad_clip: must be >= 0"}},
		{"optimizer name", "optimizer:\n  name: sgd\n", nil, []string{`configs/x.yaml:2: optimizer.name: must be one of adamw, got "sgd"`}},
		{"schedule kind", "schedule:\n  kind: step\n", nil, []string{`configs/x.yaml:2: schedule.kind: must be one of cosine, constant, linear, got "step"`}},
		{"warmup < 0", "schedule:\n  warmup_steps: -1\n", nil, []string{"configs/x.yaml:2: schedule.warmup_steps: must be >= 0"}},
		{"min_lr_ratio > 1", "schedule:\n  min_lr_ratio: 1.5\n", nil, []string{"configs/x.yaml:2: schedule.min_lr_ratio: must be in [0, 1]"}},
		{"steps = 0", "train:\n  steps: 0\n", nil, []string{"configs/x.yaml:2: train.steps: must be > 0, got 0"}},
		{"batch_size = 0", "train:\n  batch_size: 0\n", nil, []string{"configs/x.yaml:2: train.batch_size: must be > 0"}},
		{"seq_len = 1", "train:\n  seq_len: 1\n", nil, []string{"configs/x.yaml:2: train.seq_len: must be >= 2"}},
		{"grad_accum = 0", "train:\n  grad_accum: 0\n", nil, []string{"configs/x.yaml:2: train.grad_accum: must be > 0"}},
		{"log_every = 0", "train:\n  log_every: 0\n", nil, []string{"configs/x.yaml:2: train.log_every: must be > 0"}},
		{"eval_every < 0", "train:\n  eval_every: -1\n", nil, []string{"configs/x.yaml:2: train.eval_every: must be >= 0"}},
		{"eval_batches = 0", "train:\n  eval_batches: 0\n", nil, []string{"configs/x.yaml:2: train.eval_batches: must be > 0"}},
		{"data source", "data:\n  source: csv\n", nil, []string{`configs/x.yaml:2: data.source: must be one of synthetic, jsonl, parquet, got "csv"`}},
		{"data generator", "data:\n  generator: poems\n", nil, []string{`configs/x.yaml:2: data.generator: must be one of arithmetic, math, math_flawed, logic, code, kvretrieval, needle, mix, calc, search, interpreter, toolmix, copy, got "poems"`}},
		{"held_out = 0", "data:\n  held_out: 0\n", nil, []string{"configs/x.yaml:2: data.held_out: must be in (0, 0.5], got 0"}},
		{"held_out > 0.5", "data:\n  held_out: 0.6\n", nil, []string{"configs/x.yaml:2: data.held_out: must be in (0, 0.5]"}},
		{"max_digits > 12", "data:\n  max_digits: 13\n", nil, []string{"configs/x.yaml:2: data.max_digits: must be in 1..12, got 13"}},
		{"no ops", "data:\n  ops: []\n", nil, []string{"configs/x.yaml:2: data.ops: want at least one operator"}},
		{"bad op", "data:\n  ops: [+, /]\n", nil, []string{`configs/x.yaml:2: data.ops[1]: must be one of + - *, got "/"`}},
		{"duplicate op", "data:\n  ops:\n    - +\n    - +\n", nil, []string{`configs/x.yaml:2: data.ops[1]: duplicate operator "+"`}},
		{"checkpoint.every < 0", "checkpoint:\n  every: -5\n", nil, []string{"configs/x.yaml:2: checkpoint.every: must be >= 0"}},
		{"keep_last < 0", "checkpoint:\n  keep_last: -1\n", nil, []string{"configs/x.yaml:2: checkpoint.keep_last: must be >= 0"}},
		{"upload scheme", "checkpoint:\n  upload: http://bucket/x\n", nil, []string{`configs/x.yaml:2: checkpoint.upload: want s3://bucket/prefix, got "http://bucket/x"`}},
		{"upload bucket", "checkpoint:\n  upload: s3://My_Bucket/x\n", nil, []string{`configs/x.yaml:2: checkpoint.upload: bucket "My_Bucket"`}},
		{"upload prefix", "checkpoint:\n  upload: s3://bucket/a//b\n", nil, []string{`configs/x.yaml:2: checkpoint.upload: prefix "a//b"`}},
		{"rollout dtype", "stages:\n  - name: rl_math\n    kind: rl\n    rl:\n      rollout_dtype: fp8\n", nil, []string{`configs/x.yaml:5: stages[rl_math].rl.rollout_dtype: must be one of float32, bfloat16, got "fp8"`}},
		{"weights s3 without url", "stages:\n  - name: rl_math\n    kind: rl\n    rl:\n      bus:\n        weights: s3\n", nil, []string{`stages[rl_math].rl.bus.weights_url: required when rl.bus.weights is s3`}},
		{"weights_url without s3", "stages:\n  - name: rl_math\n    kind: rl\n    rl:\n      bus:\n        weights_url: s3://bucket/w\n", nil, []string{`configs/x.yaml:6: stages[rl_math].rl.bus.weights_url: set, but rl.bus.weights is objectstore (use s3)`}},
		{"weights_url bucket", "stages:\n  - name: rl_math\n    kind: rl\n    rl:\n      bus:\n        weights: s3\n        weights_url: s3://Bad_Bucket/w\n", nil, []string{`configs/x.yaml:7: stages[rl_math].rl.bus.weights_url: bucket "Bad_Bucket"`}},
		{"log_samples < 0", "stages:\n  - name: rl_math\n    kind: rl\n    rl:\n      log_samples: -1\n", nil, []string{"configs/x.yaml:5: stages[rl_math].rl.log_samples: must be >= 0, got -1"}},
		{"decode_batch 0", "stages:\n  - name: rl_math\n    kind: rl\n    rl:\n      decode_batch: 0\n", nil, []string{"configs/x.yaml:5: stages[rl_math].rl.decode_batch: must be > 0, got 0"}},
		{"log_samples > 4·prompts_per_step", "stages:\n  - name: rl_math\n    kind: rl\n    rl:\n      prompts_per_step: 2\n      log_samples: 9\n", nil,
			[]string{"configs/x.yaml:6: stages[rl_math].rl.log_samples: 9 exceeds 4·rl.prompts_per_step = 8"}},
		{"progress", "run:\n  progress: maybe\n", nil, []string{`configs/x.yaml:2: run.progress: must be one of auto, on, off, got "maybe"`}},
		{"threads < 0", "run:\n  threads: -2\n", nil, []string{"configs/x.yaml:2: run.threads: must be >= 0"}},
		{"graph_shards < 0", "run:\n  graph_shards: -1\n", nil, []string{"configs/x.yaml:2: run.graph_shards: must be >= 0"}},
		{"config name", "name: my run\n", nil, []string{`configs/x.yaml:1: name: must match [A-Za-z0-9._-]+`}},
		{"model rule", "model:\n  n_group: 3\n", nil, []string{"configs/x.yaml:2: model.n_group: 3 does not divide n_routed_experts 8"}},
		{"model range", "model:\n  hidden_size: 64\n  num_hidden_layers: 0\n", nil, []string{"configs/x.yaml:3: model.num_hidden_layers: must be > 0"}},
		{"vocab too small", "model:\n  vocab_size: 256\n", nil, []string{"configs/x.yaml:2: model.vocab_size: must be >= 264"}},

		// Cross-field rules, pointed at the key set in the file, else at the related key.
		{"warm-up exceeds steps", "schedule:\n  warmup_steps: 50\ntrain:\n  steps: 40\n", nil,
			[]string{"configs/x.yaml:2: schedule.warmup_steps: 50 exceeds train.steps 40"}},
		{"default warm-up exceeds steps", "train:\n  steps: 10\n", nil,
			[]string{"configs/x.yaml:2: schedule.warmup_steps: 20 exceeds train.steps 10"}},
		{"warm-up exceeds a stage's steps", "stages:\n  - name: sft\n    kind: sft\n    train:\n      steps: 5\n", nil,
			[]string{"configs/x.yaml:5: stages[sft].schedule.warmup_steps: 20 exceeds train.steps 5"}},
		{"seq_len exceeds positions", "model:\n  max_position_embeddings: 64\n", nil,
			[]string{"configs/x.yaml:2: train.seq_len: 128 exceeds model.max_position_embeddings 64"}},
		{"data packing", "data:\n  packing: tight\n", nil, []string{`configs/x.yaml:2: data.packing: must be one of , packed, whole, padded, got "tight"`}},
		{"packing of text", "data:\n  format: text\n  packing: whole\n", nil, []string{"configs/x.yaml:3: data.packing: applies to chat documents, not data.format text"}},
		{"data loss", "data:\n  format: chat\n  loss: answers\n", nil, []string{`configs/x.yaml:3: data.loss: must be one of , all, assistant, got "answers"`}},
		{"loss of text", "data:\n  format: text\n  loss: assistant\n", nil, []string{"configs/x.yaml:3: data.loss: applies to chat documents, not data.format text"}},
		{"jsonl needs a path", "data:\n  text_column: body\n  source: jsonl\n", nil,
			[]string{"configs/x.yaml:3: data.path: required when data.source is jsonl"}},
		{"parquet needs a path and a column", "data:\n  source: parquet\n  text_column: \"\"\n", nil,
			[]string{"configs/x.yaml:2: data.path: required when data.source is parquet", "configs/x.yaml:3: data.text_column: required"}},
		{"keep_every not a multiple of every", "checkpoint:\n  every: 100\n  keep_every: 150\n", nil,
			[]string{"configs/x.yaml:3: checkpoint.keep_every: 150 is not a multiple of checkpoint.every 100"}},

		// Stages.
		{"duplicate stage names", "stages:\n  - name: a\n    kind: pretrain\n  - name: a\n    kind: sft\n", nil,
			[]string{`configs/x.yaml:4: stages[a].name: duplicate stage name "a" (stage 0 and stage 1)`}},
		{"unknown kind", "stages:\n  - name: a\n    kind: grpo\n", nil,
			[]string{`configs/x.yaml:3: stages[a].kind: must be one of pretrain, sft, dsa_warmup, dsa_sparse, rl, distill, got "grpo"`}},
		{"missing kind", "stages:\n  - name: a\n", nil,
			[]string{"configs/x.yaml:2: stages[a].kind: must be set"}},
		{"missing name", "stages:\n  - kind: sft\n", nil,
			[]string{"configs/x.yaml:2: stages[0].name: must be set"}},
		{"bad stage name", "stages:\n  - name: RL-math\n    kind: rl\n", nil,
			[]string{`configs/x.yaml:2: stages[RL-math].name: must match [a-z0-9_]+, got "RL-math"`}},
		{"no stages", "stages: []\n", nil,
			[]string{"configs/x.yaml:1: stages: want at least one stage"}},
		{"init_from URL", "stages:\n  - name: a\n    kind: sft\n    init_from: s3://x/ckpt\n", nil,
			[]string{`configs/x.yaml:4: stages[a].init_from: bucket "x"`}},
		{"init_from scheme", "stages:\n  - name: a\n    kind: sft\n    init_from: gs://bucket/ckpt\n", nil,
			[]string{`configs/x.yaml:4: stages[a].init_from: want s3://bucket/prefix`}},

		// Overrides are validated too, and named by their expression.
		{"--set out of range", "", []string{"optimizer.lr=0"},
			[]string{"--set optimizer.lr=0: optimizer.lr: must be > 0, got 0"}},
		{"--set breaks a cross-field rule", "train:\n  steps: 10\n", []string{"schedule.warmup_steps=50"},
			[]string{"--set schedule.warmup_steps=50: schedule.warmup_steps: 50 exceeds train.steps 10"}},
		{"--set in a stage", "", []string{"stages.pretrain.train.steps=-1"},
			[]string{"--set stages.pretrain.train.steps=-1: stages[pretrain].train.steps: must be > 0, got -1"}},
		{"--set duplicate stage name", "stages:\n  - {name: a, kind: pretrain}\n  - {name: b, kind: sft}\n", []string{"stages.b.name=a"},
			[]string{`--set stages.b.name=a: stages[a].name: duplicate stage name "a"`}},
	})
}

// TestErrorsNotRepeated checks that a problem of a top-level section is reported once, not again for every
// stage that inherits it, while a stage's own problem is still reported.
func TestErrorsNotRepeated(t *testing.T) {
	_, err := Parse([]byte(`
optimizer:
  lr: 0
stages:
  - {name: a, kind: pretrain}
  - {name: b, kind: sft}
  - name: c
    kind: sft
    optimizer: {eps: 0}
`), "configs/x.yaml", nil)
	if err == nil {
		t.Fatal("accepted lr 0")
	}
	msg := err.Error()
	if n := strings.Count(msg, "optimizer.lr"); n != 1 {
		t.Errorf("optimizer.lr reported %d times, want once:\n%s", n, msg)
	}
	if !strings.Contains(msg, "configs/x.yaml:9: stages[c].optimizer.eps: must be > 0") {
		t.Errorf("the stage's own problem is missing:\n%s", msg)
	}
}

func TestValidateWithoutOrigins(t *testing.T) {
	c := Default()
	c.Name = "n"
	c.Stages[0].Name = "rl_math"
	c.Stages[0].Optimizer.LR = -1
	err := c.Validate()
	if err == nil || err.Error() != "stages[rl_math].optimizer.lr: must be > 0, got -1" {
		t.Errorf("Validate() = %v", err)
	}
}

func TestLoadUnknown(t *testing.T) {
	for _, name := range []string{"nope", "configs/nope.yaml", "/no/such/file.yaml"} {
		_, err := Load(name, nil)
		if err == nil || !strings.Contains(err.Error(), "recipes: agent, code, dsa, logic, math, pretrain, specialists, tiny") || !strings.Contains(err.Error(), name) {
			t.Errorf("Load(%q) = %v, want an error naming it and listing the recipes", name, err)
		}
	}
	if _, err := Load(t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Load(dir) = %v", err)
	}
	// A directory that happens to share a recipe's name does not hide the recipe.
	t.Chdir(t.TempDir())
	if err := os.Mkdir("tiny", 0o755); err != nil {
		t.Fatal(err)
	}
	if c, err := Load("tiny", nil); err != nil || c.Name != "tiny" {
		t.Errorf("Load(tiny) beside a directory named tiny = %v, %v", c, err)
	}
	if _, err := Load("tiny", []string{"train.steps=abc"}); err == nil || !strings.Contains(err.Error(), "--set train.steps=abc: train.steps: want an integer") {
		t.Errorf("Load(tiny, bad --set) = %v", err)
	}
	if _, err := Load("tiny", []string{"train.seq_len=9999"}); err == nil || !strings.Contains(err.Error(), "--set train.seq_len=9999: train.seq_len: 9999 exceeds model.max_position_embeddings") {
		t.Errorf("Load(tiny, seq_len too long) = %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"lr", "lr", 0}, {"lrr", "lr", 1}, {"kitten", "sitting", 3}, {"", "abc", 3}, {"trian", "train", 2},
	}
	for _, tc := range cases {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestOriginCandidates(t *testing.T) {
	cases := []struct {
		key     string
		related []string
		want    []string
	}{
		{"optimizer.lr", nil, []string{"optimizer.lr", "optimizer"}},
		{"data.ops[1]", nil, []string{"data.ops[1]", "data.ops", "data"}},
		{"schedule.warmup_steps", []string{"train.steps"}, []string{"schedule.warmup_steps", "train.steps", "schedule"}},
		{"stages[a].train.steps", nil, []string{"stages[a].train.steps", "train.steps", "stages[a].train", "stages[a]", "train", "stages"}},
		{"stages[a].schedule.warmup_steps", []string{"train.steps"}, []string{
			"stages[a].schedule.warmup_steps", "schedule.warmup_steps", "stages[a].train.steps", "train.steps",
			"stages[a].schedule", "stages[a]", "schedule", "stages"}},
	}
	for _, tc := range cases {
		if got := originCandidates(tc.key, tc.related); !slices.Equal(got, tc.want) {
			t.Errorf("originCandidates(%q, %v) =\n%v, want\n%v", tc.key, tc.related, got, tc.want)
		}
	}
}
