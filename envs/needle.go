// needle.go implements the needle family, the multi-key needle-in-a-haystack task of RULER (Hsieh et al.,
// "RULER: What's the Real Context Size of Your Long-Context Language Models?", 2024, niah_multikey_1): a
// haystack of RULER's noise sentences, one per line, with a few needle lines
// "The magic number for K is 4831." at random places, then a question about one of the keys:
//
//	...\nThe sky is blue.\nThe magic number for K is 4831.\nHere we go.\n...\nWhat is the magic number for K?
//
// The answer (4831) depends on a handful of tokens far back, so the task shows whether an attention that
// looks at k keys per query (DSA's top-k) keeps the ones that matter; unlike kvretrieval, whose keys are
// random strings that a small model must learn to match character by character, a key is one capital letter.
// The worked solution is the lookup, "K is 4831": the key of the question, then the number after it. (With
// the whole needle line as the reasoning the default model had not learned to copy the question's key after
// 500 steps; with "K is 4831" its answer loss kept falling, to 3 % accuracy at step 1000; with no reasoning
// at all it learned no faster.)
//
// Params (all optional):
//
//	length    bytes of the haystack, needles included (default 1024, 64..65536)
//	length_min  with length_min < length, each task draws its haystack's bytes uniformly from [length_min,
//	          length] (default length: fixed), so that one corpus mixes short and long haystacks (a length
//	          curriculum in one stage: the short ones teach the lookup, the long ones stretch it)
//	needles   needle lines in the haystack, each with its own key (default 4, 1..23)
//	digits    digits of a magic number (default 4, 1..9; no leading zero)
//	distance  the asked needle lies in the first 1−distance of the haystack's lines (default 0.5, 0..1)
//	followups questions about the other needles that a pre-training document adds after the task's own
//	          answer (default 0, 0..22; FollowUpper). Tasks, prompts and the verifier are unchanged.
//
// The verifier wants the number exactly (the answer trimmed). IDs are "needle-" and 16 hex digits of the
// prompt's SHA-256. Meta holds key, needles, line (0-based line of the asked needle), lines and gap (bytes
// from the end of the asked needle's line to the question).

package envs

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// needleNoise are RULER's noise sentences (its "noise" haystack).
var needleNoise = []string{
	"The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.",
}

// drawNoise draws noise sentences until they fill at least bytes bytes, one per line (newline counted).
func drawNoise(rng *rand.Rand, bytes int) []string {
	var noise []string
	for size := 0; size < bytes; {
		s := needleNoise[rng.IntN(len(needleNoise))]
		noise = append(noise, s)
		size += len(s) + 1
	}
	return noise
}

// needleKeys is the key vocabulary: capital letters that start no noise sentence and not the question (T,
// H, W). A key is one token of the byte-level tokenizer, so that the model finds a needle by matching one token
// (RULER's keys are words, which a small byte-level model must first learn to match character by character:
// with 24 animal names a 4-layer model still copied the wrong key after 200 steps).
var needleKeys = []string{
	"A", "B", "C", "D", "E", "F", "G", "I", "J", "K", "L", "M",
	"N", "O", "P", "Q", "R", "S", "U", "V", "X", "Y", "Z",
}

// Needle is the needle family. Build it with NewNeedle or New("needle", ...).
type Needle struct {
	length, lengthMin int
	needles, digits   int
	distance          float64
	followups         int
	heldOut           float64
	reward            RewardOptions
}

var _ interface {
	Family
	Drawer
	FollowUpper
} = (*Needle)(nil)

// NewNeedle builds the needle family.
func NewNeedle(opts Options) (*Needle, error) {
	h, r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := newParams("needle", opts.Params)
	n := &Needle{heldOut: h, reward: r}
	n.length = p.int("length", 1024, 64, 65536)
	n.lengthMin = p.int("length_min", n.length, 64, n.length)
	n.needles = p.int("needles", 4, 1, len(needleKeys))
	n.digits = p.int("digits", 4, 1, 9)
	n.distance = p.float("distance", 0.5, 0, 1)
	n.followups = p.int("followups", 0, 0, len(needleKeys)-1)
	if err := p.done(); err != nil {
		return nil, err
	}
	if err := probeSplits("needle", n, h); err != nil {
		return nil, err
	}
	return n, nil
}

// Name returns "needle".
func (n *Needle) Name() string { return "needle" }

// Sample draws a task of split.
func (n *Needle) Sample(rng *rand.Rand, split data.Split) Task {
	return sampleSplit(n, rng, split, n.heldOut)
}

func needleLine(key, value string) string {
	return "The magic number for " + key + " is " + value + "."
}

func needleQuestion(key string) string { return "What is the magic number for " + key + "?" }

// Draw draws a task regardless of the split.
func (n *Needle) Draw(rng *rand.Rand) Task {
	keys := make([]string, n.needles)
	for i, j := range rng.Perm(len(needleKeys))[:n.needles] {
		keys[i] = needleKeys[j]
	}
	// Magic numbers: distinct while there are enough of them (digits 1 has ten).
	lo, span := 0, 10
	if n.digits > 1 {
		lo = 1
		for range n.digits - 1 {
			lo *= 10
		}
		span = 9 * lo
	}
	values := make([]string, n.needles)
	seen := map[string]bool{}
	for i := range values {
		for {
			v := strconv.Itoa(lo + rng.IntN(span))
			if !seen[v] || len(seen) >= span {
				seen[v], values[i] = true, v
				break
			}
		}
	}
	// Lines: noise until the haystack has length bytes with the needles in it.
	size := 0
	for i := range keys {
		size += len(needleLine(keys[i], values[i])) + 1
	}
	length := n.length
	if n.lengthMin < n.length { // drawn last among the task's choices but before the noise it sizes
		length = n.lengthMin + rng.IntN(n.length-n.lengthMin+1)
	}
	noise := drawNoise(rng, length-size)
	total := len(noise) + n.needles
	// The asked needle (index 0) lies in the first 1−distance of the lines; the others anywhere.
	slot := make([]int, total) // slot[line] = needle index + 1, 0 for noise
	last := int(float64(total-1) * (1 - n.distance))
	first := rng.IntN(last + 1)
	slot[first] = 1
	for i := 1; i < n.needles; i++ {
		for {
			j := rng.IntN(total)
			if slot[j] == 0 {
				slot[j] = i + 1
				break
			}
		}
	}
	var sb strings.Builder
	sb.Grow(size + 64)
	gap := 0
	for line, k := 0, 0; line < total; line++ {
		var s string
		if slot[line] > 0 {
			s = needleLine(keys[slot[line]-1], values[slot[line]-1])
		} else {
			s = noise[k]
			k++
		}
		sb.WriteString(s + "\n")
		if line > first {
			gap += len(s) + 1
		}
	}
	var follow []string
	for i := 1; i < n.needles && len(follow) < n.followups; i++ {
		follow = append(follow, keys[i]+"="+values[i])
	}
	prompt := sb.String() + needleQuestion(keys[0])
	return Task{
		ID: "needle-" + hash16(prompt), Family: "needle", Prompt: prompt, Answer: values[0],
		Meta: map[string]string{
			"key": keys[0], "needles": strconv.Itoa(n.needles), "line": strconv.Itoa(first),
			"lines": strconv.Itoa(total), "gap": strconv.Itoa(gap), "followups": strings.Join(follow, ";"),
		},
	}
}

// Solution returns the lookup "K is 4831" and the number (no reasoning for a task without a key).
func (n *Needle) Solution(t Task) (reasoning, answer string) {
	if t.Meta["key"] == "" {
		return "", t.Answer
	}
	return needleLookup(t.Meta["key"], t.Answer), t.Answer
}

// needleLookup is the worked solution: the key of the question, then the number found after it.
func needleLookup(key, value string) string { return key + " is " + value }

// FollowUps returns the questions about the task's other needles (param followups).
func (n *Needle) FollowUps(t Task) []FollowUp {
	if t.Meta["followups"] == "" {
		return nil
	}
	var out []FollowUp
	for _, kv := range strings.Split(t.Meta["followups"], ";") {
		key, value, _ := strings.Cut(kv, "=")
		out = append(out, FollowUp{Question: needleQuestion(key), Reasoning: needleLookup(key, value), Answer: value})
	}
	return out
}

// Verify wants the number exactly.
func (n *Needle) Verify(t Task, completion, finishReason string) Reward {
	return score(n.reward, completion, finishReason, func(ans string) bool {
		return len(ans) <= len(t.Answer)+256 && strings.TrimSpace(ans) == t.Answer
	})
}
