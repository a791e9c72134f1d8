// kv.go implements the kvretrieval family, the long-context task of the DSA work: a context of
// "key=value" lines (random distinct keys and values of key_len lowercase letters and digits) followed by a
// question about one key far back, so that the answer depends on a few distant tokens.
//
//   - single: "...\nValue of k3x9?" → the value of k3x9. Worked solution: "k3x9=q0ad".
//   - multihop: the value of the asked key is another key of the context, whose value may be a key again:
//     "...\nValue of k3x9 after 2 lookups?" → the value reached after that many lookups. Worked solution:
//     "k3x9=m2b7; m2b7=q0ad". Values outside the chain are never keys, so the chain is unique.
//
// Params (all optional):
//
//	kinds     comma list of single, multihop (default both; repeats weight)
//	length    bytes of the key=value context (default 1024, 32..65536); ignored when pairs is set
//	pairs     number of pairs (default 0: length / (2·key_len+2))
//	key_len   characters of a key and of a value (default 4, 2..12; the pairs may use at most half of the
//	          36^key_len words, so that distinct keys and non-key values are always found)
//	distance  the asked pair has at least distance·(pairs−1) pairs after it (default 0.5, 0..1; 1 = the
//	          first pair)
//	hops      lookups of a multihop question (default 2, 2..8); the later keys of the chain lie anywhere
//	filler    bytes of RULER's noise sentences (those of the needle family, one per line) around the pairs'
//	          lines (default 0, 0..65536): the pairs keep their order at random lines of the noise, so that
//	          a few pairs can lie far apart in a long context (RULER's multi-key needle in a haystack with
//	          key=value needles). The asked pair is still chosen among the pairs by distance.
//	filler_min  with filler_min < filler, each task draws its filler bytes uniformly from [filler_min,
//	          filler] (default filler: fixed), so that one corpus mixes short and long contexts
//	followups single-lookup questions about other keys of the same context that a pre-training document
//	          adds after the task's own answer (default 0, 0..64; FollowUpper): one long context then
//	          supervises several answers instead of one. Tasks, prompts and the verifier are unchanged.
//	recall    pairs of the context (other than the asked ones) that a pre-training document re-lists, in
//	          random order, as "key=value" lines after its questions, the worked solution of one more turn
//	          "List the pairs." (default 0, 0..10000; at most all of them; FollowUpper). Each re-listed
//	          value is a lookup of its key, as in the multi-query associative recall of Zoology (Arora et
//	          al., 2023), so one context supervises a lookup every few tokens instead of one per document:
//	          the signal in-context retrieval forms from (a single answer per document left the default
//	          model at chance after 3000 steps). Tasks, prompts and the verifier are unchanged.
//
// The verifier wants the value exactly (the answer trimmed). IDs are "kv-" and 16 hex digits of the
// prompt's SHA-256. Meta holds kind, key, hops, pairs, position (0-based index of the asked pair) and
// gap (bytes from the end of the asked pair's line to the question).

package envs

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// KV is the kvretrieval family. Build it with NewKV or New("kvretrieval", ...).
type KV struct {
	kinds         []string
	pairs, keyLen int
	distance      float64
	hops          int
	followups     int
	recall        int
	filler        int
	fillerMin     int
	heldOut       float64
	reward        RewardOptions
}

var _ interface {
	Family
	Drawer
	FollowUpper
} = (*KV)(nil)

// NewKV builds the kvretrieval family.
func NewKV(opts Options) (*KV, error) {
	h, r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := newParams("kvretrieval", opts.Params)
	k := &KV{heldOut: h, reward: r}
	k.kinds = p.list("kinds", []string{"single", "multihop"}, []string{"single", "multihop"})
	length := p.int("length", 1024, 32, 65536)
	k.pairs = p.int("pairs", 0, 0, 10000)
	k.keyLen = p.int("key_len", 4, 2, 12)
	k.distance = p.float("distance", 0.5, 0, 1)
	k.hops = p.int("hops", 2, 2, 8)
	k.followups = p.int("followups", 0, 0, 64)
	k.recall = p.int("recall", 0, 0, 10000)
	k.filler = p.int("filler", 0, 0, 65536)
	k.fillerMin = p.int("filler_min", k.filler, 0, k.filler)
	if err := p.done(); err != nil {
		return nil, err
	}
	if k.pairs == 0 {
		k.pairs = max(2, length/(2*k.keyLen+2))
	}
	if k.pairs < k.hops+1 {
		k.pairs = k.hops + 1
	}
	if words := math.Pow(float64(len(kvAlphabet)), float64(k.keyLen)); float64(k.pairs) > words/2 {
		return nil, fmt.Errorf("kvretrieval: %d pairs need more than half of the %.0f words of key_len %d: raise key_len or lower length/pairs", k.pairs, words, k.keyLen)
	}
	if err := probeSplits("kvretrieval", k, h); err != nil {
		return nil, err
	}
	return k, nil
}

// Name returns "kvretrieval".
func (k *KV) Name() string { return "kvretrieval" }

// Sample draws a task of split.
func (k *KV) Sample(rng *rand.Rand, split data.Split) Task {
	return sampleSplit(k, rng, split, k.heldOut)
}

const kvAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func (k *KV) randomWord(rng *rand.Rand) string {
	b := make([]byte, k.keyLen)
	for i := range b {
		b[i] = kvAlphabet[rng.IntN(len(kvAlphabet))]
	}
	return string(b)
}

// Draw draws a task regardless of the split.
func (k *KV) Draw(rng *rand.Rand) Task {
	kind := k.kinds[rng.IntN(len(k.kinds))]
	hops := 1
	if kind == "multihop" {
		hops = k.hops
	}
	n := k.pairs
	keys := make([]string, n)
	isKey := make(map[string]bool, n)
	for i := range keys {
		for {
			w := k.randomWord(rng)
			if !isKey[w] {
				keys[i], isKey[w] = w, true
				break
			}
		}
	}
	values := make([]string, n)
	for i := range values {
		for {
			w := k.randomWord(rng)
			if !isKey[w] {
				values[i] = w
				break
			}
		}
	}
	// The asked pair: at least distance·(n−1) pairs after it.
	last := n - 1 - int(math.Ceil(k.distance*float64(n-1)))
	pos := rng.IntN(max(1, last+1))
	chain := []int{pos}
	used := map[int]bool{pos: true}
	for len(chain) < hops {
		j := rng.IntN(n)
		if !used[j] {
			used[j] = true
			chain = append(chain, j)
		}
	}
	for c := 0; c+1 < len(chain); c++ {
		values[chain[c]] = keys[chain[c+1]]
	}
	var sb strings.Builder
	lineLen := 2*k.keyLen + 2
	sb.Grow(n*lineLen + 64)
	for i := range keys {
		sb.WriteString(keys[i] + "=" + values[i] + "\n")
	}
	var steps []string
	for _, c := range chain {
		steps = append(steps, keys[c]+"="+values[c])
	}
	// Follow-up questions (documents only): other keys, drawn after everything above so that the task is
	// the same with or without them.
	follow := otherPairs(rng, keys, values, used, k.followups)
	gap := (n - 1 - pos) * lineLen
	if k.filler > 0 { // drawn after everything above, so that the pairs and follow-ups do not change
		sb.Reset()
		gap = k.withFiller(&sb, rng, keys, values, pos)
	}
	// Re-listed pairs (documents only), drawn last so that the task is the same with or without them.
	recall := otherPairs(rng, keys, values, used, k.recall)
	prompt := sb.String()
	if hops == 1 {
		prompt += "Value of " + keys[pos] + "?"
	} else {
		prompt += "Value of " + keys[pos] + " after " + strconv.Itoa(hops) + " lookups?"
	}
	return Task{
		ID: "kv-" + hash16(prompt), Family: "kvretrieval", Prompt: prompt, Answer: values[chain[len(chain)-1]],
		Meta: map[string]string{
			"kind": kind, "key": keys[pos], "hops": strconv.Itoa(hops), "pairs": strconv.Itoa(n),
			"position": strconv.Itoa(pos), "gap": strconv.Itoa(gap),
			"steps": strings.Join(steps, "; "), "followups": strings.Join(follow, ";"),
			"recall": strings.Join(recall, ";"),
		},
	}
}

// otherPairs draws up to limit pairs "key=value" in random order among those not used by the task's own
// lookups (none and no randomness drawn when limit is 0).
func otherPairs(rng *rand.Rand, keys, values []string, used map[int]bool, limit int) []string {
	if limit == 0 {
		return nil
	}
	var out []string
	for _, j := range rng.Perm(len(keys)) {
		if len(out) == limit {
			break
		}
		if !used[j] {
			out = append(out, keys[j]+"="+values[j])
		}
	}
	return out
}

// withFiller writes the pairs' lines, in their order, at random lines among the task's filler bytes of noise
// sentences, and returns the bytes after the asked pair's line (pair pos) to the end of the context.
func (k *KV) withFiller(sb *strings.Builder, rng *rand.Rand, keys, values []string, pos int) (gap int) {
	filler := k.filler
	if k.fillerMin < k.filler {
		filler = k.fillerMin + rng.IntN(k.filler-k.fillerMin+1)
	}
	noise := drawNoise(rng, filler)
	total := len(noise) + len(keys)
	isPair := make([]bool, total)
	for _, j := range rng.Perm(total)[:len(keys)] {
		isPair[j] = true
	}
	pair, next, pastAsked := 0, 0, false
	for line := range total {
		var s string
		if isPair[line] {
			s = keys[pair] + "=" + values[pair]
			pair++
		} else {
			s = noise[next]
			next++
		}
		sb.WriteString(s + "\n")
		if pastAsked {
			gap += len(s) + 1
		}
		pastAsked = pastAsked || (isPair[line] && pair-1 == pos)
	}
	return gap
}

// Solution returns the lookups and the final value.
func (k *KV) Solution(t Task) (reasoning, answer string) { return t.Meta["steps"], t.Answer }

// FollowUps returns the task's follow-up lookups (param followups): "Value of KEY?" answered by "KEY=VALUE"
// and the value; then, with param recall, the turn "List the pairs." whose worked solution re-lists pairs of
// the context one per line (its answer is empty: the lines are the lookups).
func (k *KV) FollowUps(t Task) []FollowUp {
	var out []FollowUp
	if t.Meta["followups"] != "" {
		for _, kv := range strings.Split(t.Meta["followups"], ";") {
			key, value, _ := strings.Cut(kv, "=")
			out = append(out, FollowUp{Question: "Value of " + key + "?", Reasoning: kv, Answer: value})
		}
	}
	if t.Meta["recall"] != "" {
		lines := strings.ReplaceAll(t.Meta["recall"], ";", "\n")
		out = append(out, FollowUp{Question: kvRecallQuestion, Reasoning: lines})
	}
	return out
}

// kvRecallQuestion asks for the re-listed pairs of a document with param recall.
const kvRecallQuestion = "List the pairs."

// Verify wants the value exactly.
func (k *KV) Verify(t Task, completion, finishReason string) Reward {
	return score(k.reward, completion, finishReason, func(ans string) bool {
		return len(ans) <= len(t.Answer)+256 && strings.TrimSpace(ans) == t.Answer
	})
}
