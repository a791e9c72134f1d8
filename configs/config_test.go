// Tests of the schema defaults, the stage overlay, --set overrides, the resolved-YAML round trip and the
// embedded recipes. Error messages are tested in errors_test.go.
package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func mustParse(t *testing.T, yml string, sets ...string) *Config {
	t.Helper()
	c, err := Parse([]byte(yml), "configs/x.yaml", sets)
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, "")
	cases := []struct {
		key       string
		got, want any
	}{
		{"name", c.Name, "x"},
		{"seed", c.Seed, int64(1234)},
		{"model", c.Model, DefaultModel()},
		{"data.source", c.Data.Source, "synthetic"},
		{"data.generator", c.Data.Generator, "arithmetic"},
		{"data.path", c.Data.Path, ""},
		{"data.text_column", c.Data.TextColumn, "text"},
		{"data.held_out", c.Data.HeldOut, 0.05},
		{"data.max_digits", c.Data.MaxDigits, 3},
		{"data.ops", c.Data.Ops, []string{"+", "-", "*"}},
		{"optimizer.name", c.Optimizer.Name, "adamw"},
		{"optimizer.lr", c.Optimizer.LR, 3e-3},
		{"optimizer.beta1", c.Optimizer.Beta1, 0.9},
		{"optimizer.beta2", c.Optimizer.Beta2, 0.95},
		{"optimizer.eps", c.Optimizer.Eps, 1e-8},
		{"optimizer.weight_decay", c.Optimizer.WeightDecay, 0.1},
		{"optimizer.grad_clip", c.Optimizer.GradClip, 1.0},
		{"schedule.kind", c.Schedule.Kind, "cosine"},
		{"schedule.warmup_steps", c.Schedule.WarmupSteps, 20},
		{"schedule.min_lr_ratio", c.Schedule.MinLRRatio, 0.1},
		{"train.steps", c.Train.Steps, 300},
		{"train.batch_size", c.Train.BatchSize, 16},
		{"train.seq_len", c.Train.SeqLen, 128},
		{"train.grad_accum", c.Train.GradAccum, 1},
		{"train.log_every", c.Train.LogEvery, 10},
		{"train.eval_every", c.Train.EvalEvery, 50},
		{"train.eval_batches", c.Train.EvalBatches, 4},
		{"checkpoint.every", c.Checkpoint.Every, 100},
		{"checkpoint.keep_last", c.Checkpoint.KeepLast, 3},
		{"checkpoint.keep_every", c.Checkpoint.KeepEvery, 0},
		{"checkpoint.upload", c.Checkpoint.Upload, ""},
		{"run.dir", c.Run.Dir, ""},
		{"run.progress", c.Run.Progress, "auto"},
		{"run.tensorboard", c.Run.TensorBoard, true},
		{"run.plots", c.Run.Plots, true},
		{"run.threads", c.Run.Threads, 0},
		{"run.graph_shards", c.Run.GraphShards, 0},
		{"len(stages)", len(c.Stages), 1},
		{"stages[0].name", c.Stages[0].Name, "pretrain"},
		{"stages[0].kind", c.Stages[0].Kind, "pretrain"},
		{"stages[0].init_from", c.Stages[0].InitFrom, ""},
		{"stages[0].data", c.Stages[0].Data, c.Data},
		{"stages[0].optimizer", c.Stages[0].Optimizer, c.Optimizer},
		{"stages[0].schedule", c.Stages[0].Schedule, c.Schedule},
		{"stages[0].train", c.Stages[0].Train, c.Train},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.key, tc.got, tc.want)
		}
	}
	if err := Default().Validate(); err == nil || !strings.Contains(err.Error(), "name: must be set") {
		t.Errorf("Default().Validate() = %v, want only the missing name", err)
	} else if strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("Default().Validate() has more than the missing name:\n%v", err)
	}
}

func TestNameDefault(t *testing.T) {
	cases := []struct{ yml, file, want string }{
		{"", "configs/math.yaml", "math"},
		{"", "/tmp/a/my-run.yml", "my-run"},
		{"name: explicit\n", "configs/math.yaml", "explicit"},
	}
	for _, tc := range cases {
		c, err := Parse([]byte(tc.yml), tc.file, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if c.Name != tc.want {
			t.Errorf("Parse(%q, %s).Name = %q, want %q", tc.yml, tc.file, c.Name, tc.want)
		}
	}
}

// TestOverlay checks the order defaults ← file ← top-level --set ← stage YAML ← stage --set.
func TestOverlay(t *testing.T) {
	yml := `
optimizer:
  lr: 1e-3
train:
  steps: 100
  batch_size: 8
stages:
  - name: a
    kind: pretrain
  - name: b
    kind: sft
    train:
      steps: 50
  - name: c
    kind: sft
    init_from: runs/x/checkpoints/a-100
    optimizer:
      lr: 1e-4
    data:
      ops: ["+"]
`
	c := mustParse(t, yml, "train.steps=200", "train.batch_size=2", "stages.b.train.seq_len=64", "stages.c.schedule.kind=constant")
	a, b, s := c.Stages[0], c.Stages[1], c.Stages[2]
	cases := []struct {
		key       string
		got, want any
	}{
		{"train.steps (top-level --set)", c.Train.Steps, 200},
		{"train.seq_len (a stage --set stays in the stage)", c.Train.SeqLen, 128},
		{"stages[a].train.steps (top-level --set reaches a stage that does not set it)", a.Train.Steps, 200},
		{"stages[b].train.steps (the stage's own value beats a top-level --set)", b.Train.Steps, 50},
		{"stages[b].train.batch_size (inherited from a top-level --set)", b.Train.BatchSize, 2},
		{"stages[b].train.seq_len (stage --set)", b.Train.SeqLen, 64},
		{"stages[a].train.seq_len", a.Train.SeqLen, 128},
		{"stages[a].optimizer.lr (inherited from the file's top level)", a.Optimizer.LR, 1e-3},
		{"stages[c].optimizer.lr", s.Optimizer.LR, 1e-4},
		{"stages[c].optimizer.beta2 (untouched key of an overlaid section)", s.Optimizer.Beta2, 0.95},
		{"stages[c].data.ops", s.Data.Ops, []string{"+"}},
		{"stages[a].data.ops", a.Data.Ops, []string{"+", "-", "*"}},
		{"stages[c].schedule.kind", s.Schedule.Kind, "constant"},
		{"stages[b].schedule.kind", b.Schedule.Kind, "cosine"},
		{"stages[c].init_from", s.InitFrom, "runs/x/checkpoints/a-100"},
		{"stages[b].kind", b.Kind, "sft"},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.key, tc.got, tc.want)
		}
	}
	// Stages hold their own copies: changing one changes neither the top level nor another stage.
	c.Stages[0].Data.Ops[0] = "*"
	if c.Data.Ops[0] != "+" || c.Stages[1].Data.Ops[0] != "+" {
		t.Errorf("stages share data.ops with the top level or each other: top %v, b %v", c.Data.Ops, c.Stages[1].Data.Ops)
	}
}

// TestSetValues checks that --set values are typed by the field they land on.
func TestSetValues(t *testing.T) {
	cases := []struct {
		set  string
		get  func(*Config) any
		want any
	}{
		{"data.ops=[+,-]", func(c *Config) any { return c.Data.Ops }, []string{"+", "-"}},
		{"data.ops=[ '*' ]", func(c *Config) any { return c.Data.Ops }, []string{"*"}},
		{"optimizer.lr=1e-4", func(c *Config) any { return c.Optimizer.LR }, 1e-4},
		{"optimizer.lr=2", func(c *Config) any { return c.Optimizer.LR }, 2.0},
		{"optimizer.grad_clip=0", func(c *Config) any { return c.Optimizer.GradClip }, 0.0},
		{"run.tensorboard=false", func(c *Config) any { return c.Run.TensorBoard }, false},
		{"model.hidden_size=64", func(c *Config) any { return c.Model.HiddenSize }, 64},
		{"model.norm_topk_prob=false", func(c *Config) any { return c.Model.NormTopkProb }, false},
		{"train.steps=1e3", func(c *Config) any { return c.Train.Steps }, 1000},
		{"seed=-7", func(c *Config) any { return c.Seed }, int64(-7)},
		{"name=other", func(c *Config) any { return c.Name }, "other"},
		{"run.dir=/tmp/a run #1", func(c *Config) any { return c.Run.Dir }, "/tmp/a run #1"},
		{`run.dir="quoted"`, func(c *Config) any { return c.Run.Dir }, "quoted"},
		{"run.dir=", func(c *Config) any { return c.Run.Dir }, ""},
		{"checkpoint.upload=s3://my-bucket/runs", func(c *Config) any { return c.Checkpoint.Upload }, "s3://my-bucket/runs"},
		{"optimizer={lr: 0.5, beta1: 0.8}", func(c *Config) any { return [3]float64{c.Optimizer.LR, c.Optimizer.Beta1, c.Optimizer.Beta2} }, [3]float64{0.5, 0.8, 0.95}},
		{"optimizer.lr=0.5", func(c *Config) any { return c.Stages[0].Optimizer.LR }, 0.5},
		{"stages.pretrain.kind=sft", func(c *Config) any { return c.Stages[0].Kind }, "sft"},
		{"stages.pretrain.train.steps=30", func(c *Config) any { return [2]int{c.Stages[0].Train.Steps, c.Train.Steps} }, [2]int{30, 300}},
		{"stages.pretrain={train: {batch_size: 3}}", func(c *Config) any { return c.Stages[0].Train.BatchSize }, 3},
	}
	for _, tc := range cases {
		c, err := Parse(nil, "configs/x.yaml", []string{tc.set})
		if err != nil {
			t.Errorf("--set %s: %v", tc.set, err)
			continue
		}
		if got := tc.get(c); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("--set %s: got %#v, want %#v", tc.set, got, tc.want)
		}
	}
}

// TestAnchors checks that anchors and aliases resolve (a common way to share a section between stages).
func TestAnchors(t *testing.T) {
	c := mustParse(t, `
optimizer: &opt
  lr: 1e-3
stages:
  - name: a
    kind: pretrain
    optimizer: *opt
  - name: b
    kind: sft
    optimizer: *opt
`)
	if c.Stages[1].Optimizer.LR != 1e-3 || c.Stages[1].Optimizer.Beta1 != 0.9 {
		t.Errorf("stages[b].optimizer = %+v, want lr 1e-3 over the defaults", c.Stages[1].Optimizer)
	}
}

func TestRoundTrip(t *testing.T) {
	tricky := mustParse(t, `
name: round_trip
seed: 99
model: {hidden_size: 64, rope_theta: 5e5, aux_loss_alpha: 1e-4}
data: {source: jsonl, path: "data/a: b #c.jsonl", text_column: "yes"}
optimizer: {lr: 0.0003, eps: 1.0e-12}
checkpoint: {every: 10, keep_every: 30, upload: "s3://bucket/x/"}
run: {dir: "null", progress: "off", tensorboard: false, threads: 3}
stages:
  - name: pretrain
    kind: pretrain
    train: {steps: 40}
  - name: sft_1
    kind: sft
    init_from: "123"
    data: {ops: ["-"], held_out: 0.5}
    schedule: {kind: linear, warmup_steps: 0, min_lr_ratio: 0}
`)
	configs := map[string]*Config{"tricky": tricky}
	for _, name := range Recipes() {
		c, err := Load(name, nil)
		if err != nil {
			t.Fatalf("Load(%s): %v", name, err)
		}
		configs[name] = c
	}
	dir := t.TempDir()
	for name, c := range configs {
		path := filepath.Join(dir, name+".yaml")
		if err := c.WriteResolved(path); err != nil {
			t.Fatalf("%s: WriteResolved: %v", name, err)
		}
		back, err := Load(path, nil)
		if err != nil {
			t.Fatalf("%s: Load(resolved): %v", name, err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("%s: resolved config read back differs:\nwrote %+v\nread  %+v", name, c, back)
		}
		if back.Hash() != c.Hash() {
			t.Errorf("%s: hash changed over the round trip", name)
		}
		again := filepath.Join(dir, name+".again.yaml")
		if err := back.WriteResolved(again); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(path)
		b, _ := os.ReadFile(again)
		if string(a) != string(b) {
			t.Errorf("%s: writing the re-read config gives different bytes", name)
		}
	}
	// The resolved file holds every key of every section, in every stage.
	data, err := tricky.YAML()
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, key := range append(fieldKeys(reflect.TypeOf(Train{})), fieldKeys(reflect.TypeOf(Data{}))...) {
		if n := strings.Count(text, "\n    "+key+":") + strings.Count(text, "\n      "+key+":"); n < 2 {
			t.Errorf("resolved YAML has key %s in %d stages, want 2", key, n)
		}
	}
	if tricky.Hash() == configs["math"].Hash() || len(tricky.Hash()) != 64 {
		t.Errorf("Hash: want distinct 64-hex-digit hashes, got %s and %s", tricky.Hash(), configs["math"].Hash())
	}
}

func TestRecipes(t *testing.T) {
	if got, want := Recipes(), []string{"agent", "code", "dsa", "logic", "math", "pretrain", "specialists", "tiny"}; !slices.Equal(got, want) {
		t.Fatalf("Recipes() = %v, want %v", got, want)
	}
	for _, name := range Recipes() {
		for _, form := range []string{name, name + ".yaml", "configs/" + name + ".yaml"} {
			c, err := Load(form, nil)
			if err != nil {
				t.Errorf("Load(%q): %v", form, err)
				continue
			}
			if c.Name != name {
				t.Errorf("Load(%q).Name = %q, want %q", form, c.Name, name)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Load(%q).Validate(): %v", form, err)
			}
			want := []string{"pretrain"}
			switch name {
			case "dsa":
				want = []string{"pretrain", "pretrain_long", "dsa_warmup", "dsa_sparse"}
			case "math": // DeepSeek-V3.2's shape: RL on the sparse-attention policy
				want = []string{"pretrain", "dsa_warmup", "dsa_sparse", "rl_math"}
			case "logic", "code":
				want = []string{"pretrain", "rl_" + name}
			case "specialists":
				want = []string{"pretrain", "rl_math", "rl_logic", "rl_code", "distill"}
			case "agent":
				want = []string{"copy", "pretrain", "rl_agent"} // the copy curriculum, then the tool episodes
			}
			if names := c.StageNames(); !slices.Equal(names, want) || c.Stages[0].Kind != KindPretrain {
				t.Errorf("Load(%q): stages %v, want %v", form, names, want)
			}
		}
	}
	// The main recipes carry the numbers the issue asks for.
	for _, name := range []string{"pretrain"} {
		c, _ := Load(name, nil)
		s := c.Stages[0]
		got := []any{s.Train.Steps, s.Train.BatchSize, s.Train.SeqLen, s.Optimizer.LR, s.Schedule.WarmupSteps, s.Train.EvalEvery, c.Checkpoint.Every, c.Model, s.Data.Source, s.Data.Generator}
		want := []any{300, 16, 128, 3e-3, 20, 50, 100, DefaultModel(), "synthetic", "arithmetic"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	tiny, err := Load("tiny", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := tiny.Model
	got := []int{m.HiddenSize, m.NumHiddenLayers, m.FirstKDenseReplace, m.NumAttentionHeads, m.QLoraRank, m.KVLoraRank,
		m.QKNopeHeadDim, m.QKRopeHeadDim, m.VHeadDim, m.IntermediateSize, m.MoEIntermediateSize, m.NRoutedExperts,
		m.NGroup, m.TopkGroup, m.NumExpertsPerTok, m.NSharedExperts, m.IndexNHeads, m.IndexHeadDim, m.IndexTopk,
		tiny.Train.Steps, tiny.Train.BatchSize, tiny.Train.SeqLen, tiny.Train.EvalEvery, tiny.Checkpoint.Every}
	want := []int{32, 2, 1, 2, 16, 16, 8, 8, 8, 64, 16, 4, 2, 1, 2, 1, 2, 16, 16, 20, 4, 32, 10, 10}
	if !slices.Equal(got, want) {
		t.Errorf("tiny: got %v, want %v", got, want)
	}
	if tiny.Stages[0].Train != tiny.Train {
		t.Errorf("tiny: the stage does not inherit the top-level train section: %+v vs %+v", tiny.Stages[0].Train, tiny.Train)
	}

	// A file on disk wins over an embedded recipe of the same name.
	dir := t.TempDir()
	path := filepath.Join(dir, "math.yaml")
	if err := os.WriteFile(path, []byte("name: from_disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(path, nil); err != nil || c.Name != "from_disk" {
		t.Errorf("Load(%s) = %v, %v; want the file on disk", path, c, err)
	}
	src, err := RecipeSource("configs/tiny.yaml")
	if err != nil || !strings.Contains(string(src), "name: tiny") {
		t.Errorf("RecipeSource(tiny) = %q, %v", src, err)
	}
}

func TestCheckKinds(t *testing.T) {
	c := mustParse(t, `
stages:
  - {name: pretrain, kind: pretrain}
  - {name: rl_math, kind: rl}
`)
	cases := []struct {
		implemented map[string]bool
		want        []string // substrings; none = no error
	}{
		{map[string]bool{KindPretrain: true, KindRL: true}, nil},
		{map[string]bool{KindPretrain: true}, []string{`stages[rl_math].kind: "rl" is not implemented by this trainer (implemented: pretrain)`}},
		{map[string]bool{KindRL: true, KindSFT: true, KindPretrain: false}, []string{`stages[pretrain].kind: "pretrain"`, "implemented: rl, sft"}},
	}
	for _, tc := range cases {
		err := c.CheckKinds(tc.implemented)
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("CheckKinds(%v) = %v, want nil", tc.implemented, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("CheckKinds(%v) = nil, want %q", tc.implemented, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("CheckKinds(%v) = %q, want it to contain %q", tc.implemented, err, w)
			}
		}
	}
}

func TestClone(t *testing.T) {
	c := mustParse(t, "")
	d := c.Clone()
	if !reflect.DeepEqual(c, d) {
		t.Fatal("Clone differs from the original")
	}
	d.Stages[0].Data.Ops[0] = "*"
	d.Data.Ops[1] = "*"
	if c.Stages[0].Data.Ops[0] != "+" || c.Data.Ops[1] != "-" {
		t.Errorf("Clone shares slices with the original: %v %v", c.Data.Ops, c.Stages[0].Data.Ops)
	}
}

// TestReferenceListsEveryKey keeps REFERENCE.md in step with the schema.
func TestReferenceListsEveryKey(t *testing.T) {
	ref, err := os.ReadFile("REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeOf(Config{}), reflect.TypeOf(Model{}), reflect.TypeOf(Data{}),
		reflect.TypeOf(Optimizer{}), reflect.TypeOf(Schedule{}), reflect.TypeOf(Train{}), reflect.TypeOf(Checkpoint{}),
		reflect.TypeOf(Run{}), reflect.TypeOf(Stage{}), reflect.TypeOf(RL{})} {
		for _, key := range fieldKeys(typ) {
			if !strings.Contains(string(ref), "`"+key+"`") {
				t.Errorf("REFERENCE.md does not list %s.%s", typ.Name(), key)
			}
		}
	}
}
