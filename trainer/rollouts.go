// rollouts.go: rollouts a person can read. With rl.log_samples N, an rl stage appends to <run>/rollouts.jsonl,
// per step, one line for each of the first N groups (by id) it trained on — the prompt, every completion's
// text with its reward parts, advantage, length, finish reason and tokens with log π_old — and, per
// evaluation, one line for each of the first N held-out tasks' greedy completions. The log only reads what
// the step computed: it changes no training number. `trainer sample` (SampleEpisodes, sample.go) prints
// records of the same shape.

package trainer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/rollout"
)

// RolloutsFile is the name of the readable rollout log in a run directory.
const RolloutsFile = "rollouts.jsonl"

// Kinds of rollouts.jsonl lines (RolloutGroup.Kind, RolloutEval.Kind).
const (
	RolloutKindTrain  = "train"  // a group a step trained on
	RolloutKindEval   = "eval"   // a greedy evaluation completion
	RolloutKindSample = "sample" // printed by `trainer sample --json` (never in rollouts.jsonl)
)

// RolloutToken is one completion token: its decoded piece and the sampler's log-probability (π_old).
type RolloutToken struct {
	T  string  `json:"t"`
	LP float32 `json:"lp"`
}

// RolloutCompletion is one completion of a group.
type RolloutCompletion struct {
	// Text is the completion as the verifier reads it (rollout.CompletionText): reasoning, </think> and
	// answer as the model wrote them, without the final end-of-sentence token.
	Text        string             `json:"text"`
	Reward      float32            `json:"reward"`
	RewardParts map[string]float32 `json:"reward_parts,omitempty"`
	Advantage   *float64           `json:"advantage,omitempty"` // train lines: R − mean(R) as the update used it
	Correct     *bool              `json:"correct,omitempty"`   // sample lines of a task family
	Length      int                `json:"length"`              // completion tokens, end-of-sentence included
	// FinishReason is "stop" (end-of-sentence) or "length" (rl.max_new_tokens reached).
	FinishReason string `json:"finish_reason"`
	// Tokens has one entry per completion token; the pieces concatenate to Text (a piece holds whole UTF-8
	// characters, so a character split over byte tokens is shown at its last one; the end-of-sentence token of
	// a stopped completion has the piece "").
	Tokens []RolloutToken `json:"tokens"`
	// Turns splits a tool environment's multi-turn episode into the policy's segments, each with its calls
	// and their results (rollout.EpisodeTurns); Text holds the whole episode, results included.
	Turns []rollout.Turn `json:"turns,omitempty"`
}

// RolloutGroup is one group: a line of kind train in rollouts.jsonl, or a `trainer sample --json` line.
type RolloutGroup struct {
	Kind          string              `json:"kind"`
	Stage         string              `json:"stage"`
	Step          int                 `json:"step"` // counted from 1, as in metrics.jsonl (sample: the checkpoint's)
	PolicyVersion int64               `json:"policy_version"`
	GroupID       string              `json:"group_id"`
	Env           string              `json:"env"`
	Prompt        string              `json:"prompt"`           // the task's prompt text (the user turn)
	Answer        string              `json:"answer,omitempty"` // the task's reference answer, when known
	Completions   []RolloutCompletion `json:"completions"`
}

// RolloutEval is an evaluation's greedy completion of one held-out task: a line of kind eval.
type RolloutEval struct {
	Kind  string `json:"kind"`
	Stage string `json:"stage"`
	Step  int    `json:"step"` // completed steps when the evaluation ran (0: before the first)
	Env   string `json:"env"`
	TaskSample
}

// rolloutGroup renders group g (the prompt and answer from its task when known) with advantages adv
// (nil: none) as a line of kind kind.
func rolloutGroup(tok *data.Tokenizer, kind string, g *data.Group, task *envs.Task, adv []float64) RolloutGroup {
	out := RolloutGroup{Kind: kind, GroupID: g.GroupID, Completions: make([]RolloutCompletion, len(g.Trajectories))}
	for i := range g.Trajectories {
		tr := &g.Trajectories[i]
		if i == 0 {
			out.PolicyVersion, out.Env = tr.PolicyVersion, tr.Env
			if task == nil { // a group the learner did not dispatch in this process: the rendered prompt
				out.Prompt = tok.Decode(tr.PromptTokens)
			}
		}
		c := RolloutCompletion{Reward: tr.Reward, RewardParts: tr.RewardParts, Length: len(tr.CompletionTokens), FinishReason: tr.FinishReason}
		var pieces []string
		c.Text, pieces = tokenPieces(tok, tr.CompletionTokens)
		c.Tokens = make([]RolloutToken, len(pieces))
		for k, p := range pieces {
			c.Tokens[k] = RolloutToken{T: p, LP: tr.LogpOld[k]}
		}
		if _, multi := tr.RewardParts[rollout.PartTurns]; multi {
			c.Turns = rollout.EpisodeTurns(tok, tr.CompletionTokens)
		}
		if adv != nil {
			a := adv[i]
			c.Advantage = &a
		}
		out.Completions[i] = c
	}
	if task != nil {
		out.Prompt, out.Answer = task.Prompt, task.Answer
	}
	return out
}

// tokenPieces returns the completion's text (rollout.CompletionText) and one piece of it per token, the
// pieces concatenating to the text. Each piece holds whole UTF-8 sequences of the text (invalid bytes count as
// one each), so that the pieces survive JSON, which writes valid UTF-8, as the whole text does: a token that
// ends inside a character gets the piece "", and the character goes with the token that completes it.
func tokenPieces(tok *data.Tokenizer, ids []int32) (string, []string) {
	text := rollout.CompletionText(tok, ids)
	// the byte offset in text after each token (the dropped final EOS ends at len(text))
	ends := make([]int, len(ids))
	off := 0
	for i, id := range ids {
		if i == len(ids)-1 && id == data.EOS {
			ends[i] = len(text)
			break
		}
		if id >= 0 && id < 256 {
			off++
		} else {
			off += len(tok.TokenString(id))
		}
		ends[i] = off
	}
	// starts[b]: b is where a UTF-8 sequence (or an invalid byte) of text begins, or len(text)
	starts := make([]bool, len(text)+1)
	for b := 0; b < len(text); {
		starts[b] = true
		_, n := utf8.DecodeRuneInString(text[b:])
		b += n
	}
	starts[len(text)] = true
	pieces := make([]string, len(ids))
	prev := 0
	for i, e := range ends {
		for !starts[e] {
			e--
		}
		pieces[i] = text[prev:e]
		prev = e
	}
	return text, pieces
}

// rolloutLog appends lines to rollouts.jsonl. The nil log (rl.log_samples 0) writes nothing.
type rolloutLog struct {
	path string
	f    *os.File
	w    *bufio.Writer
	enc  *json.Encoder // into w, "<" and ">" as they are (the completions are full of <think> and </think>)
}

// openRolloutLog opens runDir's rollouts.jsonl for appending (a resumed run appends the steps it redoes
// again, as groups.jsonl does).
func openRolloutLog(runDir string) (*rolloutLog, error) {
	path := filepath.Join(runDir, RolloutsFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("rollout log: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &rolloutLog{path: path, f: f, w: w, enc: enc}, nil
}

// write appends the lines and flushes them to the file.
func (l *rolloutLog) write(lines ...any) error {
	if l == nil {
		return nil
	}
	for _, v := range lines {
		if err := l.enc.Encode(v); err != nil {
			return fmt.Errorf("rollout log %s: %w", l.path, err)
		}
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("rollout log %s: %w", l.path, err)
	}
	return nil
}

// close closes the file.
func (l *rolloutLog) close() error {
	if l == nil {
		return nil
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("rollout log %s: %w", l.path, err)
	}
	return nil
}

// logGroups writes the first rl.log_samples of the step's groups (sorted by id, as the batch b lays them
// out with their advantages). step counts from 1.
func (s *rlStage) logGroups(step int, groups []*data.Group, b *groupBatch) error {
	if s.rollouts == nil {
		return nil
	}
	lines := make([]any, 0, s.rc.LogSamples)
	off := 0
	for _, g := range groups {
		n := len(g.Trajectories)
		if len(lines) < s.rc.LogSamples {
			var task *envs.Task
			if t, ok := s.tasks[g.GroupID]; ok {
				task = &t
			}
			line := rolloutGroup(s.tok, RolloutKindTrain, g, task, b.adv[off:off+n])
			line.Stage, line.Step = s.stage.Name, step
			lines = append(lines, line)
		}
		off += n
	}
	return s.rollouts.write(lines...)
}

// logEval writes the greedy completions of the first rl.log_samples evaluation tasks, after step completed steps.
func (s *rlStage) logEval(step int, samples []TaskSample) error {
	if s.rollouts == nil {
		return nil
	}
	lines := make([]any, 0, s.rc.LogSamples)
	for _, ts := range samples[:min(len(samples), s.rc.LogSamples)] {
		lines = append(lines, RolloutEval{Kind: RolloutKindEval, Stage: s.stage.Name, Step: step, Env: s.rc.Env, TaskSample: ts})
	}
	return s.rollouts.write(lines...)
}
