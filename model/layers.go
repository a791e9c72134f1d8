// layers.go: the fused kernels of the small layers — embedding lookup, linear (y = x·Wᵀ), RMSNorm on a column
// range, residual add, SwiGLU MLP (dense FFN and shared experts) and masked softmax cross-entropy. Shapes use
// N = B·T tokens; every Linear weight is [out, in] as in Hugging Face checkpoints (dsv32-spec.md §8).

package model

import (
	"fmt"
	"math"

	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

func wantShapes(in []tensor.Shape, n int, name string) error {
	if len(in) != n {
		return fmt.Errorf("%s: want %d inputs, got %d", name, n, len(in))
	}
	return nil
}

// embedKernel: out[n] = W[ids[n]] with W [V, D] and token ids [N] (Int32); out [N, D].
type embedKernel[T Float] struct {
	ids  []int32
	V, D int
}

func (k *embedKernel[T]) Name() string           { return "embed" }
func (k *embedKernel[T]) DiffWRT() []bool        { return []bool{true, false} }
func (k *embedKernel[T]) SetInts(ints [][]int32) { k.ids = ints[1] }
func (k *embedKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 2, "embed"); err != nil {
		return nil, err
	}
	k.V, k.D = in[0][0], in[0][1]
	return tensor.Shape{in[1][0], k.D}, nil
}
func (k *embedKernel[T]) Forward(in [][]T, out []T) error {
	w := in[0]
	for n, id := range k.ids {
		if id < 0 || int(id) >= k.V {
			return fmt.Errorf("token id %d at position %d outside vocabulary [0, %d)", id, n, k.V)
		}
		copy(out[n*k.D:(n+1)*k.D], w[int(id)*k.D:(int(id)+1)*k.D])
	}
	return nil
}
func (k *embedKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	dw := din[0]
	for n, id := range k.ids {
		kernels.Axpy(1, dout[n*k.D:(n+1)*k.D], dw[int(id)*k.D:(int(id)+1)*k.D])
	}
	return nil
}

// linearKernel: y = x·Wᵀ, x [N, In], W [Out, In], y [N, Out].
type linearKernel[T Float] struct {
	name         string
	N, In, Out   int
	diffX, diffW bool
}

func (k *linearKernel[T]) Name() string    { return k.name }
func (k *linearKernel[T]) DiffWRT() []bool { return []bool{k.diffX, k.diffW} }
func (k *linearKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 2, k.name); err != nil {
		return nil, err
	}
	if len(in[0]) != 2 || len(in[1]) != 2 || in[0][1] != in[1][1] {
		return nil, fmt.Errorf("%s: x %v and W %v do not match (W is [out, in])", k.name, in[0], in[1])
	}
	k.N, k.In, k.Out = in[0][0], in[0][1], in[1][0]
	return tensor.Shape{k.N, k.Out}, nil
}
func (k *linearKernel[T]) Forward(in [][]T, out []T) error {
	kernels.Linear(out, in[0], in[1], k.N, k.In, k.Out, false)
	return nil
}
func (k *linearKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	kernels.LinearBackward(din[0], din[1], dout, in[0], in[1], k.N, k.In, k.Out)
	return nil
}

// rmsNormKernel normalises columns [Col0, Col0+W) of x [N, Ld] with scale g [W]; y [N, W].
type rmsNormKernel[T Float] struct {
	name           string
	N, Ld, Col0, W int
	Eps            float64
	rstd           []T
	diffX          bool
}

func (k *rmsNormKernel[T]) Name() string    { return k.name }
func (k *rmsNormKernel[T]) DiffWRT() []bool { return []bool{k.diffX, true} }
func (k *rmsNormKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 2, k.name); err != nil {
		return nil, err
	}
	k.N, k.Ld = in[0][0], in[0][1]
	if k.W == 0 {
		k.W = k.Ld - k.Col0
	}
	if in[1][0] != k.W || k.Col0+k.W > k.Ld {
		return nil, fmt.Errorf("%s: scale %v does not fit columns [%d, %d) of x %v", k.name, in[1], k.Col0, k.Col0+k.W, in[0])
	}
	k.rstd = make([]T, k.N)
	return tensor.Shape{k.N, k.W}, nil
}
func (k *rmsNormKernel[T]) Forward(in [][]T, out []T) error {
	kernels.RMSNorm(out, k.rstd, in[0], k.N, k.W, k.Ld, k.Col0, in[1], k.Eps)
	return nil
}
func (k *rmsNormKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	kernels.RMSNormBackward(din[0], din[1], dout, in[0], k.rstd, k.N, k.W, k.Ld, k.Col0, in[1])
	return nil
}

// addKernel is the residual connection y = a + b.
type addKernel[T Float] struct{}

func (addKernel[T]) Name() string    { return "residual" }
func (addKernel[T]) DiffWRT() []bool { return []bool{true, true} }
func (addKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 2, "residual"); err != nil {
		return nil, err
	}
	if !in[0].Eq(in[1]) {
		return nil, fmt.Errorf("residual: shapes %v and %v differ", in[0], in[1])
	}
	return in[0].Clone(), nil
}
func (addKernel[T]) Forward(in [][]T, out []T) error {
	a, b := in[0], in[1][:len(in[0])]
	chunks := (len(a) + addChunk - 1) / addChunk
	kernels.For(chunks, 2*addChunk, func(c int) {
		lo, hi := c*addChunk, min((c+1)*addChunk, len(a))
		o, x, y := out[lo:hi], a[lo:hi], b[lo:hi]
		for i := range x {
			o[i] = x[i] + y[i]
		}
	})
	return nil
}
func (addKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	chunks := (len(dout) + addChunk - 1) / addChunk
	kernels.For(chunks, 2*addChunk, func(c int) {
		lo, hi := c*addChunk, min((c+1)*addChunk, len(dout))
		copy(din[0][lo:hi], dout[lo:hi])
		copy(din[1][lo:hi], dout[lo:hi])
	})
	return nil
}

// addChunk is the number of elements one kernel worker adds or copies at a time.
const addChunk = 1 << 14

// swiglu is the SwiGLU FFN E(x) = W_down(SiLU(W_gate x) ⊙ W_up x) on n rows, with its activations kept for the
// backward pass. It serves the dense MLP, the shared experts and each routed expert.
type swiglu[T Float] struct {
	D, I       int
	a, u, h    []T // [n, I] activations
	dh, da, du []T // [n, I] backward work space
}

// swigluBuffers is the number of [n, I] buffers a swiglu keeps (bind hands it 6·n·I elements).
const swigluBuffers = 6

// bind places the activations and work space of n rows in buf (at least swigluBuffers·n·I elements), which
// the caller owns and reuses: the MoE lays every expert's rows side by side in one buffer of the layer.
func (s *swiglu[T]) bind(buf []T, n int) {
	m := n * s.I
	part := func(i int) []T { return buf[i*m : (i+1)*m : (i+1)*m] }
	s.a, s.u, s.h, s.dh, s.da, s.du = part(0), part(1), part(2), part(3), part(4), part(5)
}

func (s *swiglu[T]) ensure(n int) {
	if cap(s.a) < n*s.I {
		c := n * s.I
		s.a, s.u, s.h = make([]T, c), make([]T, c), make([]T, c)
		s.dh, s.da, s.du = make([]T, c), make([]T, c), make([]T, c)
	}
	m := n * s.I
	s.a, s.u, s.h, s.dh, s.da, s.du = s.a[:m], s.u[:m], s.h[:m], s.dh[:m], s.da[:m], s.du[:m]
}

// forward computes y = E(x) (or y += E(x) when accumulate) for x [n, D].
func (s *swiglu[T]) forward(y, x, wg, wu, wd []T, n int, accumulate bool) {
	s.ensure(n)
	kernels.Linear(s.a, x, wg, n, s.D, s.I, false)
	kernels.Linear(s.u, x, wu, n, s.D, s.I, false)
	kernels.SwiGLU(s.h, s.a, s.u)
	kernels.Linear(y, s.h, wd, n, s.I, s.D, accumulate)
}

// backward accumulates dx, dWg, dWu, dWd from dy [n, D], using the activations of the last forward on the
// same rows. Any of dx, dwg, dwu, dwd may be nil.
func (s *swiglu[T]) backward(dx, dwg, dwu, dwd, dy, x, wg, wu, wd []T, n int) {
	clear(s.dh)
	kernels.LinearBackward(s.dh, dwd, dy, s.h, wd, n, s.I, s.D)
	kernels.SwiGLUBackward(s.da, s.du, s.dh, s.a, s.u)
	kernels.LinearBackward(dx, dwg, s.da, x, wg, n, s.D, s.I)
	kernels.LinearBackward(dx, dwu, s.du, x, wu, n, s.D, s.I)
}

// mlpKernel is the dense SwiGLU FFN: inputs x [N, D], gate_proj [I, D], up_proj [I, D], down_proj [D, I].
type mlpKernel[T Float] struct {
	name string
	N    int
	f    swiglu[T]
}

func (k *mlpKernel[T]) Name() string    { return k.name }
func (k *mlpKernel[T]) DiffWRT() []bool { return []bool{true, true, true, true} }
func (k *mlpKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 4, k.name); err != nil {
		return nil, err
	}
	k.N, k.f.D, k.f.I = in[0][0], in[0][1], in[1][0]
	if !in[1].Eq(tensor.Shape{k.f.I, k.f.D}) || !in[2].Eq(tensor.Shape{k.f.I, k.f.D}) || !in[3].Eq(tensor.Shape{k.f.D, k.f.I}) {
		return nil, fmt.Errorf("%s: weights %v %v %v do not fit x %v", k.name, in[1], in[2], in[3], in[0])
	}
	return tensor.Shape{k.N, k.f.D}, nil
}
func (k *mlpKernel[T]) Forward(in [][]T, out []T) error {
	k.f.forward(out, in[0], in[1], in[2], in[3], k.N, false)
	return nil
}
func (k *mlpKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	k.f.backward(din[0], din[1], din[2], din[3], dout, in[0], in[1], in[2], in[3], k.N)
	return nil
}

// LossSide is the per-step side state of the loss: the scale 1/normaliser (the token count of the whole
// accumulated batch, not of one micro-batch) and, after the forward pass, log p(target) of every position.
type LossSide struct {
	Scale float64
	Logp  []float32
}

// crossEntropyKernel: loss = Scale · Σ_n w_n · (−log softmax(logits_n)[target_n]) for logits [N, V], targets
// [N] (Int32) and weights [N] (1 = predict, 0 = padding or prompt); a scalar.
type crossEntropyKernel[T Float] struct {
	t    *LossSide
	ids  []int32
	N, V int
	prob []T       // softmax rows, kept for the backward pass
	lse  []float64 // log-partition of each row
}

func (k *crossEntropyKernel[T]) Name() string           { return "cross_entropy" }
func (k *crossEntropyKernel[T]) DiffWRT() []bool        { return []bool{true, false, false} }
func (k *crossEntropyKernel[T]) SetInts(ints [][]int32) { k.ids = ints[1] }
func (k *crossEntropyKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 3, "cross_entropy"); err != nil {
		return nil, err
	}
	k.N, k.V = in[0][0], in[0][1]
	if in[1][0] != k.N || in[2][0] != k.N {
		return nil, fmt.Errorf("cross_entropy: targets %v and weights %v for logits %v", in[1], in[2], in[0])
	}
	k.prob = make([]T, k.N*k.V)
	k.lse = make([]float64, k.N)
	return nil, nil
}
func (k *crossEntropyKernel[T]) Forward(in [][]T, out []T) error {
	t := k.t
	ids, weights := k.ids, in[2]
	if len(t.Logp) != k.N {
		t.Logp = make([]float32, k.N)
	}
	copy(k.prob, in[0])
	kernels.For(k.N, 8*k.V, func(n int) {
		row := k.prob[n*k.V : (n+1)*k.V]
		lse := kernels.SoftmaxRow(row)
		k.lse[n] = lse
		id := ids[n]
		if id >= 0 && int(id) < k.V {
			t.Logp[n] = float32(float64(in[0][n*k.V+int(id)]) - lse)
		} else {
			t.Logp[n] = float32(math.NaN())
		}
	})
	var loss float64
	for n := 0; n < k.N; n++ {
		if w := weights[n]; w != 0 {
			id := ids[n]
			if id < 0 || int(id) >= k.V {
				return fmt.Errorf("cross_entropy: target id %d at position %d outside vocabulary [0, %d)", id, n, k.V)
			}
			loss += float64(w) * (k.lse[n] - float64(in[0][n*k.V+int(id)]))
		}
	}
	out[0] = T(loss * t.Scale)
	return nil
}
func (k *crossEntropyKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	t := k.t
	g := dout[0] * T(t.Scale)
	dx := din[0]
	kernels.For(k.N, 2*k.V, func(n int) {
		w := in[2][n]
		if w == 0 {
			return
		}
		c := g * w
		row, d := k.prob[n*k.V:(n+1)*k.V], dx[n*k.V:(n+1)*k.V]
		for j, p := range row {
			d[j] = c * p
		}
		d[k.ids[n]] -= c
	})
	return nil
}
