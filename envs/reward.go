// reward.go implements the reward shaping shared by every family: the completion is split into reasoning
// and answer at "</think>", the family's checker grades the answer, and the reward is the sum of three parts:
//
//	correctness     = Correct (default 1) when the answer is right, else 0; never given to a truncated
//	                  completion (finish_reason "length") nor to one whose format is wrong
//	format          = Format (default 0.1) when the structure is right: the completion was not truncated,
//	                  "</think>" occurs exactly once, no other special literal ("<think>", BOS, EOS, PAD,
//	                  User, Assistant, DSML) occurs in it once a single trailing EOS is removed, and
//	                  the answer after "</think>" is not blank; else 0
//	length_penalty  = −LengthPenalty · min(1, max(0, n − LengthBudget) / LengthBudget), n the completion's
//	                  length in tokens of the byte tokenizer (each special literal counts one); 0 when
//	                  LengthPenalty or LengthBudget is 0. It applies to truncated completions too, and is
//	                  capped at −LengthPenalty so that rewards stay bounded.
//
// Total = correctness + format + length_penalty, so with the defaults a right answer scores 1.1, a wrong but
// well-formed one 0.1, a malformed or truncated one 0.

package envs

import (
	"fmt"
	"math"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// Reward part names.
const (
	PartCorrectness   = "correctness"
	PartFormat        = "format"
	PartLengthPenalty = "length_penalty"
)

// FinishLength is the finish_reason of a completion cut at the length limit.
const FinishLength = "length"

// RewardOptions is the reward shaping (see the file comment for the formulas).
type RewardOptions struct {
	Correct       float64 // reward of a right answer
	Format        float64 // reward of a well-formed completion
	LengthPenalty float64 // λ ≥ 0, the largest penalty for length
	LengthBudget  int     // tokens allowed before the penalty starts; 0 = no penalty
}

// DefaultReward returns Correct 1, Format 0.1 and no length penalty.
func DefaultReward() RewardOptions { return RewardOptions{Correct: 1, Format: 0.1} }

// Validate checks the weights.
func (r RewardOptions) Validate() error {
	for _, w := range []struct {
		name string
		v    float64
	}{{"correct", r.Correct}, {"format", r.Format}, {"length_penalty", r.LengthPenalty}} {
		if math.IsNaN(w.v) || math.IsInf(w.v, 0) || w.v < 0 {
			return fmt.Errorf("reward.%s = %v: want a finite number ≥ 0", w.name, w.v)
		}
	}
	if r.LengthBudget < 0 {
		return fmt.Errorf("reward.length_budget = %d: want ≥ 0", r.LengthBudget)
	}
	return nil
}

var (
	litEOS      = data.SpecialTokens[data.EOS-256]
	litThinkBeg = data.SpecialTokens[data.ThinkBeg-256]
	litThinkEnd = data.SpecialTokens[data.ThinkEnd-256]
)

// ParsedCompletion is a completion split at "</think>".
type ParsedCompletion struct {
	Reasoning string
	Answer    string // the text after "</think>", EOS removed, not trimmed
	// WellFormed reports the format rule of the file comment (truncation aside).
	WellFormed bool
}

// ParseCompletion splits a thinking-mode completion into reasoning and answer. It never panics.
func ParseCompletion(completion string) ParsedCompletion {
	s := strings.TrimSuffix(completion, litEOS)
	i := strings.Index(s, litThinkEnd)
	if i < 0 {
		return ParsedCompletion{Answer: s}
	}
	c := ParsedCompletion{Reasoning: s[:i], Answer: s[i+len(litThinkEnd):]}
	c.WellFormed = strings.TrimSpace(c.Answer) != "" && !strings.Contains(c.Answer, litThinkEnd)
	if c.WellFormed {
		for k, lit := range data.SpecialTokens {
			if 256+k != data.ThinkEnd && strings.Contains(s, lit) {
				c.WellFormed = false
				break
			}
		}
	}
	return c
}

// TokenLength is the length of s in byte-tokenizer tokens, each special literal counting one.
func TokenLength(s string) int {
	n := len(s)
	for _, lit := range data.SpecialTokens {
		if c := strings.Count(s, lit); c > 0 {
			n -= c * (len(lit) - 1)
		}
	}
	return n
}

// score computes the reward of completion; correct grades the trimmed-by-nothing answer text.
func score(opt RewardOptions, completion, finishReason string, correct func(answer string) bool) Reward {
	c := ParseCompletion(completion)
	truncated := finishReason == FinishLength
	ok := false
	if c.WellFormed && !truncated {
		ok = correct(c.Answer)
	}
	r := Reward{Parts: map[string]float64{PartCorrectness: 0, PartFormat: 0, PartLengthPenalty: 0}, Correct: ok}
	if ok {
		r.Parts[PartCorrectness] = opt.Correct
	}
	if c.WellFormed && !truncated {
		r.Parts[PartFormat] = opt.Format
	}
	if opt.LengthPenalty > 0 && opt.LengthBudget > 0 {
		over := float64(TokenLength(completion)-opt.LengthBudget) / float64(opt.LengthBudget)
		if over > 0 {
			r.Parts[PartLengthPenalty] = -opt.LengthPenalty * min(1, over)
		}
	}
	r.Total = r.Parts[PartCorrectness] + r.Parts[PartFormat] + r.Parts[PartLengthPenalty]
	return r
}

// normSpaces trims s and collapses every run of white space to one space.
func normSpaces(s string) string { return strings.Join(strings.Fields(s), " ") }
