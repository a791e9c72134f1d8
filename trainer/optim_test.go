// Tests of the AdamW optimiser: hand-computed golden steps, a float64 textbook
// reference over many steps, decay and freezing rules, and exact state
// round-trips and their error messages.
package trainer

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// TestAdamWGolden checks two steps on a 3-element parameter against values
// worked out by hand with the torch.optim.AdamW formulas (β1=0.9, β2=0.999,
// ε=1e-8, wd=0.01, lr=0.1):
//
//	step 1, g=0.5:  p=1·0.999=0.999, m=0.05, v=0.00025, m̂=0.5, √v̂=0.5,
//	                p=0.999−0.1·0.5/(0.5+1e-8)=0.899000002
//	step 1, g=−1:   p=−1.998, m̂=−1, √v̂=1, p=−1.998+0.1/(1+1e-8)=−1.898000001
//	step 1, g=0:    moments stay 0, only the decay acts: p=0.5·0.999=0.4995
//	step 2, g=0.25: p=0.899000002·0.999=0.898101002, m=0.07, v=0.00031225,
//	                m̂=0.07/0.19=0.368421, √v̂=√(0.00031225/0.001999)=0.395225,
//	                p=0.898101002−0.1·0.368421/0.395225=0.804883040
//	step 2, g=0.5:  p=−1.896101999, m=−0.04, v=0.001249, m̂=−0.210526,
//	                √v̂=0.790451, p=−1.896101999+0.026633702=−1.869468297
//	step 2, g=0:    p=0.4995·0.999=0.4990005
func TestAdamWGolden(t *testing.T) {
	p := []float32{1, -2, 0.5}
	g := make([]float32, 3)
	o := NewAdamW([]ParamGroup{{Name: "w", Value: p, Grad: g, Decay: true}}, 0.9, 0.999, 1e-8, 0.01)
	steps := []struct {
		grad []float32
		want []float64
		m, v []float64
	}{
		{[]float32{0.5, -1, 0}, []float64{0.899000002, -1.898000001, 0.4995}, []float64{0.05, -0.1, 0}, []float64{0.00025, 0.001, 0}},
		{[]float32{0.25, 0.5, 0}, []float64{0.8048830404754623, -1.869468297369903, 0.4990005}, []float64{0.07, -0.04, 0}, []float64{0.00031225, 0.001249, 0}},
	}
	for si, s := range steps {
		copy(g, s.grad)
		o.Update(0.1)
		if o.Step != int64(si+1) {
			t.Fatalf("step %d: Step=%d", si+1, o.Step)
		}
		for i := range p {
			if d := math.Abs(float64(p[i]) - s.want[i]); d > 2e-7 {
				t.Errorf("step %d: p[%d]=%.9f, want %.9f (|Δ|=%g)", si+1, i, p[i], s.want[i], d)
			}
			if d := math.Abs(float64(o.expAvg[0][i]) - s.m[i]); d > 1e-8 {
				t.Errorf("step %d: exp_avg[%d]=%.9g, want %.9g", si+1, i, o.expAvg[0][i], s.m[i])
			}
			if d := math.Abs(float64(o.expSq[0][i]) - s.v[i]); d > 1e-10 {
				t.Errorf("step %d: exp_avg_sq[%d]=%.9g, want %.9g", si+1, i, o.expSq[0][i], s.v[i])
			}
		}
	}
}

// refAdamW is the textbook AdamW in float64 throughout.
type refAdamW struct {
	p, m, v []float64
	t       int
}

func (r *refAdamW) step(g []float64, lr, b1, b2, eps, wd float64, decay bool) {
	r.t++
	for i := range r.p {
		if decay {
			r.p[i] -= lr * wd * r.p[i]
		}
		r.m[i] = b1*r.m[i] + (1-b1)*g[i]
		r.v[i] = b2*r.v[i] + (1-b2)*g[i]*g[i]
		mh := r.m[i] / (1 - math.Pow(b1, float64(r.t)))
		vh := r.v[i] / (1 - math.Pow(b2, float64(r.t)))
		r.p[i] -= lr * mh / (math.Sqrt(vh) + eps)
	}
}

// TestAdamWReference runs 50 steps with random gradients and a varying learning
// rate on a decayed and an undecayed group, next to the float64 textbook formula.
func TestAdamWReference(t *testing.T) {
	const n, steps = 7, 50
	b1, b2, eps, wd := 0.9, 0.95, 1e-8, 0.1
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name  string
		decay bool
	}{{"decayed", true}, {"undecayed", false}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := make([]float32, n)
			g := make([]float32, n)
			ref := &refAdamW{p: make([]float64, n), m: make([]float64, n), v: make([]float64, n)}
			for i := range p {
				p[i] = float32(rng.NormFloat64())
				ref.p[i] = float64(p[i])
			}
			o := NewAdamW([]ParamGroup{{Name: "w", Value: p, Grad: g, Decay: c.decay}}, b1, b2, eps, wd)
			g64 := make([]float64, n)
			for s := 0; s < steps; s++ {
				for i := range g {
					g[i] = float32(rng.NormFloat64() * 0.1)
					g64[i] = float64(g[i])
				}
				lr := 1e-2 * float64(s+1) / steps
				o.Update(lr)
				ref.step(g64, lr, b1, b2, eps, wd, c.decay)
			}
			for i := range p {
				if d := math.Abs(float64(p[i]) - ref.p[i]); d > 1e-5*(1+math.Abs(ref.p[i])) {
					t.Errorf("p[%d]=%.8f, reference %.8f", i, p[i], ref.p[i])
				}
			}
		})
	}
}

// TestAdamWDecayAndFrozen checks that weight decay only shrinks Decay groups
// (zero gradient: the Adam term vanishes) and that frozen groups are untouched,
// including their step counter, so their bias correction restarts correctly.
func TestAdamWDecayAndFrozen(t *testing.T) {
	decayed := []float32{2, -4}
	plain := []float32{2, -4}
	frozen := []float32{2, -4}
	groups := []ParamGroup{
		{Name: "decayed", Value: decayed, Grad: make([]float32, 2), Decay: true},
		{Name: "plain", Value: plain, Grad: make([]float32, 2)},
		{Name: "frozen", Value: frozen, Grad: []float32{1, 1}, Decay: true, Frozen: true},
	}
	o := NewAdamW(groups, 0.9, 0.999, 1e-8, 0.5)
	o.Update(0.1) // decay factor 1 − 0.1·0.5 = 0.95
	want := []float32{1.9, -3.8}
	for i := range decayed {
		if math.Abs(float64(decayed[i]-want[i])) > 1e-6 {
			t.Errorf("decayed[%d]=%v, want %v", i, decayed[i], want[i])
		}
		if plain[i] != []float32{2, -4}[i] {
			t.Errorf("plain[%d]=%v changed without decay and with zero gradient", i, plain[i])
		}
		if frozen[i] != []float32{2, -4}[i] || o.expAvg[2][i] != 0 || o.expSq[2][i] != 0 {
			t.Errorf("frozen group changed: value %v, moments %v %v", frozen[i], o.expAvg[2][i], o.expSq[2][i])
		}
	}
	if o.steps[2] != 0 || o.steps[0] != 1 {
		t.Errorf("group steps %v, want [1 1 0]", o.steps)
	}
	// Unfrozen, the group takes its first step with full bias correction:
	// |Δp| = lr·|m̂|/(√v̂+ε) ≈ lr on top of the decay.
	if !o.SetFrozen("frozen", false) {
		t.Fatal("SetFrozen did not find the group")
	}
	o.Update(0.1)
	if got, want := float64(frozen[0]), 2*0.95-0.1; math.Abs(got-want) > 1e-6 {
		t.Errorf("first step after unfreezing: p=%v, want %v", got, want)
	}
	if o.Step != 2 || o.steps[2] != 1 {
		t.Errorf("Step=%d group step=%d, want 2 and 1", o.Step, o.steps[2])
	}
}

func newTestGroups(seed uint64) []ParamGroup {
	rng := rand.New(rand.NewPCG(seed, 7))
	sizes := []int{5, 3, 8}
	gs := make([]ParamGroup, len(sizes))
	for i, n := range sizes {
		gs[i] = ParamGroup{Name: []string{"a.weight", "a.norm", "b.weight"}[i], Value: make([]float32, n), Grad: make([]float32, n), Decay: i != 1}
		for j := range gs[i].Value {
			gs[i].Value[j] = float32(rng.NormFloat64())
		}
	}
	return gs
}

// fillGrads sets deterministic pseudo-random gradients for step s.
func fillGrads(gs []ParamGroup, s int) {
	rng := rand.New(rand.NewPCG(uint64(s), 99))
	for _, g := range gs {
		for j := range g.Grad {
			g.Grad[j] = float32(rng.NormFloat64())
		}
	}
}

// TestAdamWResumeExact: N steps, save, load into a fresh optimiser over a copy
// of the parameters, N more steps must equal 2N straight steps bit for bit.
func TestAdamWResumeExact(t *testing.T) {
	const n = 6
	lr := func(s int) float64 { return LR("cosine", 3e-3, s, 2, 2*n, 0.1) }
	straight := newTestGroups(1)
	os := NewAdamW(straight, 0.9, 0.95, 1e-8, 0.1)
	for s := 0; s < 2*n; s++ {
		if s == 3 {
			os.SetFrozen("a.norm", true)
		}
		if s == 5 {
			os.SetFrozen("a.norm", false)
		}
		fillGrads(straight, s)
		os.Update(lr(s))
	}

	first := newTestGroups(1)
	o1 := NewAdamW(first, 0.9, 0.95, 1e-8, 0.1)
	for s := 0; s < n; s++ {
		if s == 3 {
			o1.SetFrozen("a.norm", true)
		}
		if s == 5 {
			o1.SetFrozen("a.norm", false)
		}
		fillGrads(first, s)
		o1.Update(lr(s))
	}
	state := o1.State()
	// The saved state must not alias the live moments.
	o1.expAvg[0][0] += 1

	resumed := newTestGroups(1)
	for i := range resumed {
		copy(resumed[i].Value, first[i].Value)
	}
	o2 := NewAdamW(resumed, 0.9, 0.95, 1e-8, 0.1)
	if err := o2.LoadState(state); err != nil {
		t.Fatal(err)
	}
	if o2.Step != n {
		t.Fatalf("resumed Step=%d, want %d", o2.Step, n)
	}
	for s := n; s < 2*n; s++ {
		fillGrads(resumed, s)
		o2.Update(lr(s))
	}
	for i := range straight {
		for j := range straight[i].Value {
			a, b := straight[i].Value[j], resumed[i].Value[j]
			if math.Float32bits(a) != math.Float32bits(b) {
				t.Errorf("%s[%d]: straight %v, resumed %v", straight[i].Name, j, a, b)
			}
		}
	}
}

// TestAdamWStateNamesAndSteps checks the exported tensor names and the exact
// two-word step encoding, including steps beyond float32's exact integer range.
func TestAdamWStateNamesAndSteps(t *testing.T) {
	o := NewAdamW(newTestGroups(3), 0.9, 0.95, 1e-8, 0)
	o.Step = 1<<24 + 3
	st := o.State()
	wantNames := []string{"step", "a.weight.exp_avg", "a.weight.exp_avg_sq", "a.weight.step",
		"a.norm.exp_avg", "a.norm.exp_avg_sq", "a.norm.step", "b.weight.exp_avg", "b.weight.exp_avg_sq", "b.weight.step"}
	if len(st) != len(wantNames) {
		t.Fatalf("%d tensors, want %d", len(st), len(wantNames))
	}
	for i, n := range wantNames {
		if st[i].Name != n {
			t.Errorf("tensor %d is %q, want %q", i, st[i].Name, n)
		}
	}
	if st[0].Data[0] != 1 || st[0].Data[1] != 3 {
		t.Errorf("step words %v, want [1 3]", st[0].Data)
	}
	o2 := NewAdamW(newTestGroups(3), 0.9, 0.95, 1e-8, 0)
	if err := o2.LoadState(st); err != nil {
		t.Fatal(err)
	}
	if o2.Step != 1<<24+3 {
		t.Errorf("Step=%d after load", o2.Step)
	}
}

// TestAdamWLoadStateErrors checks that bad states are refused with the
// offending tensor named and that the optimiser is left unchanged.
func TestAdamWLoadStateErrors(t *testing.T) {
	good := func() []NamedTensor {
		o := NewAdamW(newTestGroups(4), 0.9, 0.95, 1e-8, 0)
		fillGrads(o.groups, 0)
		o.Update(1e-3)
		return o.State()
	}
	drop := func(name string) func([]NamedTensor) []NamedTensor {
		return func(st []NamedTensor) []NamedTensor {
			out := st[:0]
			for _, t := range st {
				if t.Name != name {
					out = append(out, t)
				}
			}
			return out
		}
	}
	cases := []struct {
		name   string
		mutate func([]NamedTensor) []NamedTensor
		want   string
	}{
		{"missing moment", drop("a.norm.exp_avg_sq"), `missing tensor "a.norm.exp_avg_sq"`},
		{"missing step", drop("step"), `missing tensor "step"`},
		{"missing group step", drop("b.weight.step"), `missing tensor "b.weight.step"`},
		{"short moment", func(st []NamedTensor) []NamedTensor {
			st[1].Data, st[1].Shape = st[1].Data[:4], []int{4}
			return st
		}, `tensor "a.weight.exp_avg" has shape [4] and 4 values, want 5`},
		{"shape disagrees with data", func(st []NamedTensor) []NamedTensor {
			st[2].Shape = []int{2, 3}
			return st
		}, `tensor "a.weight.exp_avg_sq" has shape [2 3]`},
		{"extra tensor", func(st []NamedTensor) []NamedTensor {
			return append(st, NamedTensor{Name: "c.weight.exp_avg", Shape: []int{1}, Data: []float32{0}})
		}, `unexpected tensor "c.weight.exp_avg"`},
		{"duplicate", func(st []NamedTensor) []NamedTensor { return append(st, st[1]) }, `tensor "a.weight.exp_avg" appears twice`},
		{"fractional step", func(st []NamedTensor) []NamedTensor {
			st[0].Data = []float32{0, 1.5}
			return st
		}, `tensor "step"`},
		{"group ahead of global", func(st []NamedTensor) []NamedTensor {
			st[3].Data = []float32{0, 9}
			return st
		}, `"a.weight.step" counts 9 steps, more than the global step 1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := NewAdamW(newTestGroups(4), 0.9, 0.95, 1e-8, 0)
			err := o.LoadState(c.mutate(good()))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %s", err, c.want)
			}
			if o.Step != 0 || o.expAvg[0][0] != 0 {
				t.Errorf("optimizer modified by a refused state: Step=%d", o.Step)
			}
		})
	}
}

// TestNewAdamWPanics checks that malformed groups are refused at construction.
func TestNewAdamWPanics(t *testing.T) {
	cases := []struct {
		name   string
		groups []ParamGroup
		beta1  float64
	}{
		{"grad length", []ParamGroup{{Name: "w", Value: make([]float32, 2), Grad: make([]float32, 1)}}, 0.9},
		{"duplicate name", []ParamGroup{{Name: "w"}, {Name: "w"}}, 0.9},
		{"reserved name", []ParamGroup{{Name: "step"}}, 0.9},
		{"beta1 out of range", []ParamGroup{{Name: "w"}}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			NewAdamW(c.groups, c.beta1, 0.999, 1e-8, 0)
		})
	}
}

// TestAdamWUpdateAllocs checks that a step allocates nothing.
func TestAdamWUpdateAllocs(t *testing.T) {
	o := NewAdamW(newTestGroups(5), 0.9, 0.95, 1e-8, 0.1)
	fillGrads(o.groups, 1)
	if a := testing.AllocsPerRun(10, func() { o.Update(1e-3) }); a != 0 {
		t.Errorf("Update allocates %v times per step", a)
	}
}

// TestAdamWChunkedEqualsSerial: a group larger than one chunk is updated by the kernel workers in chunks;
// the result must equal the one-worker update bit for bit (the update is elementwise).
func TestAdamWChunkedEqualsSerial(t *testing.T) {
	n := 3*adamwChunk + 5
	mk := func() []ParamGroup {
		rng := rand.New(rand.NewPCG(11, 12))
		g := ParamGroup{Name: "big.weight", Value: make([]float32, n), Grad: make([]float32, n), Decay: true}
		for j := range g.Value {
			g.Value[j] = float32(rng.NormFloat64())
		}
		return []ParamGroup{g}
	}
	run := func(threads int) []float32 {
		prev := kernels.Threads()
		kernels.SetThreads(threads)
		defer kernels.SetThreads(prev)
		o := NewAdamW(mk(), 0.9, 0.95, 1e-8, 0.1)
		for s := 1; s <= 3; s++ {
			fillGrads(o.groups, s)
			o.Update(1e-3)
		}
		return o.groups[0].Value
	}
	one, two := run(1), run(2)
	for i := range one {
		if math.Float32bits(one[i]) != math.Float32bits(two[i]) {
			t.Fatalf("element %d: one worker %v, two workers %v", i, one[i], two[i])
		}
	}
}
