// Checks of the blocked indexer, the gathered sparse attention and the radix top-k at sizes that exercise
// their blocking (several query blocks per row, ragged last block, padded rows): float64 finite differences of
// the kernels directly, float32 (assembly paths) against float64, and the radix select against the heap.
package dsa

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

func randSlice(rng *rand.Rand, n int, s float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = rng.NormFloat64() * s
	}
	return x
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// checkGrad compares analytic gradients g of f at x with central differences on the entries idx.
func checkGrad(t *testing.T, name string, x, g []float64, idx []int, f func() float64) {
	t.Helper()
	const eps = 1e-6
	for _, i := range idx {
		v := x[i]
		x[i] = v + eps
		fp := f()
		x[i] = v - eps
		fm := f()
		x[i] = v
		num := (fp - fm) / (2 * eps)
		if math.Abs(num-g[i]) > 1e-6*(1+math.Abs(num)) {
			t.Errorf("%s[%d]: analytic %.10g, numeric %.10g", name, i, g[i], num)
		}
	}
}

func sample(rng *rand.Rand, n, m int) []int {
	if n <= m {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	return rng.Perm(n)[:m]
}

// TestIndexerGradBlocks: float64 finite differences of Σ R⊙scores through the blocked indexer, B = 2 rows of
// T = 37 queries (blocks of 16, 16 and 5), with respect to h, qn and every weight.
func TestIndexerGradBlocks(t *testing.T) {
	const B, T, D, QR, H, Dh, Dr = 2, 37, 5, 4, 2, 6, 4
	rng := rand.New(rand.NewPCG(11, 12))
	rope := kernels.NewRopeTable(Dr, T, 10000)
	d := IndexerDims{D: D, QR: QR, H: H, Dh: Dh, Dr: Dr}
	ix, err := NewIndexer[float64](d, B, T, rope)
	if err != nil {
		t.Fatal(err)
	}
	N := B * T
	h, qn, R := randSlice(rng, N*D, 1), randSlice(rng, N*QR, 1), randSlice(rng, N*T, 1)
	wt := IndexerWeights[float64]{WQ: randSlice(rng, H*Dh*QR, 0.5), WK: randSlice(rng, Dh*D, 0.5), KNorm: randSlice(rng, Dh, 1), KBias: randSlice(rng, Dh, 0.3), WW: randSlice(rng, H*D, 0.5)}
	scores := make([]float64, N*T)
	f := func() float64 {
		ix.Forward(h, qn, wt, scores)
		var s float64
		for i, v := range scores {
			s += R[i] * v
		}
		return s
	}
	f()
	for n := range N { // the non-causal part is stored as 0
		for s := n%T + 1; s < T; s++ {
			if scores[n*T+s] != 0 {
				t.Fatalf("score [%d, %d] beyond the query is %v, want 0", n, s, scores[n*T+s])
			}
		}
	}
	dh, dqn := make([]float64, len(h)), make([]float64, len(qn))
	dwt := IndexerWeights[float64]{WQ: make([]float64, len(wt.WQ)), WK: make([]float64, len(wt.WK)), KNorm: make([]float64, Dh), KBias: make([]float64, Dh), WW: make([]float64, len(wt.WW))}
	ix.Backward(h, qn, wt, R, dh, dqn, dwt)
	checkGrad(t, "h", h, dh, sample(rng, len(h), 40), f)
	checkGrad(t, "qn", qn, dqn, sample(rng, len(qn), 40), f)
	for _, p := range []struct {
		name string
		x, g []float64
	}{{"wq_b", wt.WQ, dwt.WQ}, {"wk", wt.WK, dwt.WK}, {"k_norm.weight", wt.KNorm, dwt.KNorm}, {"k_norm.bias", wt.KBias, dwt.KBias}, {"weights_proj", wt.WW, dwt.WW}} {
		checkGrad(t, p.name, p.x, p.g, sample(rng, len(p.x), 30), f)
	}
}

// randomSelection draws k distinct causal keys per query (fewer when fewer exist), ascending with −1 padding,
// plus some slots outside the candidates (ignored by the kernel).
func randomSelection(rng *rand.Rand, B, T, K int, lengths []int32) []int32 {
	sel := make([]int32, B*T*K)
	for n := range B * T {
		b, t := n/T, n%T
		c := Candidates(t, int(lengths[b]))
		p := rng.Perm(c)[:min(c, K)]
		slices.Sort(p)
		for i := range K {
			switch {
			case i < len(p):
				sel[n*K+i] = int32(p[i])
			case i == len(p) && c < T && n%4 == 0:
				sel[n*K+i] = int32(T - 1) // outside the candidates: ignored
			default:
				sel[n*K+i] = -1
			}
		}
	}
	return sel
}

// TestSparseGradLong: float64 finite differences of Σ R⊙out through the MQA-mode sparse attention, B = 2 rows
// of T = 40 (the second padded to 29), k = 9, with respect to q (nope and rope parts), c^KV, the rope key (and
// the latent columns of kva, which get none) and kv_b_proj (absorbed W^UK and output W^UV rows).
func TestSparseGradLong(t *testing.T) {
	const B, T, K, H, dn, dr, dv, kvr = 2, 40, 9, 3, 3, 4, 5, 6
	rng := rand.New(rand.NewPCG(13, 14))
	rope := kernels.NewRopeTable(dr, T, 10000)
	lengths := []int32{T, 29}
	a, err := NewSparseMQA[float64](MLADims{H: H, Dn: dn, Dr: dr, Dv: dv, KVr: kvr}, B, T, K, rope)
	if err != nil {
		t.Fatal(err)
	}
	N := B * T
	sel := randomSelection(rng, B, T, K, lengths)
	q, ckv, kva := randSlice(rng, N*H*(dn+dr), 1), randSlice(rng, N*kvr, 1), randSlice(rng, N*(kvr+dr), 1)
	wkvb := randSlice(rng, H*(dn+dv)*kvr, 0.5)
	R := randSlice(rng, N*H*dv, 1)
	out := make([]float64, N*H*dv)
	f := func() float64 {
		if err := a.Forward(q, ckv, kva, wkvb, sel, lengths, out); err != nil {
			t.Fatal(err)
		}
		var s float64
		for i, v := range out {
			s += R[i] * v
		}
		return s
	}
	f()
	dq, dckv, dkva, dw := make([]float64, len(q)), make([]float64, len(ckv)), make([]float64, len(kva)), make([]float64, len(wkvb))
	a.Backward(q, wkvb, R, dq, dckv, dkva, dw)
	checkGrad(t, "q", q, dq, sample(rng, len(q), 60), f)
	checkGrad(t, "ckv", ckv, dckv, sample(rng, len(ckv), 60), f)
	checkGrad(t, "kva", kva, dkva, sample(rng, len(kva), 60), f)
	checkGrad(t, "kv_b_proj", wkvb, dw, sample(rng, len(wkvb), 80), f)
}

// TestSparseThreadCounts: the latent gradients are accumulated per part of the queries (one part per
// worker, each covering only the keys before its last query): 1, 2, 3 and 5 workers give the same outputs
// and gradients up to rounding, in float64; so do token blocks of 7 in the absorption GEMMs (ragged last
// block) instead of one block.
func TestSparseThreadCounts(t *testing.T) {
	const B, T, K = 2, 33, 7
	md := MLADims{H: 2, Dn: 3, Dr: 4, Dv: 3, KVr: 5}
	rng := rand.New(rand.NewPCG(23, 24))
	rope := kernels.NewRopeTable(md.Dr, T, 10000)
	lengths := []int32{T, 20}
	N := B * T
	sel := randomSelection(rng, B, T, K, lengths)
	q, ckv, kva := randSlice(rng, N*md.H*(md.Dn+md.Dr), 1), randSlice(rng, N*md.KVr, 1), randSlice(rng, N*(md.KVr+md.Dr), 1)
	wkvb, dout := randSlice(rng, md.H*(md.Dn+md.Dv)*md.KVr, 0.5), randSlice(rng, N*md.H*md.Dv, 1)
	run := func(threads, rows int) [][]float64 {
		saved, savedRows := kernels.Threads(), gemmRows
		kernels.SetThreads(threads)
		gemmRows = rows
		defer func() { kernels.SetThreads(saved); gemmRows = savedRows }()
		a, err := NewSparseMQA[float64](md, B, T, K, rope)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(dout))
		if err := a.Forward(q, ckv, kva, wkvb, sel, lengths, out); err != nil {
			t.Fatal(err)
		}
		g := [][]float64{out, make([]float64, len(q)), make([]float64, len(ckv)), make([]float64, len(kva)), make([]float64, len(wkvb))}
		a.Backward(q, wkvb, dout, g[1], g[2], g[3], g[4])
		return g
	}
	one := run(1, 1<<20)
	for _, c := range []struct{ threads, rows int }{{2, 1 << 20}, {3, 1 << 20}, {5, 1 << 20}, {2, 7}} {
		got := run(c.threads, c.rows)
		for i, name := range []string{"out", "dq", "dckv", "dkva", "dkv_b_proj"} {
			for j := range one[i] {
				if math.Abs(got[i][j]-one[i][j]) > 1e-12*(1+math.Abs(one[i][j])) {
					t.Fatalf("%d workers, GEMM blocks of %d tokens: %s[%d] = %v, one worker %v", c.threads, c.rows, name, j, got[i][j], one[i][j])
				}
			}
		}
	}
}

func maxRelDiff(a []float32, b []float64) float64 {
	var scale, d float64
	for i := range b {
		scale = max(scale, math.Abs(b[i]))
		d = max(d, math.Abs(float64(a[i])-b[i]))
	}
	return d / max(scale, 1e-30)
}

// TestFloat32MatchesFloat64: with widths that are multiples of 8 (the assembly paths), the float32 indexer and
// sparse attention agree with float64 on outputs and gradients.
func TestFloat32MatchesFloat64(t *testing.T) {
	const B, T, K = 1, 48, 16
	rng := rand.New(rand.NewPCG(15, 16))
	rope := kernels.NewRopeTable(8, T, 10000)
	lengths := []int32{T}
	id := IndexerDims{D: 24, QR: 16, H: 2, Dh: 16, Dr: 8}
	ix64, err := NewIndexer[float64](id, B, T, rope)
	if err != nil {
		t.Fatal(err)
	}
	ix32, err := NewIndexer[float32](id, B, T, rope)
	if err != nil {
		t.Fatal(err)
	}
	h, qn, dS := randSlice(rng, T*id.D, 1), randSlice(rng, T*id.QR, 1), randSlice(rng, T*T, 1)
	w64 := IndexerWeights[float64]{WQ: randSlice(rng, id.H*id.Dh*id.QR, 0.3), WK: randSlice(rng, id.Dh*id.D, 0.3), KNorm: randSlice(rng, id.Dh, 1), KBias: randSlice(rng, id.Dh, 0.3), WW: randSlice(rng, id.H*id.D, 0.3)}
	w32 := IndexerWeights[float32]{WQ: to32(w64.WQ), WK: to32(w64.WK), KNorm: to32(w64.KNorm), KBias: to32(w64.KBias), WW: to32(w64.WW)}
	s64, s32 := make([]float64, T*T), make([]float32, T*T)
	ix64.Forward(h, qn, w64, s64)
	ix32.Forward(to32(h), to32(qn), w32, s32)
	if d := maxRelDiff(s32, s64); d > 1e-5 {
		t.Errorf("indexer scores: float32 differs from float64 by %.2g", d)
	}
	dh64, dh32 := make([]float64, len(h)), make([]float32, len(h))
	dw64 := IndexerWeights[float64]{WQ: make([]float64, len(w64.WQ)), WK: make([]float64, len(w64.WK)), KNorm: make([]float64, id.Dh), KBias: make([]float64, id.Dh), WW: make([]float64, len(w64.WW))}
	dw32 := IndexerWeights[float32]{WQ: make([]float32, len(w64.WQ)), WK: make([]float32, len(w64.WK)), KNorm: make([]float32, id.Dh), KBias: make([]float32, id.Dh), WW: make([]float32, len(w64.WW))}
	ix64.Backward(h, qn, w64, dS, dh64, nil, dw64)
	ix32.Backward(to32(h), to32(qn), w32, to32(dS), dh32, nil, dw32)
	for name, p := range map[string]struct {
		a []float32
		b []float64
	}{"dh": {dh32, dh64}, "dwq": {dw32.WQ, dw64.WQ}, "dwk": {dw32.WK, dw64.WK}, "dww": {dw32.WW, dw64.WW}} {
		if d := maxRelDiff(p.a, p.b); d > 1e-4 {
			t.Errorf("indexer %s: float32 differs from float64 by %.2g", name, d)
		}
	}

	// 6 heads: one block of 4 in assembly, 2 in Go; latent width 32 + 16, a multiple of 16.
	md := MLADims{H: 6, Dn: 16, Dr: 16, Dv: 16, KVr: 32}
	rope16 := kernels.NewRopeTable(md.Dr, T, 10000)
	a64, _ := NewSparseMQA[float64](md, B, T, K, rope16)
	a32, err := NewSparseMQA[float32](md, B, T, K, rope16)
	if err != nil {
		t.Fatal(err)
	}
	sel := randomSelection(rng, B, T, K, lengths)
	q, ckv, kva := randSlice(rng, T*md.H*(md.Dn+md.Dr), 1), randSlice(rng, T*md.KVr, 1), randSlice(rng, T*(md.KVr+md.Dr), 1)
	wkvb := randSlice(rng, md.H*(md.Dn+md.Dv)*md.KVr, 0.2)
	dout := randSlice(rng, T*md.H*md.Dv, 1)
	o64, o32 := make([]float64, len(dout)), make([]float32, len(dout))
	if err := a64.Forward(q, ckv, kva, wkvb, sel, lengths, o64); err != nil {
		t.Fatal(err)
	}
	if err := a32.Forward(to32(q), to32(ckv), to32(kva), to32(wkvb), sel, lengths, o32); err != nil {
		t.Fatal(err)
	}
	if d := maxRelDiff(o32, o64); d > 1e-5 {
		t.Errorf("sparse attention output: float32 differs from float64 by %.2g", d)
	}
	g64 := [][]float64{make([]float64, len(q)), make([]float64, len(ckv)), make([]float64, len(kva)), make([]float64, len(wkvb))}
	g32 := [][]float32{make([]float32, len(q)), make([]float32, len(ckv)), make([]float32, len(kva)), make([]float32, len(wkvb))}
	a64.Backward(q, wkvb, dout, g64[0], g64[1], g64[2], g64[3])
	a32.Backward(to32(q), to32(wkvb), to32(dout), g32[0], g32[1], g32[2], g32[3])
	for i, name := range []string{"dq", "dckv", "dkva", "dkv_b_proj"} {
		if d := maxRelDiff(g32[i], g64[i]); d > 1e-4 {
			t.Errorf("sparse attention %s: float32 differs from float64 by %.2g", name, d)
		}
	}
}

// TestRadixSelectMatchesHeap: the O(n) radix select equals the heap selection, ties included (many equal
// scores, ±0, negatives), for several n and k.
func TestRadixSelectMatchesHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	rs := &radixScratch{}
	for _, c := range []struct{ n, k int }{{1, 4}, {5, 5}, {6, 5}, {100, 7}, {1000, 256}, {4096, 256}, {300, 299}} {
		for trial := range 4 {
			x := make([]float32, c.n)
			for i := range x {
				switch trial {
				case 0:
					x[i] = float32(rng.NormFloat64())
				case 1: // a few distinct values: many ties
					x[i] = float32(rng.IntN(5)) - 2
				case 2: // ReLU-like: zeros of both signs and a tail
					if v := rng.NormFloat64(); v > 0.5 {
						x[i] = float32(v)
					} else if i%2 == 0 {
						x[i] = float32(math.Copysign(0, -1))
					}
				default: // all equal
					x[i] = 0.25
				}
			}
			want, got := make([]int32, c.k), make([]int32, c.k)
			SelectRow(want, x, c.n, make([]int32, c.k))
			selectRowRadix(got, x, c.n, rs)
			if !slices.Equal(got, want) {
				t.Fatalf("n=%d k=%d trial %d: radix %v, heap %v", c.n, c.k, trial, head(got), head(want))
			}
		}
	}
}

func head(x []int32) string {
	if len(x) > 12 {
		return fmt.Sprint(x[:12], "…")
	}
	return fmt.Sprint(x)
}

// TestIndexerSelectedBackward: when the score gradient is zero outside each query's selected keys (the sparse
// stage), the O(T·k) backward over the selection (Indexer.Sel) equals the dense blocked backward, in float64
// (Go loops) and float32 (assembly); a key selected twice counts once.
func TestIndexerSelectedBackward(t *testing.T) {
	t.Run("float64", func(t *testing.T) { selectedBackward[float64](t, 6, 1e-12) })
	t.Run("float32", func(t *testing.T) { selectedBackward[float32](t, 16, 1e-5) })
}

func selectedBackward[F Float](t *testing.T, Dh int, tol float64) {
	const B, T, K, D, QR, H, Dr = 2, 37, 7, 8, 8, 2, 4
	rng := rand.New(rand.NewPCG(21, 22))
	rope := kernels.NewRopeTable(Dr, T, 10000)
	d := IndexerDims{D: D, QR: QR, H: H, Dh: Dh, Dr: Dr}
	conv := func(x []float64) []F {
		y := make([]F, len(x))
		for i, v := range x {
			y[i] = F(v)
		}
		return y
	}
	N := B * T
	h, qn := conv(randSlice(rng, N*D, 1)), conv(randSlice(rng, N*QR, 1))
	wt := IndexerWeights[F]{WQ: conv(randSlice(rng, H*Dh*QR, 0.5)), WK: conv(randSlice(rng, Dh*D, 0.5)), KNorm: conv(randSlice(rng, Dh, 1)), KBias: conv(randSlice(rng, Dh, 0.3)), WW: conv(randSlice(rng, H*D, 0.5))}
	sel := randomSelection(rng, B, T, K, []int32{T, T})
	sel[5*K+K-1] = sel[5*K] // a duplicate
	dS := make([]F, N*T)
	for n := range N {
		for _, s := range sel[n*K : (n+1)*K] {
			if s >= 0 && int(s) <= n%T {
				dS[n*T+int(s)] = F(rng.NormFloat64())
			}
		}
	}
	run := func(useSel bool) [][]F {
		ix, err := NewIndexer[F](d, B, T, rope)
		if err != nil {
			t.Fatal(err)
		}
		if useSel {
			ix.Sel, ix.SelK = sel, K
		}
		ix.Forward(h, qn, wt, make([]F, N*T))
		dh, dqn := make([]F, len(h)), make([]F, len(qn))
		dw := IndexerWeights[F]{WQ: make([]F, len(wt.WQ)), WK: make([]F, len(wt.WK)), KNorm: make([]F, Dh), KBias: make([]F, Dh), WW: make([]F, len(wt.WW))}
		ix.Backward(h, qn, wt, dS, dh, dqn, dw)
		return [][]F{dh, dqn, dw.WQ, dw.WK, dw.KNorm, dw.KBias, dw.WW}
	}
	dense, sparse := run(false), run(true)
	for i, name := range []string{"dh", "dqn", "wq_b", "wk", "k_norm.weight", "k_norm.bias", "weights_proj"} {
		var scale, diff float64
		for j := range dense[i] {
			scale = max(scale, math.Abs(float64(dense[i][j])))
			diff = max(diff, math.Abs(float64(sparse[i][j]-dense[i][j])))
		}
		if scale == 0 || diff > tol*scale {
			t.Errorf("%s: selected backward differs from dense by %.3g (scale %.3g)", name, diff, scale)
		}
	}
}
