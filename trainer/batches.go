// batches.go: where an LM-style stage (pretrain, sft) gets its micro-batches. Plain text corpora go through
// data.Packer (bytes between BOS and EOS); chat-format documents — task families rendering a prompt and its
// worked solution, or files with a messages column — go through data.DocPacker with ids whose structural
// literals are special ids, so what is pre-trained or fine-tuned is exactly what the RL stage later prompts.

package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
)

// batcher yields micro-batches with an exact, JSON-serialisable cursor.
type batcher interface {
	Next(*data.Batch) error
	State() (json.RawMessage, error)
	Restore(json.RawMessage) error
	Close() error
}

type textBatcher struct {
	c data.Corpus
	p *data.Packer
}

func (b *textBatcher) Next(dst *data.Batch) error { return b.p.Next(dst) }
func (b *textBatcher) State() (json.RawMessage, error) {
	return json.Marshal(b.p.State())
}
func (b *textBatcher) Restore(raw json.RawMessage) error {
	var st data.PackerState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("text packer cursor: %w", err)
	}
	return b.p.Restore(st)
}
func (b *textBatcher) Close() error { return b.c.Close() }

type docBatcher struct {
	src data.DocSource
	p   *data.DocPacker
}

func (b *docBatcher) Next(dst *data.Batch) error { return b.p.Next(dst) }
func (b *docBatcher) State() (json.RawMessage, error) {
	return json.Marshal(b.p.State())
}
func (b *docBatcher) Restore(raw json.RawMessage) error {
	var st data.DocPackerState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("document packer cursor: %w", err)
	}
	return b.p.Restore(st)
}
func (b *docBatcher) Close() error { return b.src.Close() }

// dataFormat resolves data.format for a stage kind.
func dataFormat(kind string, d configs.Data) string {
	if d.Format != "" {
		return d.Format
	}
	if kind == configs.KindSFT {
		return "chat"
	}
	return "text"
}

// newBatcher opens the stage's data for a split with batch shape B×T.
func newBatcher(st configs.Stage, seed int64, tok *data.Tokenizer, split data.Split, B, T int) (batcher, error) {
	d := st.Data
	if dataFormat(st.Kind, d) == "text" {
		c, err := data.OpenCorpus(corpusConfig(d, seed), split)
		if err != nil {
			return nil, err
		}
		return &textBatcher{c: c, p: data.NewPacker(c, tok, B, T)}, nil
	}
	var src data.DocSource
	var err error
	switch d.Source {
	case "synthetic":
		src, err = newFamilyDocs(d, seed, tok, split, d.Loss == "assistant" || (d.Loss == "" && st.Kind == configs.KindSFT))
	default:
		src, err = data.OpenConversationCorpus(corpusConfig(d, seed), split, tok, data.DefaultEncodeOptions(data.ModeThinking))
	}
	if err != nil {
		return nil, err
	}
	p, err := data.NewDocPackerMode(d.Packing, src, B, T)
	if err != nil {
		return nil, fmt.Errorf("data.packing: %w", err)
	}
	return &docBatcher{src: src, p: p}, nil
}

// familyDocs renders tasks of a family as chat conversations: the prompt and a worked solution (or, with
// probability `flaw`, a systematically wrong one where the family has a FlawedSolver, so that a pre-trained
// policy samples both and RL has something to select), then the family's follow-up questions about the same
// prompt as further turns (envs.FollowUpper, e.g. kvretrieval's followups). Draw i is a pure function of
// (seed, split, i).
type familyDocs struct {
	fam   envs.Family
	tok   *data.Tokenizer
	split data.Split
	seed  int64
	draws int64
	flaw  float64
	// overconfident is the share of a tool family's tempting tasks whose worked conversation answers
	// without calling (envs.Tempter, data.params.overconfident).
	overconfident float64
	sftMask       bool
	name          string
}

// dataFamilyParams are the family params of a synthetic data section: data.params without the corpus's own
// knob flaw (envs.Flaw), and for kvretrieval the question kinds from data.ops when params do not name them
// (as format text maps them).
func dataFamilyParams(d configs.Data) map[string]string {
	params := maps.Clone(d.Params)
	if params == nil {
		params = map[string]string{}
	}
	delete(params, "flaw")
	delete(params, "overconfident")
	if d.Generator == "kvretrieval" && params["kinds"] == "" && len(d.Ops) > 0 {
		params["kinds"] = strings.Join(d.Ops, ",")
	}
	return params
}

func newFamilyDocs(d configs.Data, seed int64, tok *data.Tokenizer, split data.Split, sftMask bool) (*familyDocs, error) {
	fam, err := envs.New(d.Generator, envs.Options{HeldOut: d.HeldOut, Params: dataFamilyParams(d)})
	if err != nil {
		return nil, fmt.Errorf("data.generator %s: %w", d.Generator, err)
	}
	flaw, err := envs.Flaw(d.Params, fam, 0)
	if err != nil {
		return nil, err
	}
	overconfident, err := envs.Overconfident(d.Params, fam)
	if err != nil {
		return nil, err
	}
	return &familyDocs{fam: fam, tok: tok, split: split, seed: seed, flaw: flaw, overconfident: overconfident,
		sftMask: sftMask, name: d.Generator}, nil
}

// flawRater is a family whose flaw rate depends on the task (envs.Mix: each member's "<member>.flaw").
type flawRater interface {
	FlawRate(t envs.Task) (float64, bool)
}

func (f *familyDocs) Next() (data.Doc, error) {
	rng := rand.New(rand.NewPCG(uint64(f.seed), uint64(f.draws)<<1|uint64(f.split)))
	f.draws++
	t := f.fam.Sample(rng, f.split)
	if te, ok := f.fam.(envs.ToolEnv); ok {
		return f.toolDoc(te, t, rng)
	}
	conv := envs.Conversation(f.fam, t, "")
	flaw := f.flaw
	if fr, ok := f.fam.(flawRater); ok { // a mixture: the task's member's own rate
		if r, ok := fr.FlawRate(t); ok {
			flaw = r
		}
	}
	if flaw > 0 && rng.Float64() < flaw {
		if r, a, ok := f.fam.(envs.FlawedSolver).FlawedSolution(t); ok {
			conv[len(conv)-1].ReasoningContent, conv[len(conv)-1].Content = r, a
		}
	}
	if fu, ok := f.fam.(envs.FollowUpper); ok {
		// more lookups in the same context as further turns; the chat format drops the reasoning of all
		// but the last assistant turn, so the earlier answers are the bare values
		for _, q := range fu.FollowUps(t) {
			conv = append(conv, data.Message{Role: "user", Content: q.Question},
				data.Message{Role: "assistant", ReasoningContent: q.Reasoning, Content: q.Answer})
		}
	}
	ids, mask, err := data.EncodeForTraining(f.tok, conv, data.DefaultEncodeOptions(data.ModeThinking))
	if err != nil {
		return data.Doc{}, fmt.Errorf("task %s: %w", t.ID, err)
	}
	if !f.sftMask {
		for i := range mask {
			mask[i] = 1
		}
		mask[0] = 0 // BOS is never a target
	}
	return data.Doc{IDs: ids, Mask: mask}, nil
}

// toolDoc renders a tool environment's worked episode of t (a share flaw of them misusing the tools, one of
// envs.MisuseKinds each, and a share overconfident of the tempting tasks' answering without a call) with
// the tool environments' encoder options.
func (f *familyDocs) toolDoc(te envs.ToolEnv, t envs.Task, rng *rand.Rand) (data.Doc, error) {
	conv, err := te.Episode(context.Background(), t, envs.MisuseDrawFor(rng, te, t, f.flaw, f.overconfident))
	if err != nil {
		return data.Doc{}, fmt.Errorf("task %s: %w", t.ID, err)
	}
	ids, mask, err := data.EncodeForTraining(f.tok, conv, envs.ToolEncodeOptions())
	if err != nil {
		return data.Doc{}, fmt.Errorf("task %s: %w", t.ID, err)
	}
	if !f.sftMask {
		for i := range mask {
			mask[i] = 1
		}
		mask[0] = 0
	}
	return data.Doc{IDs: ids, Mask: mask}, nil
}

func (f *familyDocs) State() data.CorpusState {
	return data.CorpusState{Source: "synthetic", Split: f.split.String(), Generator: f.name, Seed: f.seed, Draws: f.draws, Docs: f.draws}
}

func (f *familyDocs) Restore(s data.CorpusState) error {
	if s.Generator != f.name || s.Seed != f.seed || s.Split != f.split.String() {
		return fmt.Errorf("family documents: cursor of %s/%s seed %d does not fit %s/%s seed %d", s.Generator, s.Split, s.Seed, f.name, f.split, f.seed)
	}
	f.draws = s.Draws
	return nil
}

func (f *familyDocs) Close() error { return nil }

// Task families are corpus generators too (data.format chat renders them with special ids).
func init() {
	for _, n := range envs.Names() {
		configs.RegisterGenerator(n)
	}
}
