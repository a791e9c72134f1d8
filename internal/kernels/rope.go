// rope.go: rotary position embeddings (Su et al. 2021) in the two layouts DeepSeek-V3.2 uses (dsv32-spec.md §8):
// MLA rotates interleaved pairs (x[2i], x[2i+1]); the DSA indexer rotates half-split pairs (x[i], x[i+r/2]).
// inv_freq_i = theta^(−2i/r), angle = pos·inv_freq_i.

package kernels

import "math"

// RopeTable holds cos and sin of every (position, frequency) pair up to maxPos, for rotary width r.
type RopeTable struct {
	R, MaxPos int
	Cos, Sin  []float64 // [maxPos, r/2]
}

// NewRopeTable computes the table in float64.
func NewRopeTable(r, maxPos int, theta float64) *RopeTable {
	h := r / 2
	t := &RopeTable{R: r, MaxPos: maxPos, Cos: make([]float64, maxPos*h), Sin: make([]float64, maxPos*h)}
	for i := 0; i < h; i++ {
		inv := math.Pow(theta, -2*float64(i)/float64(r))
		for p := 0; p < maxPos; p++ {
			a := float64(p) * inv
			t.Cos[p*h+i], t.Sin[p*h+i] = math.Cos(a), math.Sin(a)
		}
	}
	return t
}

// Apply rotates x[0:r] in place for position pos. inverse=true applies the transpose rotation (the backward pass).
func (t *RopeTable) Apply(x []float64, pos int, interleaved, inverse bool) {
	applyRope(t, x, pos, interleaved, inverse)
}

// Rope rotates the first r elements of x in place for position pos (any Float).
func Rope[T Float](t *RopeTable, x []T, pos int, interleaved, inverse bool) {
	applyRope(t, x, pos, interleaved, inverse)
}

func applyRope[T Float](t *RopeTable, x []T, pos int, interleaved, inverse bool) {
	h := t.R / 2
	cs, sn := t.Cos[pos*h:(pos+1)*h], t.Sin[pos*h:(pos+1)*h]
	for i := 0; i < h; i++ {
		var a, b *T
		if interleaved {
			a, b = &x[2*i], &x[2*i+1]
		} else {
			a, b = &x[i], &x[i+h]
		}
		c, s := T(cs[i]), T(sn[i])
		if inverse {
			s = -s
		}
		x0, x1 := *a, *b
		*a = x0*c - x1*s
		*b = x0*s + x1*c
	}
}
