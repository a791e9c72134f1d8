// fused.go: the bridge between Sparrow's kernels and gorgonia's autodiff.
//
// A fused layer (linear, RMSNorm, MLA attention, SwiGLU MLP, MoE, cross-entropy, embedding) implements Kernel:
// one forward kernel and one backward kernel that yields the gradients of all its inputs at once. fusedOp wraps
// it as a gorgonia Op (and SDOp). Its SymDiff adds one backward node, whose Do runs the backward kernel and
// returns the gradient of the first differentiable input, and one small pick node per further differentiable
// input, which returns that input's gradient buffer. Output and gradient buffers are owned by the op and reused
// every step, so the steady state allocates nothing of ours (dependencies.md, "fresh memory is very slow").

package model

import (
	"fmt"
	"hash"
	"hash/fnv"
	"sync/atomic"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// Float is the element type of a graph: float32 for training, float64 for gradient checks.
type Float = kernels.Float

// Kernel is a fused layer with its own forward and backward.
type Kernel[T Float] interface {
	Name() string
	// DiffWRT says which inputs receive gradients.
	DiffWRT() []bool
	// OutShape returns the output shape for the input shapes (nil = scalar).
	OutShape(in []tensor.Shape) (tensor.Shape, error)
	// Forward computes out (len = out shape's size, or 1 for a scalar) from the inputs.
	Forward(in [][]T, out []T) error
	// Backward writes the gradient of every differentiable input into din[i] (zeroed before the call: kernels
	// accumulate), given the inputs, the forward output and its gradient dout.
	Backward(in [][]T, out, dout []T, din [][]T) error
}

var opCounter atomic.Uint64

// fusedOp is the forward node of a Kernel.
type fusedOp[T Float] struct {
	k      Kernel[T]
	id     uint64
	dt     tensor.Dtype
	dts    []tensor.Dtype // input dtypes: dt, or Int32 for index inputs (token ids, targets, lengths)
	shapes []tensor.Shape // input shapes (fixed at graph build)
	oshape tensor.Shape   // nil for a scalar output
	out    *tensor.Dense
	din    []*tensor.Dense
	inBuf  [][]T
	ints   [][]int32
}

// IntInputs is implemented by kernels that take Int32 inputs (token ids, targets, row lengths). SetInts is
// called before Forward and Backward with the Int32 inputs by position (nil at the float positions).
type IntInputs interface {
	SetInts(ints [][]int32)
}

func dtypeOf[T Float]() tensor.Dtype {
	var z T
	if _, ok := any(z).(float64); ok {
		return tensor.Float64
	}
	return tensor.Float32
}

// apply adds a fused node for k over the given inputs.
func apply[T Float](k Kernel[T], inputs ...*G.Node) (*G.Node, error) {
	op := &fusedOp[T]{k: k, id: opCounter.Add(1), dt: dtypeOf[T]()}
	for _, n := range inputs {
		op.shapes = append(op.shapes, n.Shape().Clone())
		op.dts = append(op.dts, n.Dtype())
	}
	s, err := k.OutShape(op.shapes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.Name(), err)
	}
	op.oshape = s
	if s != nil {
		op.out = tensor.New(tensor.WithShape(s...), tensor.Of(op.dt))
	}
	op.din = make([]*tensor.Dense, len(inputs))
	for i, d := range k.DiffWRT() {
		if d {
			op.din[i] = tensor.New(tensor.WithShape(op.shapes[i]...), tensor.Of(op.dt))
		}
	}
	op.inBuf = make([][]T, len(inputs))
	op.ints = make([][]int32, len(inputs))
	n, err := G.ApplyOp(op, inputs...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.Name(), err)
	}
	return n, nil
}

func tensorType(dt tensor.Dtype, s tensor.Shape) hm.Type {
	if len(s) == 0 || s.IsScalar() {
		return dt
	}
	return G.TensorType{Dims: len(s), Of: dt}
}

func (op *fusedOp[T]) Arity() int { return len(op.shapes) }
func (op *fusedOp[T]) Type() hm.Type {
	ts := make(hm.Types, 0, len(op.shapes)+1)
	for i, s := range op.shapes {
		ts = append(ts, tensorType(op.dts[i], s))
	}
	ts = append(ts, tensorType(op.dt, op.oshape))
	return hm.NewFnType(ts...)
}
func (op *fusedOp[T]) InferShape(...G.DimSizer) (tensor.Shape, error) {
	if op.oshape == nil {
		return tensor.ScalarShape(), nil
	}
	return op.oshape.Clone(), nil
}
func (op *fusedOp[T]) ReturnsPtr() bool      { return false }
func (op *fusedOp[T]) CallsExtern() bool     { return false }
func (op *fusedOp[T]) OverwritesInput() int  { return -1 }
func (op *fusedOp[T]) String() string        { return fmt.Sprintf("%s#%d", op.k.Name(), op.id) }
func (op *fusedOp[T]) WriteHash(h hash.Hash) { fmt.Fprintf(h, "sparrow.%s#%d", op.k.Name(), op.id) }
func (op *fusedOp[T]) Hashcode() uint32      { return hashOf(op) }
func (op *fusedOp[T]) DiffWRT(int) []bool    { return op.k.DiffWRT() }

func hashOf(op G.Op) uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

func valueData[T Float](v G.Value) ([]T, error) {
	switch x := v.(type) {
	case *tensor.Dense:
		d, ok := x.Data().([]T)
		if !ok {
			return nil, fmt.Errorf("value of dtype %v, want %v", x.Dtype(), dtypeOf[T]())
		}
		return d, nil
	case *G.F32:
		if p, ok := any(x).(*T); ok {
			return []T{*p}, nil
		}
		return []T{T(float32(*x))}, nil
	case *G.F64:
		return []T{T(float64(*x))}, nil
	}
	return nil, fmt.Errorf("unsupported value %T", v)
}

func scalarValue[T Float](v T) G.Value {
	switch x := any(v).(type) {
	case float32:
		return G.NewF32(x)
	default:
		return G.NewF64(any(v).(float64))
	}
}

// readInputs splits the input values into float slices and Int32 slices and hands the latter to the kernel.
func (op *fusedOp[T]) readInputs(vals []G.Value, fl [][]T) error {
	hasInts := false
	for i := range op.shapes {
		if op.dts[i] == tensor.Int32 {
			t, ok := vals[i].(*tensor.Dense)
			if !ok || t.Dtype() != tensor.Int32 {
				return fmt.Errorf("%v input %d: want an Int32 tensor, got %T", op, i, vals[i])
			}
			op.ints[i] = t.Data().([]int32)
			fl[i] = nil
			hasInts = true
			continue
		}
		d, err := valueData[T](vals[i])
		if err != nil {
			return fmt.Errorf("%v input %d: %w", op, i, err)
		}
		fl[i] = d
	}
	if ii, ok := op.k.(IntInputs); ok && hasInts {
		ii.SetInts(op.ints)
	}
	return nil
}

func (op *fusedOp[T]) Do(vals ...G.Value) (G.Value, error) {
	if err := op.readInputs(vals, op.inBuf); err != nil {
		return nil, err
	}
	if op.out == nil {
		var s [1]T
		if err := op.k.Forward(op.inBuf, s[:]); err != nil {
			return nil, fmt.Errorf("%v: %w", op, err)
		}
		return scalarValue(s[0]), nil
	}
	if err := op.k.Forward(op.inBuf, op.out.Data().([]T)); err != nil {
		return nil, fmt.Errorf("%v: %w", op, err)
	}
	return op.out, nil
}

// SymDiff adds the backward node and the pick nodes.
func (op *fusedOp[T]) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	diff := op.k.DiffWRT()
	first := -1
	for i, d := range diff {
		if d {
			first = i
			break
		}
	}
	res := make(G.Nodes, len(inputs))
	if first < 0 {
		return res, nil
	}
	bop := &backwardOp[T]{fwd: op, first: first}
	args := append(append(G.Nodes{}, inputs...), output, grad)
	bnode, err := G.ApplyOp(bop, args...)
	if err != nil {
		return nil, fmt.Errorf("%v backward: %w", op, err)
	}
	res[first] = bnode
	for i := first + 1; i < len(inputs); i++ {
		if !diff[i] {
			continue
		}
		if res[i], err = G.ApplyOp(&pickOp[T]{fwd: op, i: i}, bnode); err != nil {
			return nil, fmt.Errorf("%v grad %d: %w", op, i, err)
		}
	}
	return res, nil
}

// backwardOp runs the backward kernel; it returns the gradient of input `first`.
type backwardOp[T Float] struct {
	fwd   *fusedOp[T]
	first int
	in    [][]T
	din   [][]T
}

func (b *backwardOp[T]) Arity() int { return len(b.fwd.shapes) + 2 }
func (b *backwardOp[T]) Type() hm.Type {
	op := b.fwd
	ts := make(hm.Types, 0, len(op.shapes)+3)
	for i, s := range op.shapes {
		ts = append(ts, tensorType(op.dts[i], s))
	}
	ts = append(ts, tensorType(op.dt, op.oshape), tensorType(op.dt, op.oshape), tensorType(op.dt, op.shapes[b.first]))
	return hm.NewFnType(ts...)
}
func (b *backwardOp[T]) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return b.fwd.shapes[b.first].Clone(), nil
}
func (b *backwardOp[T]) ReturnsPtr() bool      { return false }
func (b *backwardOp[T]) CallsExtern() bool     { return false }
func (b *backwardOp[T]) OverwritesInput() int  { return -1 }
func (b *backwardOp[T]) String() string        { return fmt.Sprintf("∂%v", b.fwd) }
func (b *backwardOp[T]) WriteHash(h hash.Hash) { fmt.Fprintf(h, "sparrow.backward#%d", b.fwd.id) }
func (b *backwardOp[T]) Hashcode() uint32      { return hashOf(b) }

func (b *backwardOp[T]) Do(vals ...G.Value) (G.Value, error) {
	op := b.fwd
	n := len(op.shapes)
	if b.in == nil {
		b.in, b.din = make([][]T, n), make([][]T, n)
	}
	in, din := b.in, b.din
	if err := op.readInputs(vals[:n], in); err != nil {
		return nil, err
	}
	out, err := valueData[T](vals[n])
	if err != nil {
		return nil, fmt.Errorf("%v output: %w", b, err)
	}
	dout, err := valueData[T](vals[n+1])
	if err != nil {
		return nil, fmt.Errorf("%v output grad: %w", b, err)
	}
	for i, t := range op.din {
		if t != nil {
			din[i] = t.Data().([]T)
			clear(din[i])
		}
	}
	if err := op.k.Backward(in, out, dout, din); err != nil {
		return nil, fmt.Errorf("%v: %w", b, err)
	}
	return op.din[b.first], nil
}

// pickOp returns the gradient buffer of input i, filled by the backward node it depends on.
type pickOp[T Float] struct {
	fwd *fusedOp[T]
	i   int
}

func (p *pickOp[T]) Arity() int { return 1 }
func (p *pickOp[T]) Type() hm.Type {
	op := p.fwd
	return hm.NewFnType(tensorType(op.dt, op.shapes[firstDiff(op.k.DiffWRT())]), tensorType(op.dt, op.shapes[p.i]))
}
func (p *pickOp[T]) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return p.fwd.shapes[p.i].Clone(), nil
}
func (p *pickOp[T]) ReturnsPtr() bool      { return false }
func (p *pickOp[T]) CallsExtern() bool     { return false }
func (p *pickOp[T]) OverwritesInput() int  { return -1 }
func (p *pickOp[T]) String() string        { return fmt.Sprintf("∂%v/∂in%d", p.fwd, p.i) }
func (p *pickOp[T]) WriteHash(h hash.Hash) { fmt.Fprintf(h, "sparrow.pick#%d.%d", p.fwd.id, p.i) }
func (p *pickOp[T]) Hashcode() uint32      { return hashOf(p) }
func (p *pickOp[T]) Do(...G.Value) (G.Value, error) {
	return p.fwd.din[p.i], nil
}

func firstDiff(d []bool) int {
	for i, v := range d {
		if v {
			return i
		}
	}
	return -1
}

// shapeSize is the number of elements of s.
func shapeSize(s tensor.Shape) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}
