// AdamW optimiser with decoupled weight decay (Loshchilov & Hutter, "Decoupled
// Weight Decay Regularization"), following torch.optim.AdamW step for step:
//
//	p ← p·(1 − lr·wd)                       (only for groups with Decay)
//	m ← β1·m + (1−β1)·g
//	v ← β2·v + (1−β2)·g²
//	p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
//
// Parameters, gradients and both moments are float32; each element's update is
// computed in float64 and rounded once per stored value (kernels.AdamW: AVX2
// four elements at a time, the bits of the scalar loop). The update runs over
// groups, and over chunks of a large group on the kernel workers; every element
// is independent, so it is bit-for-bit deterministic and allocation-free. Frozen groups are skipped entirely: their values, moments
// and step counter are untouched, exactly as PyTorch skips a parameter whose
// gradient is None, so a group frozen for a while (the DSA warm-up freezes the
// backbone) resumes with the bias correction its own moments need.
//
// State() exports the moments as "<name>.exp_avg" and "<name>.exp_avg_sq", each
// group's step as "<name>.step" and the optimiser's global step as "step". A
// step is stored exactly as two float32 words {step / 2^24, step mod 2^24}
// (float32 holds integers exactly only up to 2^24), so step = w[0]·16777216 + w[1].

package trainer

import (
	"fmt"
	"math"
	"sort"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// ParamGroup is one parameter tensor seen by the optimiser: its flat values, the
// gradient of the same length, whether weight decay applies (not for norms and
// biases) and whether the group is frozen (skipped by the optimiser, the norm and
// the clipping).
type ParamGroup struct {
	Name   string
	Value  []float32
	Grad   []float32
	Decay  bool
	Frozen bool
}

// NamedTensor is a named float32 tensor in row-major order, the unit of the
// optimiser state exchanged with checkpoints.
type NamedTensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// AdamW holds the hyper-parameters, the per-group moments and the step counters.
// Step counts the calls to Update.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	Step                           int64

	groups []ParamGroup
	expAvg [][]float32 // first moment per group
	expSq  [][]float32 // second moment per group
	steps  []int64     // updates applied to each group
}

// NewAdamW returns an optimiser over params with zero moments. The params slice
// is retained (not copied): the optimiser reads Value, Grad, Decay and Frozen
// from it at every Update. It panics when
// two groups share a name, a gradient length differs from its value length, or
// a hyper-parameter is out of range (these are programming errors: the config
// is validated before the optimiser is built).
func NewAdamW(params []ParamGroup, beta1, beta2, eps, wd float64) *AdamW {
	if !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps >= 0) || !(wd >= 0) {
		panic(fmt.Sprintf("trainer: AdamW hyper-parameters out of range: beta1=%v beta2=%v eps=%v weight_decay=%v", beta1, beta2, eps, wd))
	}
	o := &AdamW{
		Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: wd,
		groups: params,
		expAvg: make([][]float32, len(params)),
		expSq:  make([][]float32, len(params)),
		steps:  make([]int64, len(params)),
	}
	seen := make(map[string]bool, len(params))
	for i, g := range params {
		if g.Name == "" || g.Name == "step" {
			panic(fmt.Sprintf("trainer: AdamW parameter group %d has reserved or empty name %q", i, g.Name))
		}
		if seen[g.Name] {
			panic(fmt.Sprintf("trainer: AdamW parameter group %q appears twice", g.Name))
		}
		seen[g.Name] = true
		if len(g.Grad) != len(g.Value) {
			panic(fmt.Sprintf("trainer: AdamW parameter group %q has %d values but %d gradients", g.Name, len(g.Value), len(g.Grad)))
		}
		o.expAvg[i] = make([]float32, len(g.Value))
		o.expSq[i] = make([]float32, len(g.Value))
	}
	return o
}

// Groups returns the parameter groups the optimiser updates (shared, not copied).
func (o *AdamW) Groups() []ParamGroup { return o.groups }

// SetFrozen freezes or unfreezes the group with the given name and reports
// whether it exists.
func (o *AdamW) SetFrozen(name string, frozen bool) bool {
	for i := range o.groups {
		if o.groups[i].Name == name {
			o.groups[i].Frozen = frozen
			return true
		}
	}
	return false
}

// Update applies one AdamW step with learning rate lr to every non-frozen group
// and increments Step.
func (o *AdamW) Update(lr float64) {
	o.Step++
	b1, b2, eps := o.Beta1, o.Beta2, o.Eps
	for gi := range o.groups {
		g := &o.groups[gi]
		if g.Frozen {
			continue
		}
		o.steps[gi]++
		t := float64(o.steps[gi])
		bc1 := 1 - math.Pow(b1, t)
		bc2Sqrt := math.Sqrt(1 - math.Pow(b2, t))
		stepSize := lr / bc1
		decay := 1.0
		if g.Decay {
			decay = 1 - lr*o.WeightDecay
		}
		val, grad, m, v := g.Value, g.Grad, o.expAvg[gi], o.expSq[gi]
		if len(val) == 0 {
			continue
		}
		u := kernels.AdamWCoef{B1: b1, B2: b2, Eps: eps, BC2Sqrt: bc2Sqrt, StepSize: stepSize, Decay: decay}
		// elementwise and independent: chunks on the kernel workers give the same bits as one loop (a small
		// group runs inline, without the closure and goroutines of kernels.For)
		chunks := (len(val) + adamwChunk - 1) / adamwChunk
		if chunks < 2 {
			kernels.AdamW(u, val, grad, m, v)
			continue
		}
		kernels.For(chunks, 8*adamwChunk, func(c int) {
			lo, hi := c*adamwChunk, min((c+1)*adamwChunk, len(val))
			kernels.AdamW(u, val[lo:hi], grad[lo:hi], m[lo:hi], v[lo:hi])
		})
	}
}

// adamwChunk is the number of elements one kernel worker updates at a time.
const adamwChunk = 1 << 14

// stepWords encodes a step counter exactly in two float32 words.
func stepWords(s int64) []float32 {
	return []float32{float32(s >> 24), float32(s & (1<<24 - 1))}
}

// wordsStep decodes stepWords, refusing words that are not exact non-negative
// integers in range.
func wordsStep(w []float32) (int64, error) {
	hi, lo := float64(w[0]), float64(w[1])
	if hi < 0 || lo < 0 || lo >= 1<<24 || hi >= 1<<24 || hi != math.Trunc(hi) || lo != math.Trunc(lo) {
		return 0, fmt.Errorf("words %v are not a step counter {step/2^24, step mod 2^24}", w)
	}
	return int64(hi)<<24 | int64(lo), nil
}

// State returns the optimiser state: "step" and, per group in group order,
// "<name>.exp_avg", "<name>.exp_avg_sq" (shape [len(Value)]) and "<name>.step".
// The moment slices are copies, so the caller may serialise them while training
// continues.
func (o *AdamW) State() []NamedTensor {
	out := make([]NamedTensor, 0, 1+3*len(o.groups))
	out = append(out, NamedTensor{Name: "step", Shape: []int{2}, Data: stepWords(o.Step)})
	for i, g := range o.groups {
		n := len(g.Value)
		out = append(out,
			NamedTensor{Name: g.Name + ".exp_avg", Shape: []int{n}, Data: append([]float32(nil), o.expAvg[i]...)},
			NamedTensor{Name: g.Name + ".exp_avg_sq", Shape: []int{n}, Data: append([]float32(nil), o.expSq[i]...)},
			NamedTensor{Name: g.Name + ".step", Shape: []int{2}, Data: stepWords(o.steps[i])},
		)
	}
	return out
}

// LoadState restores a state written by State. Every expected tensor must be
// present with the right element count (any shape whose product matches is
// accepted) and no unexpected tensor may be present; the error names the first
// offending tensor. Nothing is modified unless the whole state is valid.
func (o *AdamW) LoadState(state []NamedTensor) error {
	byName := make(map[string]*NamedTensor, len(state))
	for i := range state {
		t := &state[i]
		if _, dup := byName[t.Name]; dup {
			return fmt.Errorf("optimizer state: tensor %q appears twice", t.Name)
		}
		byName[t.Name] = t
	}
	used := 0
	get := func(name string, n int) ([]float32, error) {
		t, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("optimizer state: missing tensor %q", name)
		}
		count := 1
		for _, d := range t.Shape {
			count *= d
		}
		if count != n || len(t.Data) != n {
			return nil, fmt.Errorf("optimizer state: tensor %q has shape %v and %d values, want %d values", name, t.Shape, len(t.Data), n)
		}
		used++
		return t.Data, nil
	}
	w, err := get("step", 2)
	if err != nil {
		return err
	}
	step, err := wordsStep(w)
	if err != nil {
		return fmt.Errorf("optimizer state: tensor \"step\": %w", err)
	}
	m := make([][]float32, len(o.groups))
	v := make([][]float32, len(o.groups))
	steps := make([]int64, len(o.groups))
	for i, g := range o.groups {
		if m[i], err = get(g.Name+".exp_avg", len(g.Value)); err != nil {
			return err
		}
		if v[i], err = get(g.Name+".exp_avg_sq", len(g.Value)); err != nil {
			return err
		}
		sw, err := get(g.Name+".step", 2)
		if err != nil {
			return err
		}
		if steps[i], err = wordsStep(sw); err != nil {
			return fmt.Errorf("optimizer state: tensor %q: %w", g.Name+".step", err)
		}
		if steps[i] > step {
			return fmt.Errorf("optimizer state: tensor %q counts %d steps, more than the global step %d", g.Name+".step", steps[i], step)
		}
	}
	if used != len(state) {
		extra := make([]string, 0, len(state)-used)
		want := map[string]bool{"step": true}
		for _, g := range o.groups {
			want[g.Name+".exp_avg"], want[g.Name+".exp_avg_sq"], want[g.Name+".step"] = true, true, true
		}
		for name := range byName {
			if !want[name] {
				extra = append(extra, name)
			}
		}
		sort.Strings(extra)
		return fmt.Errorf("optimizer state: unexpected tensor %q (no parameter group of that name)", extra[0])
	}
	o.Step = step
	for i := range o.groups {
		copy(o.expAvg[i], m[i])
		copy(o.expSq[i], v[i])
		o.steps[i] = steps[i]
	}
	return nil
}
