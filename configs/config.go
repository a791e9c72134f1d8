// config.go defines the schema. A recipe is a list of stages (pretrain, sft, dsa_warmup, dsa_sparse, rl,
// distill) that run one after another; the top-level data/optimizer/schedule/train sections are the base
// every stage starts from, and a stage's own section overlays them key by key (decode.go). A recipe without
// `stages:` has one stage {name: pretrain, kind: pretrain}.
//
// Adding a section (as `rl:` and `dsa:` were added) takes four steps: a struct type with yaml tags,
// a field of that type in Config AND in Stage under the same yaml key (stages inherit every struct-typed
// section they share with Config, see inheritSections), its defaults in Default, and its checks (a
// validateX function, as validateRL and validateDSA, called from Validate in validate.go for the stages that
// read the section). Decoding, --set, overlay and WriteResolved need no change.

package configs

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Stage kinds, the values of stages[].kind.
const (
	KindPretrain  = "pretrain"
	KindSFT       = "sft"
	KindDSAWarmup = "dsa_warmup"
	KindDSASparse = "dsa_sparse"
	KindRL        = "rl"
	KindDistill   = "distill"
)

// StageKinds lists every stage kind a recipe may name, in pipeline order.
var StageKinds = []string{KindPretrain, KindSFT, KindDSAWarmup, KindDSASparse, KindRL, KindDistill}

// DataSources lists the values of data.source.
var DataSources = []string{"synthetic", "jsonl", "parquet"}

// DataGenerators lists the synthetic corpus generators data.generator may name.
var DataGenerators = []string{"arithmetic", "math", "math_flawed", "logic", "code", "kvretrieval", "needle", "mix", "calc", "search", "interpreter", "toolmix", "copy"}

// ArithmeticOps lists the operators data.ops may contain.
var ArithmeticOps = []string{"+", "-", "*"}

// ScheduleKinds lists the values of schedule.kind.
var ScheduleKinds = []string{"cosine", "constant", "linear"}

// ProgressModes lists the values of run.progress.
var ProgressModes = []string{"auto", "on", "off"}

// OptimizerNames lists the values of optimizer.name.
var OptimizerNames = []string{"adamw"}

// MinVocabSize is the smallest model.vocab_size the byte tokenizer fits in: 256 bytes and 8 specials
// (data.NumTokenIDs; configs does not import data so that data may import configs).
const MinVocabSize = 264

// Config is a fully resolved recipe.
type Config struct {
	Name       string     `yaml:"name"` // recipe name; defaults to the file's base name without .yaml
	Seed       int64      `yaml:"seed"` // default 1234
	Model      Model      `yaml:"model"`
	Data       Data       `yaml:"data"`
	Optimizer  Optimizer  `yaml:"optimizer"`
	Schedule   Schedule   `yaml:"schedule"`
	Train      Train      `yaml:"train"`
	Checkpoint Checkpoint `yaml:"checkpoint"`
	Run        Run        `yaml:"run"`
	RL         RL         `yaml:"rl"`
	DSA        DSA        `yaml:"dsa"`
	Distill    Distill    `yaml:"distill"`
	Stages     []Stage    `yaml:"stages"`
}

// Data is the training corpus.
type Data struct {
	Source     string   `yaml:"source"`      // "synthetic" (default) | "jsonl" | "parquet"
	Generator  string   `yaml:"generator"`   // synthetic generator name, default "arithmetic"
	Path       string   `yaml:"path"`        // file (or directory / glob) for jsonl/parquet
	TextColumn string   `yaml:"text_column"` // default "text"
	HeldOut    float64  `yaml:"held_out"`    // fraction of problems/documents held out for eval, default 0.05, in (0,0.5]
	MaxDigits  int      `yaml:"max_digits"`  // difficulty knob of the arithmetic generator, default 3, 1..12
	Ops        []string `yaml:"ops"`         // arithmetic operators, default ["+","-","*"]; allowed + - *
	// Params are the knobs of a task-family generator (math, logic, code, kvretrieval, needle: see envs), e.g.
	// {digits: "2"}; the arithmetic generator uses max_digits and ops instead.
	Params map[string]string `yaml:"params"`
	// Format is how documents become tokens: "text" (plain bytes between BOS and EOS), "chat" (DeepSeek-V3.2
	// chat conversations whose structural literals are special ids: task families render prompt + worked
	// solution, files hold a messages column), or "" = text for pretrain, chat for sft.
	Format string `yaml:"format"`
	// Packing is how chat documents fill the B×T rows: "packed" (default: one stream, a document continues
	// in the next row), "whole" (whole documents only, a row's tail padded; a document longer than a row is
	// truncated) or "padded" (one document per row).
	Packing string `yaml:"packing"`
	// Loss is which tokens of chat-format task documents are trained: "assistant" (the assistant turns only,
	// as SFT), "all" (every token after BOS), or "" = assistant for sft, all for the other kinds.
	Loss string `yaml:"loss"`
}

// Optimizer is the AdamW optimizer.
type Optimizer struct {
	Name        string  `yaml:"name"`         // one of OptimizerNames: "adamw"
	LR          float64 `yaml:"lr"`           // peak learning rate, default 3e-3
	Beta1       float64 `yaml:"beta1"`        // 0.9
	Beta2       float64 `yaml:"beta2"`        // 0.95
	Eps         float64 `yaml:"eps"`          // 1e-8
	WeightDecay float64 `yaml:"weight_decay"` // decoupled, 0.1
	GradClip    float64 `yaml:"grad_clip"`    // global-norm clip, 1.0; 0 = off
}

// Schedule is the learning-rate schedule.
type Schedule struct {
	Kind        string  `yaml:"kind"`         // "cosine" (default: linear warm-up then cosine) | "constant" | "linear"
	WarmupSteps int     `yaml:"warmup_steps"` // default 20
	MinLRRatio  float64 `yaml:"min_lr_ratio"` // floor of the decay as a fraction of lr, default 0.1
}

// Train sizes the training loop.
type Train struct {
	Steps       int `yaml:"steps"`        // optimizer steps, default 300
	BatchSize   int `yaml:"batch_size"`   // sequences per micro-batch, default 16
	SeqLen      int `yaml:"seq_len"`      // tokens per sequence, default 128
	GradAccum   int `yaml:"grad_accum"`   // micro-batches per optimizer step, default 1
	LogEvery    int `yaml:"log_every"`    // default 10
	EvalEvery   int `yaml:"eval_every"`   // default 50; 0 = only at the end
	EvalBatches int `yaml:"eval_batches"` // default 4
}

// Checkpoint says when checkpoints are written and which are kept.
type Checkpoint struct {
	Every     int    `yaml:"every"`      // steps between checkpoints, default 100; 0 = only at the end; the end of a stage always saves
	KeepLast  int    `yaml:"keep_last"`  // default 3, 0 = keep all
	KeepEvery int    `yaml:"keep_every"` // also keep every M-th step, default 0 = off
	Upload    string `yaml:"upload"`     // s3://bucket/prefix, optional
}

// Run holds what concerns the run directory and the console, not the training itself.
type Run struct {
	Dir         string `yaml:"dir"`         // default "" = runs/<name>-<timestamp> chosen by the CLI
	Progress    string `yaml:"progress"`    // "auto" (default: bar when stderr is a terminal) | "on" | "off"
	TensorBoard bool   `yaml:"tensorboard"` // default true
	Plots       bool   `yaml:"plots"`       // default true
	Threads     int    `yaml:"threads"`     // kernel threads, 0 = GOMAXPROCS
	// GraphShards is the number of data-parallel shards the batch rows of an lm training graph (pretrain, sft,
	// held-out loss) run as, one per core (model.GraphOptions.Shards): 0 = model.DefaultShards (default), 1 =
	// one graph; at most the batch's rows are used.
	GraphShards int `yaml:"graph_shards"`
	// AccuracyTable is the number of held-out tasks per family of the end-of-run accuracy table (every
	// trained stage's final checkpoint × every family the rl and distill stages sample); 0 = off (default).
	AccuracyTable int `yaml:"accuracy_table"`
}

// Stage is one step of the pipeline with its own resolved copy of the training sections.
type Stage struct {
	Name string `yaml:"name"` // instance name, unique, [a-z0-9_]+, e.g. "pretrain", "rl_math"
	Kind string `yaml:"kind"` // one of StageKinds
	// InitFrom is "" (the previous stage's final weights; a fresh model for the first stage), "stage:<name>"
	// (the final checkpoint of an earlier stage of this recipe, so several stages branch from one), a
	// checkpoint directory, or an s3:// URL.
	InitFrom string `yaml:"init_from"`
	// Each stage has its own resolved copy of these; a stage's YAML section overlays the top-level one key by key.
	Data      Data      `yaml:"data"`
	Optimizer Optimizer `yaml:"optimizer"`
	Schedule  Schedule  `yaml:"schedule"`
	Train     Train     `yaml:"train"`
	RL        RL        `yaml:"rl"`
	DSA       DSA       `yaml:"dsa"`
	Distill   Distill   `yaml:"distill"`
}

// Default returns the defaults every recipe starts from, with the one default stage {pretrain, pretrain}.
// Name is empty: Parse fills it from the file name when the recipe does not set it.
func Default() *Config {
	c := &Config{
		Seed:  1234,
		Model: DefaultModel(),
		Data: Data{
			Source:     "synthetic",
			Generator:  "arithmetic",
			TextColumn: "text",
			HeldOut:    0.05,
			MaxDigits:  3,
			Ops:        []string{"+", "-", "*"},
			Params:     map[string]string{},
		},
		Optimizer: Optimizer{
			Name:        "adamw",
			LR:          3e-3,
			Beta1:       0.9,
			Beta2:       0.95,
			Eps:         1e-8,
			WeightDecay: 0.1,
			GradClip:    1.0,
		},
		Schedule: Schedule{Kind: "cosine", WarmupSteps: 20, MinLRRatio: 0.1},
		Train: Train{
			Steps:       300,
			BatchSize:   16,
			SeqLen:      128,
			GradAccum:   1,
			LogEvery:    10,
			EvalEvery:   50,
			EvalBatches: 4,
		},
		Checkpoint: Checkpoint{Every: 100, KeepLast: 3},
		Run:        Run{Progress: "auto", TensorBoard: true, Plots: true},
		RL:         DefaultRL(),
		DSA:        DefaultDSA(),
		Distill:    DefaultDistill(),
	}
	c.Stages = []Stage{c.newStage(KindPretrain, KindPretrain)}
	return c
}

// newStage returns a stage whose sections are deep copies of the top-level ones.
func (c *Config) newStage(name, kind string) Stage {
	s := Stage{Name: name, Kind: kind}
	inheritSections(reflect.ValueOf(&s).Elem(), reflect.ValueOf(c).Elem())
	return s
}

// inheritSections deep-copies into the stage every struct-typed field of the config that the stage has under
// the same yaml key and type. This is what makes a new section reach stages without further code.
func inheritSections(stage, cfg reflect.Value) {
	st := stage.Type()
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		if f.Type.Kind() != reflect.Struct {
			continue
		}
		j, ok := fieldIndex(cfg.Type())[yamlKey(f)]
		if !ok || cfg.Type().Field(j).Type != f.Type {
			continue
		}
		stage.Field(i).Set(deepCopy(cfg.Field(j)))
	}
}

// deepCopy returns a copy of v that shares no slice or map with it.
func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		for i := 0; i < v.NumField(); i++ {
			if out.Field(i).CanSet() {
				out.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(deepCopy(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out.SetMapIndex(iter.Key(), deepCopy(iter.Value()))
		}
		return out
	case reflect.Pointer:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(deepCopy(v.Elem()))
		return out
	default:
		return v
	}
}

// Clone returns a deep copy of the config.
func (c *Config) Clone() *Config {
	out := deepCopy(reflect.ValueOf(c).Elem()).Interface().(Config)
	return &out
}

// Stage returns the stage with the given instance name.
func (c *Config) Stage(name string) (*Stage, bool) {
	for i := range c.Stages {
		if c.Stages[i].Name == name {
			return &c.Stages[i], true
		}
	}
	return nil, false
}

// StageRefPrefix starts an init_from (or a distill teacher's checkpoint) that names an earlier stage of the
// same recipe: "stage:pretrain".
const StageRefPrefix = "stage:"

// StageRef returns the stage name of a "stage:<name>" reference, and whether ref is one.
func StageRef(ref string) (string, bool) { return strings.CutPrefix(ref, StageRefPrefix) }

// stageIndex is the index of the stage called name, or −1.
func (c *Config) stageIndex(name string) int {
	for i := range c.Stages {
		if c.Stages[i].Name == name {
			return i
		}
	}
	return -1
}

// StageNames returns the instance names of the stages, in order.
func (c *Config) StageNames() []string {
	names := make([]string, len(c.Stages))
	for i, s := range c.Stages {
		names[i] = s.Name
	}
	return names
}

// CheckKinds reports every stage whose kind the caller (the trainer) does not implement, naming the stage:
// `stages[distill_code].kind: "distill" is not implemented by this trainer (implemented: dsa_sparse,
// dsa_warmup, pretrain, rl, sft)`.
func (c *Config) CheckKinds(implemented map[string]bool) error {
	var have []string
	for k, ok := range implemented {
		if ok {
			have = append(have, k)
		}
	}
	slices.Sort(have)
	var errs []error
	for i, s := range c.Stages {
		if !implemented[s.Kind] {
			errs = append(errs, &KeyError{
				Key: stageLabel(s.Name, i) + ".kind",
				Msg: fmt.Sprintf("%q is not implemented by this trainer (implemented: %s)", s.Kind, strings.Join(have, ", ")),
			})
		}
	}
	return errors.Join(errs...)
}

// stageLabel is how keys inside a stage are named in messages: stages[rl_math], or stages[2] for a stage
// without a name.
func stageLabel(name string, index int) string {
	if name == "" {
		return fmt.Sprintf("stages[%d]", index)
	}
	return "stages[" + name + "]"
}

// KeyError is one problem with one key of a config. Source is the file name or the `--set a.b=c`
// expression the value came from ("" when unknown), Line its 1-based line in the file (0 when unknown).
type KeyError struct {
	Source string
	Line   int
	Key    string // e.g. "optimizer.lr", "stages[rl_math].train.steps"; "" for the whole document
	Msg    string

	unknownKey bool     // rendered "unknown key <key>" after a --set source, as users type it
	related    []string // other keys of a cross-field rule, whose origin stands in when Key has none
}

func (e *KeyError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.unknownKey && strings.HasPrefix(e.Source, "--set ") {
		b.WriteString("unknown key " + e.Key)
		if e.Msg != "" {
			b.WriteString(" " + e.Msg)
		}
		return b.String()
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	if e.unknownKey {
		b.WriteString("unknown key")
		if e.Msg != "" {
			b.WriteString(" " + e.Msg)
		}
		return b.String()
	}
	b.WriteString(e.Msg)
	return b.String()
}
