// Golden tests of the indexer scores, the top-k selection and the recall metric. Gradients are checked by
// finite differences through the gorgonia ops in package model (dsa_ops_test.go).
package dsa

import (
	"math"
	"slices"
	"testing"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// TestIndexerGolden: D = QR = H = Dh = 2, no rope, hand-computed.
//
//	h0 = (1,0), h1 = (0,1), W_K = I → LayerNorm(h0) = (c, −c), LayerNorm(h1) = (−c, c), c = 0.5/√(0.25+1e-6)
//	q_t: head 0 = qn_t, head 1 = −qn_t with qn = h;  w_t = h_t · (2·2)^−½
//	I[0,0] = 0.5·ReLU((1,0)·(c,−c)) = 0.5c;  I[1,0] = 0.5·ReLU((0,−1)·(c,−c)) = 0.5c;  I[1,1] = 0.5·ReLU(−c) = 0
func TestIndexerGolden(t *testing.T) {
	rope := kernels.NewRopeTable(0, 4, 10000)
	ix, err := NewIndexer[float64](IndexerDims{D: 2, QR: 2, H: 2, Dh: 2, Dr: 0}, 1, 2, rope)
	if err != nil {
		t.Fatal(err)
	}
	h := []float64{1, 0, 0, 1}
	wt := IndexerWeights[float64]{WQ: []float64{1, 0, 0, 1, -1, 0, 0, -1}, WK: []float64{1, 0, 0, 1},
		KNorm: []float64{1, 1}, KBias: []float64{0, 0}, WW: []float64{1, 0, 0, 1}}
	got := make([]float64, 4)
	ix.Forward(h, h, wt, got)
	c := 0.5 / math.Sqrt(0.25+1e-6)
	want := []float64{0.5 * c, 0, 0.5 * c, 0}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Fatalf("scores %v, want %v", got, want)
		}
	}
}

func TestSelectRow(t *testing.T) {
	cases := []struct {
		name   string
		scores []float32
		n, k   int
		want   []int32
	}{
		{"fewer candidates than k", []float32{3, 1, 2}, 2, 3, []int32{0, 1, -1}},
		{"top 2 ascending", []float32{0.1, 5, -1, 4, 2}, 5, 2, []int32{1, 3}},
		{"ties to the lower position", []float32{1, 1, 1, 1}, 4, 2, []int32{0, 1}},
		{"only the first n count", []float32{0, 1, 2, 9, 9}, 3, 2, []int32{1, 2}},
	}
	for _, c := range cases {
		dst, heap := make([]int32, c.k), make([]int32, c.k)
		SelectRow(dst, c.scores, c.n, heap)
		if !slices.Equal(dst, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, dst, c.want)
		}
	}
}

// TestTopKRecall: T = 3, k = 1; only row 2 has more candidates than k. p_2 = (0.5, 0.2, 0.3).
// The indexer picks key 2 (mass 0.3); the best single key holds 0.5 → recall 0.3, rel 0.6.
func TestTopKRecall(t *testing.T) {
	p := []float64{1, 0, 0, 0.6, 0.4, 0, 0.5, 0.2, 0.3}
	scores := []float64{0, 0, 0, 1, 2, 0, 0, 1, 3}
	r := TopKRecall(scores, p, 1, 3, 1, []int32{3})
	// row 1 also counts (2 candidates > k = 1): picks key 1 (0.4), best 0.6.
	if r.Rows != 2 || math.Abs(r.Mass-(0.3+0.4)/2) > 1e-12 || math.Abs(r.Best-(0.5+0.6)/2) > 1e-12 || math.Abs(r.Rel-0.7/1.1) > 1e-12 {
		t.Fatalf("recall %+v, want rows 2, mass 0.35, best 0.55, rel %v", r, 0.7/1.1)
	}
}

// TestSparseEqualsDenseReference: with every candidate selected, the MQA-mode sparse kernel equals MHA-mode
// softmax attention computed here in float64 from the up-projected keys and values (k^C_{s,i} = W^UK_i c^KV_s,
// v_{s,i} = W^UV_i c^KV_s) and the rotated rope key shared by the heads.
func TestSparseEqualsDenseReference(t *testing.T) {
	const T, H, dn, dr, dv, kvr = 5, 2, 3, 2, 3, 4
	rope := kernels.NewRopeTable(dr, T, 10000)
	a, err := NewSparseMQA[float64](MLADims{H: H, Dn: dn, Dr: dr, Dv: dv, KVr: kvr}, 1, T, T, rope)
	if err != nil {
		t.Fatal(err)
	}
	val := func(i int) float64 { return math.Sin(float64(i)*1.3 + 0.2) }
	fill := func(n, off int) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = val(i + off)
		}
		return x
	}
	q, ckv, kva, w := fill(T*H*(dn+dr), 0), fill(T*kvr, 100), fill(T*(kvr+dr), 200), fill(H*(dn+dv)*kvr, 300)
	// MHA inputs: kv[s, i] = W_i·c^KV_s (the dn key rows, then the dv value rows of head i).
	kv := make([]float64, T*H*(dn+dv))
	for s := range T {
		for r := range H * (dn + dv) {
			for c := range kvr {
				kv[s*H*(dn+dv)+r] += w[r*kvr+c] * ckv[s*kvr+c]
			}
		}
	}
	sel := make([]int32, T*T)
	for t0 := 0; t0 < T; t0++ {
		SelectRow(sel[t0*T:(t0+1)*T], make([]float64, T), t0+1, make([]int32, T))
	}
	out := make([]float64, T*H*dv)
	if err := a.Forward(q, ckv, kva, w, sel, []int32{T}, out); err != nil {
		t.Fatal(err)
	}
	for t0 := 0; t0 < T; t0++ {
		for h := 0; h < H; h++ {
			qt := append([]float64(nil), q[t0*H*(dn+dr)+h*(dn+dr):t0*H*(dn+dr)+(h+1)*(dn+dr)]...)
			rope.Apply(qt[dn:], t0, true, false)
			sc := make([]float64, t0+1)
			for s := 0; s <= t0; s++ {
				k := append(append([]float64(nil), kv[s*H*(dn+dv)+h*(dn+dv):s*H*(dn+dv)+h*(dn+dv)+dn]...), kva[s*(kvr+dr)+kvr:(s+1)*(kvr+dr)]...)
				rope.Apply(k[dn:], s, true, false)
				for j := range k {
					sc[s] += qt[j] * k[j] / math.Sqrt(dn+dr)
				}
			}
			kernels.SoftmaxRow(sc)
			for j := 0; j < dv; j++ {
				var o float64
				for s := 0; s <= t0; s++ {
					o += sc[s] * kv[s*H*(dn+dv)+h*(dn+dv)+dn+j]
				}
				if got := out[t0*H*dv+h*dv+j]; math.Abs(got-o) > 1e-12 {
					t.Fatalf("t=%d h=%d j=%d: sparse %v, reference %v", t0, h, j, got, o)
				}
			}
		}
	}
}
