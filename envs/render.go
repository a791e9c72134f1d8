// render.go turns tasks into DeepSeek-V3.2 chat-format text (thinking mode, through data's encoder) and
// makes every family a pre-training / SFT text generator:
//
//   - Messages / Prompt / PromptIDs: the prompt the policy completes, "<BOS>[system]<User>prompt<Assistant><think>".
//   - Conversation / Text / TrainingIDs: prompt plus the worked solution as the assistant turn,
//     "...<Assistant><think>reasoning</think>answer<EOS>"; TrainingIDs has the chat-SFT loss mask. Text and
//     TrainingIDs render the prompt with data's encoder and append the assistant part themselves, which
//     gives the same bytes and ids as data's encoder on Conversation (tested) and also accepts an empty
//     reasoning.
//   - Generator: a data.Generator whose Problem.Text is the conversation without the BOS in front and the EOS
//     at the end (data's packer adds both as special ids around each document); Problem.Key is the task ID,
//     so a synthetic corpus splits exactly as the family does. The special literals inside the text
//     (<｜User｜>, <｜Assistant｜>, <think>, </think>) are plain text to data's byte tokenizer.
//
// registerGenerators makes math, logic, code, kvretrieval and needle available as data.generator, plus math_flawed
// (half of the worked solutions drop every carry and borrow).

package envs

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// Messages returns the prompt messages of t: an optional system message, then the user message.
func Messages(t Task, system string) []data.Message {
	var msgs []data.Message
	if system != "" {
		msgs = append(msgs, data.Message{Role: "system", Content: system})
	}
	return append(msgs, data.Message{Role: "user", Content: t.Prompt})
}

func thinkingOptions() data.EncodeOptions { return data.DefaultEncodeOptions(data.ModeThinking) }

// Prompt renders the prompt of t in thinking mode, ending in "<｜Assistant｜><think>".
func Prompt(t Task, system string) (string, error) {
	s, err := data.Encode(Messages(t, system), thinkingOptions())
	if err != nil {
		return "", fmt.Errorf("envs: prompt of task %q: %w", t.ID, err)
	}
	return s, nil
}

// PromptIDs renders the prompt of t to token ids (structural literals are special ids).
func PromptIDs(tok *data.Tokenizer, t Task, system string) ([]int32, error) {
	ids, err := data.EncodeIDs(tok, Messages(t, system), thinkingOptions())
	if err != nil {
		return nil, fmt.Errorf("envs: prompt ids of task %q: %w", t.ID, err)
	}
	return ids, nil
}

// Conversation returns the prompt messages of t followed by the assistant's worked solution.
func Conversation(f Family, t Task, system string) []data.Message {
	reasoning, answer := f.Solution(t)
	return append(Messages(t, system), data.Message{Role: "assistant", ReasoningContent: reasoning, Content: answer})
}

// Text renders the whole conversation of t (prompt and worked solution) in thinking mode, BOS to EOS:
// Prompt + reasoning + "</think>" + answer + EOS, which is what data.Encode makes of Conversation (the
// assistant part is written here so that an empty reasoning, which data's encoder refuses for the last
// assistant turn, still renders).
func Text(f Family, t Task, system string) (string, error) {
	prompt, err := Prompt(t, system)
	if err != nil {
		return "", err
	}
	reasoning, answer := f.Solution(t)
	return prompt + Completion(reasoning, answer) + litEOS, nil
}

// TrainingIDs renders the conversation of t to ids with the chat-SFT loss mask: 0 on the prompt, 1 on the
// assistant's reasoning, </think>, answer and EOS (as data.EncodeForTraining masks Conversation).
func TrainingIDs(tok *data.Tokenizer, f Family, t Task, system string) (ids []int32, lossMask []uint8, err error) {
	if tok == nil {
		tok = &data.Tokenizer{}
	}
	ids, err = PromptIDs(tok, t, system)
	if err != nil {
		return nil, nil, err
	}
	n := len(ids)
	reasoning, answer := f.Solution(t)
	ids = tok.AppendText(ids, reasoning)
	ids = tok.AppendSpecial(ids, data.ThinkEnd)
	ids = tok.AppendText(ids, answer)
	ids = tok.AppendSpecial(ids, data.EOS)
	lossMask = make([]uint8, len(ids))
	for i := n; i < len(ids); i++ {
		lossMask[i] = 1
	}
	return ids, lossMask, nil
}

// Completion renders a solution as the completion text Verify reads.
func Completion(reasoning, answer string) string { return reasoning + litThinkEnd + answer }

var (
	litBOS  = data.SpecialTokens[data.BOS-256]
	litUser = data.SpecialTokens[data.User-256]
	litAsst = data.SpecialTokens[data.Assistant-256]
)

// Document renders a pre-training document: the conversation without its BOS and EOS, i.e.
// "<｜User｜>prompt<｜Assistant｜><think>reasoning</think>answer". It needs no encoder state and cannot fail.
func Document(prompt, reasoning, answer string) string {
	var b strings.Builder
	b.Grow(len(prompt) + len(reasoning) + len(answer) + 48)
	b.WriteString(litUser)
	b.WriteString(prompt)
	b.WriteString(litAsst)
	b.WriteString(litThinkBeg)
	b.WriteString(reasoning)
	b.WriteString(litThinkEnd)
	b.WriteString(answer)
	return b.String()
}

// FollowUpper is implemented by families whose pre-training documents can go on with more questions about
// the same prompt (kvretrieval: lookups of other keys of the same context), so that one long context
// supervises several answers. Tasks, prompts and verifiers are unchanged: follow-ups exist only in documents.
type FollowUpper interface {
	FollowUps(t Task) []FollowUp
}

// FollowUp is one more question about a task's prompt, with its worked solution.
type FollowUp struct{ Question, Reasoning, Answer string }

// DocumentWithFollowUps renders Document(prompt, reasoning, answer) and then, for each follow-up, the end of
// the assistant turn (the EOS literal) and one more user and assistant turn, as the chat format writes a
// multi-turn conversation: "...answer<｜end▁of▁sentence｜><｜User｜>question<｜Assistant｜><think>…</think>answer".
func DocumentWithFollowUps(prompt, reasoning, answer string, fus []FollowUp) string {
	s := Document(prompt, reasoning, answer)
	for _, f := range fus {
		s += litEOS + Document(f.Question, f.Reasoning, f.Answer)
	}
	return s
}

// Generator adapts a family to data.Generator.
type Generator struct {
	// GenName is the generator's name (data.generator); Family.Name() when empty.
	GenName string
	Family  Family
	// Flaw is the share of documents whose worked solution follows the family's systematic wrong procedure
	// (FlawedSolver; ignored by families without one). Problem.Answer stays the right answer.
	Flaw float64
}

// Name returns GenName or the family's name.
func (g Generator) Name() string {
	if g.GenName != "" {
		return g.GenName
	}
	return g.Family.Name()
}

// Generate draws one task (either split: data's corpus rejects by Key) and renders its document. The
// family must implement Drawer (all shipped families do); otherwise the train split is sampled.
func (g Generator) Generate(rng *rand.Rand) data.Problem {
	var t Task
	if d, ok := g.Family.(Drawer); ok {
		t = d.Draw(rng)
	} else {
		t = g.Family.Sample(rng, data.SplitTrain)
	}
	reasoning, answer := g.Family.Solution(t)
	if g.Flaw > 0 && rng.Float64() < g.Flaw {
		if fs, ok := g.Family.(FlawedSolver); ok {
			if r, a, ok := fs.FlawedSolution(t); ok {
				reasoning, answer = r, a
			}
		}
	}
	var fus []FollowUp
	if f, ok := g.Family.(FollowUpper); ok {
		fus = f.FollowUps(t)
	}
	return data.Problem{Key: t.ID, Text: DocumentWithFollowUps(t.Prompt, reasoning, answer, fus), Answer: t.Answer}
}

// Flaw reads data.params.flaw, the share of pre-training documents whose worked solution follows the family's
// systematic wrong procedure (def when absent), and checks that f can write such solutions (FlawedSolver).
func Flaw(params map[string]string, f Family, def float64) (float64, error) {
	v, ok := params["flaw"]
	if !ok {
		return def, nil
	}
	flaw, err := strconv.ParseFloat(v, 64)
	if err != nil || flaw < 0 || flaw > 1 {
		return 0, fmt.Errorf("data.params.flaw: want a fraction in [0, 1], got %q", v)
	}
	_, tools := f.(ToolEnv) // a tool environment's flawed episodes misuse the tools (MisuseKinds)
	if _, ok := f.(FlawedSolver); flaw > 0 && !ok && !tools {
		return 0, fmt.Errorf("data.params.flaw: family %s has no flawed solutions", f.Name())
	}
	return flaw, nil
}

// Overconfident reads data.params.overconfident, the share of a tool corpus's worked conversations of
// tempting tasks (Tempter) that answer without calling the tool (0 when absent), and checks that f is a
// tool environment.
func Overconfident(params map[string]string, f Family) (float64, error) {
	v, ok := params["overconfident"]
	if !ok {
		return 0, nil
	}
	share, err := strconv.ParseFloat(v, 64)
	if err != nil || share < 0 || share > 1 {
		return 0, fmt.Errorf("data.params.overconfident: want a fraction in [0, 1], got %q", v)
	}
	if _, ok := f.(ToolEnv); !ok {
		return 0, fmt.Errorf("data.params.overconfident: family %s calls no tools", f.Name())
	}
	return share, nil
}

// generatorOptions maps data's corpus section onto family options: max_digits is math's digits (and the
// multiplication operands'), ops is math's operators or, for the other families, the sub-kinds
// (logic: sort, bool; code: predict, write; kvretrieval: single, multihop). held_out is applied by the corpus.
func generatorOptions(family string, cfg data.CorpusConfig) Options {
	p := map[string]string{}
	switch family {
	case "math":
		if cfg.MaxDigits > 0 {
			d := fmt.Sprint(cfg.MaxDigits)
			p["digits"], p["mul_digits_a"], p["mul_digits_b"] = d, d, d
		}
		if len(cfg.Ops) > 0 {
			p["ops"] = strings.Join(cfg.Ops, ",")
		}
	case "needle": // no sub-kinds: data.ops does not apply
	default:
		if len(cfg.Ops) > 0 {
			p["kinds"] = strings.Join(cfg.Ops, ",")
		}
	}
	for k, v := range cfg.Params { // data.params: the family's own knobs, over the mapped ones
		if k != "flaw" && k != "overconfident" {
			p[k] = v
		}
	}
	heldOut := cfg.HeldOut
	if !(heldOut > 0 && heldOut < 1) {
		heldOut = 0 // the family's default; the corpus checks its own held_out
	}
	return Options{HeldOut: heldOut, Params: p}
}

func registerGenerators() {
	for _, g := range []struct {
		name, family string
		flaw         float64
	}{
		{"math", "math", 0},
		{"math_flawed", "math", 0.5},
		{"logic", "logic", 0},
		{"code", "code", 0},
		{"kvretrieval", "kvretrieval", 0},
		{"needle", "needle", 0},
	} {
		err := data.RegisterGenerator(g.name, func(cfg data.CorpusConfig) (data.Generator, error) {
			f, err := New(g.family, generatorOptions(g.family, cfg))
			if err != nil {
				return nil, err
			}
			flaw, err := Flaw(cfg.Params, f, g.flaw)
			if err != nil {
				return nil, err
			}
			return Generator{GenName: g.name, Family: f, Flaw: flaw}, nil
		})
		if err != nil {
			panic(err)
		}
	}
	if err := data.RegisterGenerator(MixName, newMixGenerator); err != nil {
		panic(err)
	}
}
