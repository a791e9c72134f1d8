// copy.go implements the copy family, a pre-training curriculum for content-based copying: the prompt lists
// random strings of random lengths ("Repeat: 80417 Quarvelt 3306921"), and the worked solution repeats them,
// once in the reasoning and once in the answer. Because the strings are random and their lengths vary, the
// next character of a repetition can be found only by looking up where the current one stood in the prompt
// and reading the character after it: the induction-head mechanism (Olsson et al., 2022, "In-context
// Learning and Induction Heads"), which small transformers form within a few hundred steps on such data.
// The tool environments need exactly this to copy an operand into a call and a tool result into the answer;
// a policy pre-trained on their episodes alone, whose copy targets are a few percent of the tokens, copies by
// fixed offset instead (README, "agentic RL"). Here almost every assistant token is a copy target.
//
// Params (all optional):
//
//	items    strings per task, drawn uniformly from 1..items (default 3, 1..8)
//	min_len  shortest string (default 3, 1..32)
//	max_len  longest string (default 12, min_len..32); each string's length is uniform in [min_len, max_len]
//	kinds    comma list of the kinds of string, drawn in equal shares (repeats weight; default digits,word,name):
//	         digits  min_len..max_len digits, the first not 0
//	         word    a capital and lowercase letters, min_len..max_len in all
//	         name    1..3 syllables of the search collection's names ("Zarrrow"): repetitive strings, where the
//	                 current character alone does not say where the copy stands, so the lookup must match a
//	                 longer context (its length is the syllables')
//
// The verifier wants the strings exactly, separated by single spaces. IDs are "copy:" and the strings; Meta
// holds strings (their number).

package envs

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// Copy is the copy family. Build it with NewCopy or New("copy", ...).
type Copy struct {
	items, minLen, maxLen int
	kinds                 []string
	heldOut               float64
	reward                RewardOptions
}

var _ interface {
	Family
	Drawer
} = (*Copy)(nil)

// NewCopy builds the copy family from opts.
func NewCopy(opts Options) (*Copy, error) {
	h, r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := newParams("copy", opts.Params)
	c := &Copy{heldOut: h, reward: r}
	c.items = p.int("items", 3, 1, 8)
	c.minLen = p.int("min_len", 3, 1, 32)
	c.maxLen = p.int("max_len", 12, 1, 32)
	c.kinds = p.list("kinds", []string{"digits", "word", "name"}, []string{"digits", "word", "name"})
	if c.maxLen < c.minLen {
		p.fail("max_len", "%d is below min_len %d", c.maxLen, c.minLen)
	}
	if err := p.done(); err != nil {
		return nil, err
	}
	if err := probeSplits("copy", c, h); err != nil {
		return nil, err
	}
	return c, nil
}

// Name returns "copy".
func (c *Copy) Name() string { return "copy" }

// Sample draws a task of split.
func (c *Copy) Sample(rng *rand.Rand, split data.Split) Task {
	return sampleSplit(c, rng, split, c.heldOut)
}

// copyString draws one string of kind: n digits (the first not 0), a capitalised lowercase word of n
// letters, or a name of 1..3 syllables (n unused).
func copyString(rng *rand.Rand, kind string, n int) string {
	if kind == "name" {
		return nameFrom(rng, 1+rng.IntN(3))
	}
	b := make([]byte, n)
	if kind == "digits" {
		for i := range b {
			b[i] = '0' + byte(rng.IntN(10))
		}
		if b[0] == '0' {
			b[0] = '1' + byte(rng.IntN(9))
		}
		return string(b)
	}
	for i := range b {
		b[i] = 'a' + byte(rng.IntN(26))
	}
	b[0] -= 'a' - 'A'
	return string(b)
}

// Draw draws a task regardless of the split: 1..items strings, each of a kind drawn from kinds.
func (c *Copy) Draw(rng *rand.Rand) Task {
	strs := make([]string, 1+rng.IntN(c.items))
	for i := range strs {
		strs[i] = copyString(rng, c.kinds[rng.IntN(len(c.kinds))], c.minLen+rng.IntN(c.maxLen-c.minLen+1))
	}
	s := strings.Join(strs, " ")
	return Task{ID: "copy:" + s, Family: "copy", Prompt: "Repeat: " + s, Answer: s, Meta: map[string]string{"strings": strconv.Itoa(len(strs))}}
}

// Verify grades the final answer: the strings exactly.
func (c *Copy) Verify(t Task, completion, finishReason string) Reward {
	return score(c.reward, completion, finishReason, func(ans string) bool { return strings.TrimSpace(ans) == t.Answer })
}

// Solution repeats the strings in the reasoning and in the answer.
func (c *Copy) Solution(t Task) (reasoning, answer string) {
	if t.Meta == nil { // a task this family did not make
		return "", t.Answer
	}
	return t.Answer, t.Answer
}
