// decode.go measures the inference engine's decoding (BenchDecode): B sequences decoded together per batched
// engine step (model.Batch), tokens per second and per CPU second, prefill rate and GEMM FLOPs per token.

package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sparrow-rl/sparrow/internal/cputime"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// DecodeResult is the outcome of BenchDecode; rates are medians over the repetitions.
type DecodeResult struct {
	Env
	Params       int `json:"params"`
	ActiveParams int `json:"active_params"`
	PromptTokens int `json:"prompt_tokens"`
	Batch        int `json:"batch"`  // sequences decoded together
	Tokens       int `json:"tokens"` // generated per repetition and sequence
	Reps         int `json:"reps"`

	TokensPerS float64 `json:"tokens_per_s"` // generated tokens of all sequences / decode time (prefill excluded)
	// TokensPerCPUS is generated tokens / process CPU seconds (user + system, all threads) of the decode: on a
	// shared machine it does not count the time the process waits for a core (0 without getrusage).
	TokensPerCPUS     float64 `json:"tokens_per_cpu_s"`
	MSPerStep         float64 `json:"ms_per_step"` // one batched step: one token for each of the batch's sequences
	MSPerToken        float64 `json:"ms_per_token"`
	PrefillTokensPerS float64 `json:"prefill_tokens_per_s"`
	GemmFlopsPerToken float64 `json:"gemm_flops_per_token"` // mean over the generated tokens (attention grows with position)
	GFLOPS            float64 `json:"gflops"`               // gemm_flops_per_token · tokens_per_s
	AllocBytesPerTok  float64 `json:"alloc_bytes_per_token"`
	Weights           string  `json:"weights"`
	Sample            string  `json:"sample"` // the first repetition's first sequence's first generated tokens as text (random weights: gibberish)
}

// BenchDecode measures the inference engine: per repetition, the prompt prefilled token by token into one
// session and copied into DecodeBatch sessions, then Tokens decode steps of all of them together
// (model.Batch.Step). The first sequence decodes greedily (argmax), the others sample at temperature 1 from
// their own seeded generators, so that the rows of a batch differ and route to different experts as the
// completions of a group do.
func BenchDecode(opts BenchOptions) (DecodeResult, error) {
	s, err := newBenchSetup(opts)
	if err != nil {
		return DecodeResult{}, err
	}
	defer s.restore()
	o, log, mc := s.opts, s.opts.Log, s.cfg.Model
	B := max(o.DecodeBatch, 1)
	prompt := make([]int32, 0, len(o.Prompt))
	for _, b := range []byte(o.Prompt) {
		prompt = append(prompt, int32(b))
	}
	if o.Tokens < 2 {
		return DecodeResult{}, fmt.Errorf("bench: decode needs at least 2 tokens, got %d", o.Tokens)
	}
	maxLen := len(prompt) + o.Tokens
	if maxLen > mc.MaxPositionEmbeddings {
		return DecodeResult{}, fmt.Errorf("bench: prompt %d + %d tokens exceed model.max_position_embeddings %d", len(prompt), o.Tokens, mc.MaxPositionEmbeddings)
	}
	p := model.NewParams(mc)
	p.Init(s.seed)
	d, err := newDecodeBench(model.NewEngine(p), prompt, B, maxLen, s.seed)
	if err != nil {
		return DecodeResult{}, fmt.Errorf("bench: %w", err)
	}
	log.Info("bench decode", "config", o.Config, "prompt_tokens", len(prompt), "batch", B, "tokens", o.Tokens)
	// One untimed pass records the GEMM FLOPs of the decode steps.
	if err := d.prefill(); err != nil {
		return DecodeResult{}, err
	}
	rec, err := RecordGemms(func() error { return d.decode(o.Tokens) })
	if err != nil {
		return DecodeResult{}, err
	}
	decodeFlops := rec.TotalFlops()
	for i := 0; i < o.Warmup; i++ {
		if _, _, _, err := d.rep(o.Tokens); err != nil {
			return DecodeResult{}, err
		}
	}
	var pre, dec, cpu []float64
	var sample string
	var m0, m1 runtime.MemStats
	var allocB uint64
	for r := 0; r < o.Reps; r++ {
		runtime.ReadMemStats(&m0)
		pt, dt, ct, err := d.rep(o.Tokens)
		if err != nil {
			return DecodeResult{}, err
		}
		runtime.ReadMemStats(&m1)
		allocB += m1.TotalAlloc - m0.TotalAlloc
		if r == 0 {
			sample = tokenText(d.generated[:min(len(d.generated), sampleTokens)])
		}
		pre, dec = append(pre, float64(len(prompt))/pt), append(dec, float64(B*(o.Tokens-1))/dt)
		if ct > 0 {
			cpu = append(cpu, float64(B*(o.Tokens-1))/ct)
		}
		log.Info("bench decode", "rep", r+1, "of", o.Reps, "tokens_per_s", math.Round(dec[len(dec)-1]))
	}
	if err := profileRuns(o, func() error { _, _, _, err := d.rep(o.Tokens); return err }); err != nil {
		return DecodeResult{}, err
	}
	total, active := p.Count()
	// Tokens-1 engine steps produce the Tokens generated tokens of each sequence after the prompt's last step
	// (whose logits choose the first); the rate counts engine steps × sequences, the unit of the cost.
	tps := median(dec)
	perTok := float64(decodeFlops) / float64(max(B*(o.Tokens-1), 1))
	return DecodeResult{Env: s.env(), Params: total, ActiveParams: active, PromptTokens: len(prompt), Batch: B, Tokens: o.Tokens,
		Reps: o.Reps, TokensPerS: tps, TokensPerCPUS: medianOr0(cpu), MSPerStep: 1e3 * float64(B) / tps, MSPerToken: 1e3 / tps, PrefillTokensPerS: median(pre),
		GemmFlopsPerToken: perTok, GFLOPS: perTok * tps / 1e9,
		AllocBytesPerTok: float64(allocB) / float64(o.Reps*(len(prompt)+B*(o.Tokens-1))),
		Weights:          fmt.Sprintf("random init (seed %d); the cost per token does not depend on the weights", s.seed),
		Sample:           sample}, nil
}

// decodeBench is the state of BenchDecode: a prefix session, the batch's sessions and their generators.
type decodeBench struct {
	prompt    []int32
	prefix    *model.Session
	sess      []*model.Session
	batch     *model.Batch
	rngs      []*rand.Rand
	seed      uint64
	in        []model.DecodeInput
	sampler   rollout.Sampler
	generated []int32 // the first sequence's tokens
}

func newDecodeBench(e *model.Engine, prompt []int32, B, maxLen int, seed uint64) (*decodeBench, error) {
	d := &decodeBench{prompt: prompt, seed: seed, rngs: make([]*rand.Rand, B), in: make([]model.DecodeInput, B),
		sampler: rollout.Sampler{P: rollout.SamplingParams{Temperature: 1, TopP: 1}}}
	var err error
	if d.prefix, err = e.NewSession(maxLen); err != nil {
		return nil, err
	}
	for range B {
		s, err := e.NewSession(maxLen)
		if err != nil {
			return nil, err
		}
		d.sess = append(d.sess, s)
	}
	if d.batch, err = e.NewBatch(B); err != nil {
		return nil, err
	}
	return d, nil
}

// prefill decodes the prompt into the prefix session token by token and copies it to every sequence.
func (d *decodeBench) prefill() error {
	d.prefix.Reset()
	for i, t := range d.prompt {
		if err := d.prefix.Step(t, nil); err != nil {
			return fmt.Errorf("bench: prefill position %d: %w", i, err)
		}
	}
	for i, s := range d.sess {
		if err := s.CopyFrom(d.prefix); err != nil {
			return err
		}
		d.rngs[i] = rand.New(rand.NewPCG(d.seed, uint64(i)))
	}
	d.generated = d.generated[:0]
	return nil
}

// decode chooses n tokens per sequence with n−1 batched steps (the last token is chosen; feeding it would
// only fill the caches).
func (d *decodeBench) decode(n int) error {
	for i := 0; i < n; i++ {
		for j, s := range d.sess {
			var next int32
			if j == 0 {
				next = argmax(s.Logits)
				d.generated = append(d.generated, next)
			} else {
				next, _, _ = d.sampler.Draw(s.Logits, d.rngs[j])
			}
			d.in[j] = model.DecodeInput{S: s, Token: next}
		}
		if i == n-1 {
			break
		}
		if err := d.batch.Step(d.in); err != nil {
			return fmt.Errorf("bench: decode step %d: %w", i, err)
		}
	}
	return nil
}

// rep runs one repetition and returns the prefill and decode durations and the decode's CPU seconds.
func (d *decodeBench) rep(n int) (float64, float64, float64, error) {
	t0 := time.Now()
	if err := d.prefill(); err != nil {
		return 0, 0, 0, err
	}
	t1, c1 := time.Now(), cputime.Process()
	err := d.decode(n)
	return t1.Sub(t0).Seconds(), time.Since(t1).Seconds(), (cputime.Process() - c1).Seconds(), err
}

// medianOr0 is the median of x, 0 when x is empty.
func medianOr0(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	return median(x)
}

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

// tokenText renders byte tokens as text and any other id as <id>.
func tokenText(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		if id >= 0 && id < 128 && strconv.IsPrint(rune(id)) {
			b.WriteByte(byte(id))
		} else {
			fmt.Fprintf(&b, "<%d>", id)
		}
	}
	return b.String()
}
