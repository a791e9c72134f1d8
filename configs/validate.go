// validate.go checks a resolved Config before anything starts: the range of every field, the model
// (Model.Validate), and the rules that tie fields together (warm-up within the run, sequences within the
// position range, unique stage names, a path for file-backed data, the shape of s3:// URLs, ...).
//
// Every problem is a *KeyError naming its key, with the stage when inside one
// ("stages[rl_math].optimizer.lr: must be > 0, got -1"); Validate returns them all with errors.Join.
// Parse and Load then point each at the file line or --set expression that set the key.
//
// The top-level data/optimizer/schedule/train sections are validated as the base of every stage, and each
// stage's resolved copy is validated again; a stage problem that is the very one already reported for the
// top level (the stage inherited it) is not repeated.

package configs

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
)

var (
	configNameRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	stageNameRe  = regexp.MustCompile(`^[a-z0-9_]+$`)
	s3BucketRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// checker collects KeyErrors under a key prefix ("" or "stages[name].").
type checker struct {
	prefix string
	errs   []error
}

func (k *checker) add(key, format string, args ...any) *KeyError {
	e := &KeyError{Key: k.prefix + key, Msg: fmt.Sprintf(format, args...)}
	k.errs = append(k.errs, e)
	return e
}

// addRelated reports a cross-field problem; related keys (relative to the prefix) locate it when key has
// no origin of its own.
func (k *checker) addRelated(key string, related []string, format string, args ...any) {
	e := k.add(key, format, args...)
	e.related = append(e.related, related...)
}

func (k *checker) positiveInt(key string, v int) {
	if v <= 0 {
		k.add(key, "must be > 0, got %d", v)
	}
}

func (k *checker) nonNegInt(key string, v int) {
	if v < 0 {
		k.add(key, "must be >= 0, got %d", v)
	}
}

func (k *checker) positive(key string, v float64) {
	if !(v > 0) || math.IsInf(v, 0) {
		k.add(key, "must be > 0, got %g", v)
	}
}

func (k *checker) nonNeg(key string, v float64) {
	if !(v >= 0) || math.IsInf(v, 0) {
		k.add(key, "must be >= 0, got %g", v)
	}
}

func (k *checker) oneOf(key, v string, allowed []string) bool {
	if !slices.Contains(allowed, v) {
		k.add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
		return false
	}
	return true
}

// sections are the training sections that stages inherit from the top level.
type sections struct {
	Data      *Data
	Optimizer *Optimizer
	Schedule  *Schedule
	Train     *Train
}

// Validate reports every problem of the config (nil when there is none).
func (c *Config) Validate() error {
	k := &checker{}
	switch {
	case c.Name == "":
		k.add("name", "must be set (it names the run directory)")
	case !configNameRe.MatchString(c.Name):
		k.add("name", "must match [A-Za-z0-9._-]+ (it names the run directory), got %q", c.Name)
	}
	if err := c.Model.Validate(); err != nil {
		k.errs = append(k.errs, flatten(err)...)
	}
	if c.Model.VocabSize > 0 && c.Model.VocabSize < MinVocabSize {
		k.add("model.vocab_size", "must be >= %d (256 bytes and the special tokens of the byte tokenizer), got %d", MinVocabSize, c.Model.VocabSize)
	}

	top := &checker{}
	validateSections(top, sections{&c.Data, &c.Optimizer, &c.Schedule, &c.Train}, &c.Model)
	k.errs = append(k.errs, top.errs...)
	reported := map[string]bool{}
	for _, e := range top.errs {
		reported[e.Error()] = true
	}

	validateCheckpoint(k, &c.Checkpoint)
	validateRun(k, &c.Run)

	if len(c.Stages) == 0 {
		k.add("stages", "want at least one stage")
	}
	firstIndex := map[string]int{}
	for i := range c.Stages {
		s := &c.Stages[i]
		label := stageLabel(s.Name, i)
		sk := &checker{prefix: label + "."}
		switch {
		case s.Name == "":
			sk.add("name", "must be set")
		case !stageNameRe.MatchString(s.Name):
			sk.add("name", "must match [a-z0-9_]+, got %q", s.Name)
		}
		if j, dup := firstIndex[s.Name]; dup && s.Name != "" {
			sk.add("name", "duplicate stage name %q (stage %d and stage %d): instance names must be unique", s.Name, j, i)
		} else {
			firstIndex[s.Name] = i
		}
		if s.Kind == "" {
			sk.add("kind", "must be set, one of %s", strings.Join(StageKinds, ", "))
		} else {
			sk.oneOf("kind", s.Kind, StageKinds)
		}
		if ref, ok := StageRef(s.InitFrom); ok {
			checkStageRef(sk, c, "init_from", ref, i)
		}
		if strings.Contains(s.InitFrom, "://") {
			if err := checkS3URL(s.InitFrom); err != nil {
				sk.add("init_from", "%v", err)
			}
		}
		k.errs = append(k.errs, sk.errs...)

		ss := &checker{prefix: label + "."}
		validateSections(ss, sections{&s.Data, &s.Optimizer, &s.Schedule, &s.Train}, &c.Model)
		if s.Kind == KindRL || s.Kind == KindDistill {
			validateRL(ss, &s.RL)
			validateKeepSelection(ss, c, i)
		}
		if s.Kind == KindDistill {
			validateDistill(ss, c, i)
		}
		if s.Kind == KindDSAWarmup || s.Kind == KindDSASparse {
			validateDSA(ss, &s.DSA)
		}
		for _, e := range ss.errs {
			ke := e.(*KeyError)
			inherited := KeyError{Key: strings.TrimPrefix(ke.Key, ss.prefix), Msg: ke.Msg}
			if !reported[inherited.Error()] {
				k.errs = append(k.errs, e)
			}
		}
	}
	return errors.Join(k.errs...)
}

// validateSections checks the sections a stage trains with.
func validateSections(k *checker, s sections, m *Model) {
	validateData(k, s.Data)
	validateOptimizer(k, s.Optimizer)
	validateSchedule(k, s.Schedule, s.Train)
	validateTrain(k, s.Train, m)
}

// DataFormats lists the values of data.format ("" = by stage kind).
var DataFormats = []string{"", "text", "chat"}

// DataLosses lists the values of data.loss ("" = by stage kind).
var DataLosses = []string{"", "all", "assistant"}

// DataPackings lists the values of data.packing ("" = packed).
var DataPackings = []string{"", "packed", "whole", "padded"}

func validateData(k *checker, d *Data) {
	k.oneOf("data.format", d.Format, DataFormats)
	if k.oneOf("data.packing", d.Packing, DataPackings) && d.Packing != "" && d.Format == "text" {
		k.addRelated("data.packing", []string{"data.format"}, "applies to chat documents, not data.format text")
	}
	if k.oneOf("data.loss", d.Loss, DataLosses) && d.Loss != "" && d.Format == "text" {
		k.addRelated("data.loss", []string{"data.format"}, "applies to chat documents, not data.format text")
	}
	if k.oneOf("data.source", d.Source, DataSources) {
		switch d.Source {
		case "synthetic":
			k.oneOf("data.generator", d.Generator, DataGenerators)
		default:
			if d.Path == "" {
				k.addRelated("data.path", []string{"data.source"}, "required when data.source is %s", d.Source)
			}
			if d.TextColumn == "" {
				k.add("data.text_column", "required when data.source is %s", d.Source)
			}
		}
	}
	if !(d.HeldOut > 0 && d.HeldOut <= 0.5) {
		k.add("data.held_out", "must be in (0, 0.5], got %g", d.HeldOut)
	}
	if d.MaxDigits < 1 || d.MaxDigits > 12 {
		k.add("data.max_digits", "must be in 1..12, got %d", d.MaxDigits)
	}
	allowedOps := ArithmeticOps
	if d.Source == "synthetic" && d.Generator == "kvretrieval" {
		allowedOps = KVRetrievalKinds // data.ops lists the question kinds of kvretrieval
	}
	if len(d.Ops) == 0 {
		k.add("data.ops", "want at least one operator of %s", strings.Join(allowedOps, " "))
	}
	for i, op := range d.Ops {
		key := fmt.Sprintf("data.ops[%d]", i)
		if !slices.Contains(allowedOps, op) {
			k.add(key, "must be one of %s, got %q", strings.Join(allowedOps, " "), op)
		} else if slices.Index(d.Ops, op) < i {
			k.add(key, "duplicate operator %q", op)
		}
	}
}

func validateOptimizer(k *checker, o *Optimizer) {
	k.oneOf("optimizer.name", o.Name, OptimizerNames)
	k.positive("optimizer.lr", o.LR)
	if !(o.Beta1 >= 0 && o.Beta1 < 1) {
		k.add("optimizer.beta1", "must be in [0, 1), got %g", o.Beta1)
	}
	if !(o.Beta2 >= 0 && o.Beta2 < 1) {
		k.add("optimizer.beta2", "must be in [0, 1), got %g", o.Beta2)
	}
	k.positive("optimizer.eps", o.Eps)
	k.nonNeg("optimizer.weight_decay", o.WeightDecay)
	k.nonNeg("optimizer.grad_clip", o.GradClip)
}

func validateSchedule(k *checker, s *Schedule, t *Train) {
	k.oneOf("schedule.kind", s.Kind, ScheduleKinds)
	k.nonNegInt("schedule.warmup_steps", s.WarmupSteps)
	if s.WarmupSteps > t.Steps && t.Steps > 0 {
		k.addRelated("schedule.warmup_steps", []string{"train.steps"}, "%d exceeds train.steps %d", s.WarmupSteps, t.Steps)
	}
	if !(s.MinLRRatio >= 0 && s.MinLRRatio <= 1) {
		k.add("schedule.min_lr_ratio", "must be in [0, 1], got %g", s.MinLRRatio)
	}
}

func validateTrain(k *checker, t *Train, m *Model) {
	k.positiveInt("train.steps", t.Steps)
	k.positiveInt("train.batch_size", t.BatchSize)
	if t.SeqLen < 2 {
		k.add("train.seq_len", "must be >= 2 (an input and its next token), got %d", t.SeqLen)
	} else if m.MaxPositionEmbeddings > 0 && t.SeqLen > m.MaxPositionEmbeddings {
		k.addRelated("train.seq_len", []string{"model.max_position_embeddings"}, "%d exceeds model.max_position_embeddings %d", t.SeqLen, m.MaxPositionEmbeddings)
	}
	k.positiveInt("train.grad_accum", t.GradAccum)
	k.positiveInt("train.log_every", t.LogEvery)
	k.nonNegInt("train.eval_every", t.EvalEvery)
	k.positiveInt("train.eval_batches", t.EvalBatches)
}

func validateCheckpoint(k *checker, c *Checkpoint) {
	k.nonNegInt("checkpoint.every", c.Every)
	k.nonNegInt("checkpoint.keep_last", c.KeepLast)
	k.nonNegInt("checkpoint.keep_every", c.KeepEvery)
	if c.KeepEvery > 0 && c.Every > 0 && c.KeepEvery%c.Every != 0 {
		k.addRelated("checkpoint.keep_every", []string{"checkpoint.every"},
			"%d is not a multiple of checkpoint.every %d, so no saved checkpoint would fall on it", c.KeepEvery, c.Every)
	}
	if c.Upload != "" {
		if err := checkS3URL(c.Upload); err != nil {
			k.add("checkpoint.upload", "%v", err)
		}
	}
}

func validateRun(k *checker, r *Run) {
	k.oneOf("run.progress", r.Progress, ProgressModes)
	k.nonNegInt("run.threads", r.Threads)
	k.nonNegInt("run.graph_shards", r.GraphShards)
	k.nonNegInt("run.accuracy_table", r.AccuracyTable)
}

// checkS3URL checks the shape s3://bucket[/prefix] (bucket: 3–63 of a-z 0-9 . -, starting and ending with
// a letter or digit).
func checkS3URL(u string) error {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return fmt.Errorf("want s3://bucket/prefix, got %q", u)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if !s3BucketRe.MatchString(bucket) || strings.Contains(bucket, "..") {
		return fmt.Errorf("bucket %q of %q must be 3-63 characters of a-z 0-9 . - starting and ending with a letter or digit", bucket, u)
	}
	if strings.ContainsAny(prefix, " \t\r\n\\") || strings.Contains(prefix, "//") {
		return fmt.Errorf("prefix %q of %q must not contain whitespace, backslashes or empty segments", prefix, u)
	}
	return nil
}

// checkStageRef checks a "stage:<name>" reference of stage i: the named stage exists and comes before it.
func checkStageRef(k *checker, c *Config, key, ref string, i int) {
	switch j := c.stageIndex(ref); {
	case ref == "":
		k.add(key, "stage: names no stage (want stage:<name> of an earlier stage)")
	case j < 0:
		k.add(key, "stage:%s: no stage of this recipe is called %q (stages: %s)", ref, ref, strings.Join(c.StageNames(), ", "))
	case j >= i:
		k.add(key, "stage:%s: the stage must come before this one (it is stage %d, this is stage %d)", ref, j, i)
	}
}
