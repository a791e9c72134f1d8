// distill_sft.go: the sft method of the distill stage, DeepSeek-V3.2's specialist-data distillation
// (dsv32-spec.md: the specialists generate domain data for the final model) with rejection sampling: each
// family's teacher samples distill.sft_samples completions for distill.sft_prompts of its family's training
// prompts, the family's verifier keeps the correct ones, and the student trains on them as chat SFT (loss on
// the assistant tokens only) through the lm stage. The data are generated once, deterministically from the
// seed, into <run>/distill/<stage>/sft.jsonl (kept for resume and for reading), then the stage is an sft
// stage over that file.

package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// newSFTDistillStage generates (or finds) the stage's rejection-sampled teacher data and returns an lm stage
// training the student on it.
func newSFTDistillStage(ctx context.Context, r *Run, st configs.Stage, params *model.Params) (stage, error) {
	path := filepath.Join(r.Dir, "distill", st.Name, "sft.jsonl")
	if _, err := os.Stat(path); err != nil {
		sc, err := LoadTeacherScorer(ctx, st, params.Config, r.stageFinal, filepath.Join(r.Dir, "cache"), r.Log)
		if err != nil {
			return nil, err
		}
		stats, err := generateSFTData(ctx, r, st, sc, params.Config.VocabSize, path)
		if err != nil {
			return nil, fmt.Errorf("stages[%s]: distillation data: %w", st.Name, err)
		}
		r.Log.Info("distillation data generated", "stage", st.Name, "file", path, "kept", stats)
	} else {
		r.Log.Info("distillation data found", "stage", st.Name, "file", path)
	}
	st.Data = configs.Data{Source: "jsonl", Path: path, TextColumn: "messages", HeldOut: 0.05, Format: "chat", Packing: "whole", Loss: "assistant",
		MaxDigits: st.Data.MaxDigits, Ops: st.Data.Ops, Params: map[string]string{}}
	return newLMStage(r, st, params)
}

// sftExample is one kept teacher completion as a chat conversation (data/conversations.go reads it).
type sftExample struct {
	Messages []data.Message `json:"messages"`
}

// generateSFTData samples, verifies and writes the kept completions of every teacher family; it returns the
// number kept per family. The file appears only when complete (written under a temporary name first).
func generateSFTData(ctx context.Context, r *Run, st configs.Stage, sc *rollout.TeacherScorer, vocab int, path string) (map[string]int, error) {
	tok, err := data.NewTokenizer(vocab)
	if err != nil {
		return nil, err
	}
	fam, err := RLFamily(st)
	if err != nil {
		return nil, err
	}
	d, rc := st.Distill, st.RL
	kept := map[string]int{}
	var lines [][]byte
	for _, nf := range evalFamilies(fam, rc.Env) {
		eng, ok := sc.Teachers[nf.name]
		if !ok {
			return nil, fmt.Errorf("distill.teachers: no teacher for family %s of rl.env", nf.name)
		}
		examples, err := teacherExamples(ctx, r, st, eng, tok, nf)
		if err != nil {
			return nil, err
		}
		kept[nf.name] = len(examples)
		for _, ex := range examples {
			b, err := json.Marshal(ex)
			if err != nil {
				return nil, err
			}
			lines = append(lines, b)
		}
	}
	if len(lines) == 0 {
		return kept, fmt.Errorf("no teacher completion of %d prompts × %d samples per family was correct", d.SFTPrompts, d.SFTSamples)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	var buf strings.Builder
	for _, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(tmp, []byte(buf.String()), 0o644); err != nil {
		return nil, err
	}
	return kept, os.Rename(tmp, path)
}

// teacherExamples draws distill.sft_prompts training prompts of family nf (each from a generator seeded by
// the run seed and its index), samples distill.sft_samples completions of each with the teacher engine over
// rl.workers goroutines, and keeps the verified-correct ones, in prompt order.
func teacherExamples(ctx context.Context, r *Run, st configs.Stage, eng *model.Engine, tok *data.Tokenizer, nf namedFamily) ([]sftExample, error) {
	d, rc := st.Distill, st.RL
	sc := rollout.RLSamplerConfig(rc, false, 0)
	sc.GroupSize = d.SFTSamples
	per := make([][]sftExample, d.SFTPrompts)
	errs := make([]error, rc.Workers)
	var wg sync.WaitGroup
	for w := range rc.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gs := rollout.NewGroupSampler(eng, tok, nf.family, fmt.Sprintf("teacher-%s-%d", nf.name, w), sc)
			for i := w; i < d.SFTPrompts; i += rc.Workers {
				if ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				label := fmt.Sprintf("sft/%s/%s/%d", st.Name, nf.name, i)
				task, prompt := drawPrompt(r.Config.Seed, label, nf.family, tok, rc.MaxPromptTokens)
				if prompt == nil {
					continue
				}
				g, err := gs.Sample(ctx, task, label, 0, labeledRNG(r.Config.Seed, label, 4))
				if err != nil {
					errs[w] = err
					return
				}
				for _, tr := range g.Trajectories {
					if tr.RewardParts["correct"] != 1 {
						continue
					}
					reasoning, answer, ok := strings.Cut(rollout.CompletionText(tok, tr.CompletionTokens), "</think>")
					if !ok {
						continue
					}
					per[i] = append(per[i], sftExample{Messages: append(envs.Messages(task, ""),
						data.Message{Role: "assistant", ReasoningContent: reasoning, Content: answer})})
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	var out []sftExample
	for _, xs := range per {
		out = append(out, xs...)
	}
	return out, nil
}

// drawPrompt draws a training task whose rendered prompt fits maxPrompt tokens (up to 100 attempts; nil
// prompt when none did).
func drawPrompt(seed int64, label string, f envs.Family, tok *data.Tokenizer, maxPrompt int) (envs.Task, []int32) {
	for attempt := range 100 {
		task := f.Sample(labeledRNG(seed, fmt.Sprintf("%s/%d", label, attempt), 1), data.SplitTrain)
		if p, err := rollout.RenderPrompt(tok, task); err == nil && len(p) <= maxPrompt {
			return task, p
		}
	}
	return envs.Task{}, nil
}
