// attention.go: the attention benchmark behind `trainer bench attention`: one attention layer of a fixed shape
// at several lengths, dense MLA (the training kernel, O(L²)) against DSA (lightning indexer + top-k + sparse
// MLA in the absorbed MQA mode, kv_b_proj absorbed into the op), forward+backward of a training step and one
// decode step at cache length L (absorbed MQA-mode attention over the latent cache: dense reads L entries, DSA
// scores L index keys and reads k entries). Each side runs once untimed first, so that first-touch page faults
// of its buffers are not timed.

package bench

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/dsa"
	"github.com/sparrow-rl/sparrow/internal/cputime"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
)

// AttentionBenchShape is the layer benchmarked.
type AttentionBenchShape struct {
	H, Dn, Dr, Dv, KVr int // attention heads, qk nope / rope dims, v dim, kv latent rank
	IH, IDh            int // indexer heads and head dim
	D, QR              int // hidden size and q latent rank (indexer inputs)
}

// DefaultAttentionBenchShape is close to DeepSeek-V3.2's proportions: the indexer's heads × dim (64) is a
// twentieth of the attention's heads × (qk + v) dims (8 × 160).
func DefaultAttentionBenchShape() AttentionBenchShape {
	return AttentionBenchShape{H: 8, Dn: 64, Dr: 32, Dv: 64, KVr: 128, IH: 2, IDh: 32, D: 256, QR: 128}
}

// AttentionBenchResult is one length's measurement (medians over the repetitions).
type AttentionBenchResult struct {
	Length      int     `json:"length"`
	TopK        int     `json:"topk"`
	DenseMs     float64 `json:"dense_ms"`       // dense attention forward + backward
	DSAMs       float64 `json:"dsa_ms"`         // indexer fwd+bwd + top-k + sparse attention fwd+bwd
	SparseMs    float64 `json:"sparse_attn_ms"` // the sparse attention part of DSAMs
	IndexerMs   float64 `json:"indexer_ms"`     // the indexer part of DSAMs (scores fwd+bwd and top-k)
	Ratio       float64 `json:"ratio"`          // DSAMs / DenseMs
	DenseDecUs  float64 `json:"dense_decode_us"`
	DSADecUs    float64 `json:"dsa_decode_us"`
	DecodeRatio float64 `json:"decode_ratio"`
	DenseMemMiB float64 `json:"dense_mem_mib"` // working buffers of the training kernels
	DSAMemMiB   float64 `json:"dsa_mem_mib"`
	DenseDecKiB float64 `json:"dense_decode_mem_kib"` // cache per layer (latent + rope key)
	DSADecKiB   float64 `json:"dsa_decode_mem_kib"`   // plus the indexer key cache
	// Process CPU time (both workers) of the same steps: robust to other processes sharing the cores.
	DenseCPUMs  float64 `json:"dense_cpu_ms"`
	DSACPUMs    float64 `json:"dsa_cpu_ms"`
	SparseCPUMs float64 `json:"sparse_attn_cpu_ms"`
	CPURatio    float64 `json:"cpu_ratio"`
}

// upperMedian is the middle value of v, the upper of the two middle ones for an even count (unlike median,
// which averages them); v is not modified.
func upperMedian(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// timeIt returns the median wall and CPU time (ns) of reps runs of f after a warm-up run.
func timeIt(reps int, f func()) (wall, cpu float64) {
	f() // warm-up: page faults, caches
	ts, cs := make([]float64, reps), make([]float64, reps)
	for i := range ts {
		t0, c0 := time.Now(), cputime.Process()
		f()
		ts[i], cs[i] = float64(time.Since(t0).Nanoseconds()), float64(cputime.Process()-c0)
	}
	return upperMedian(ts), upperMedian(cs)
}

// BenchAttention measures one length L with k keys per query (batch 1), reps repetitions.
func BenchAttention(sh AttentionBenchShape, L, K, reps int, seed uint64) (AttentionBenchResult, error) {
	rng := rand.New(rand.NewPCG(seed, uint64(L)))
	fill := func(n int, s float64) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * s)
		}
		return x
	}
	dq := sh.Dn + sh.Dr
	rope := kernels.NewRopeTable(sh.Dr, L, 10000)
	q, kv, kva := fill(L*sh.H*dq, 1), fill(L*sh.H*(sh.Dn+sh.Dv), 1), fill(L*(sh.KVr+sh.Dr), 1)
	dout := fill(L*sh.H*sh.Dv, 1)
	out := make([]float32, L*sh.H*sh.Dv)
	lengths := []int32{int32(L)}
	dims := dsa.MLADims{H: sh.H, Dn: sh.Dn, Dr: sh.Dr, Dv: sh.Dv, KVr: sh.KVr}
	res := AttentionBenchResult{Length: L, TopK: K}

	// Dense training kernel.
	dk := model.NewAttentionKernel[float32](1, L, dims, rope, &model.AttnMask{})
	dk.(model.IntInputs).SetInts([][]int32{nil, nil, nil, lengths})
	in := [][]float32{q, kv, kva, nil}
	din := [][]float32{make([]float32, len(q)), make([]float32, len(kv)), make([]float32, len(kva)), nil}
	if _, err := dk.OutShape(shapesOf(L, sh)); err != nil {
		return res, err
	}
	res.DenseMs, res.DenseCPUMs = timeIt(reps, func() {
		_ = dk.Forward(in, out)
		_ = dk.Backward(in, out, dout, din)
	})
	res.DenseMs, res.DenseCPUMs = res.DenseMs/1e6, res.DenseCPUMs/1e6
	// The kernel's working buffers (allocated by OutShape): P and dP [H·L·L], Q, K, dQ, dK [H·L·dq], V, dV
	// [H·L·dv] and the rope key's per-head gradient [H·L·dr].
	res.DenseMemMiB = float64(2*sh.H*L*L+4*sh.H*L*dq+2*sh.H*L*sh.Dv+sh.H*L*sh.Dr) * 4 / (1 << 20)
	dk = nil
	runtime.GC() // give the dense buffers (4 GiB at L = 8192) back before the DSA buffers are allocated

	// DSA: indexer + top-k + sparse attention.
	id := dsa.IndexerDims{D: sh.D, QR: sh.QR, H: sh.IH, Dh: sh.IDh, Dr: sh.Dr}
	ix, err := dsa.NewIndexer[float32](id, 1, L, rope)
	if err != nil {
		return res, err
	}
	h, qn := fill(L*sh.D, 1), fill(L*sh.QR, 1)
	wt := dsa.IndexerWeights[float32]{WQ: fill(sh.IH*sh.IDh*sh.QR, 0.1), WK: fill(sh.IDh*sh.D, 0.1), KNorm: fill(sh.IDh, 1), KBias: fill(sh.IDh, 0.1), WW: fill(sh.IH*sh.D, 0.1)}
	dwt := dsa.IndexerWeights[float32]{WQ: make([]float32, len(wt.WQ)), WK: make([]float32, len(wt.WK)), KNorm: make([]float32, sh.IDh), KBias: make([]float32, sh.IDh), WW: make([]float32, len(wt.WW))}
	// In the sparse stage the indexer's gradient is the Eq. 4 loss over the selected keys: dScores is zero
	// elsewhere, and the indexer's backward reads only the selected entries (Indexer.Sel).
	scores, dScores := make([]float32, L*L), make([]float32, L*L)
	sel := make([]int32, L*K)
	ix.Sel, ix.SelK = sel, K
	ix.Forward(h, qn, wt, scores)
	dsa.SelectTopK(sel, scores, 1, L, K, lengths)
	for n := range L {
		for _, s := range sel[n*K : (n+1)*K] {
			if s >= 0 {
				dScores[n*L+int(s)] = float32(rng.NormFloat64() * 0.01)
			}
		}
	}
	// Sparse attention in the absorbed MQA mode: from the normalized latent c^KV [L, kvr] and kv_b_proj
	// (absorbed into the queries and the output), where dense attention reads the up-projected kv.
	sa, err := dsa.NewSparseMQA[float32](dims, 1, L, K, rope)
	if err != nil {
		return res, err
	}
	ckv, wkvb := fill(L*sh.KVr, 1), fill(sh.H*(sh.Dn+sh.Dv)*sh.KVr, 1/math.Sqrt(float64(sh.KVr)))
	dckv, dwkvb := make([]float32, len(ckv)), make([]float32, len(wkvb))
	dh, dqn := make([]float32, len(h)), make([]float32, len(qn))
	var tIx, tSp, cDSA, cSp []float64
	for r := -1; r < reps; r++ { // r = −1: the untimed warm-up
		c0 := cputime.Process()
		t0 := time.Now()
		ix.Forward(h, qn, wt, scores)
		dsa.SelectTopK(sel, scores, 1, L, K, lengths)
		t1 := time.Now()
		c1 := cputime.Process()
		if err := sa.Forward(q, ckv, kva, wkvb, sel, lengths, out); err != nil {
			return res, err
		}
		sa.Backward(q, wkvb, dout, din[0], dckv, din[2], dwkvb)
		t2 := time.Now()
		c2 := cputime.Process()
		ix.Backward(h, qn, wt, dScores, dh, dqn, dwt)
		t3 := time.Now()
		c3 := cputime.Process()
		if r >= 0 {
			tIx = append(tIx, float64(t1.Sub(t0)+t3.Sub(t2)))
			tSp = append(tSp, float64(t2.Sub(t1)))
			cDSA = append(cDSA, float64(c3-c0))
			cSp = append(cSp, float64(c2-c1))
		}
	}
	res.IndexerMs, res.SparseMs = upperMedian(tIx)/1e6, upperMedian(tSp)/1e6
	res.DSAMs = res.IndexerMs + res.SparseMs
	res.Ratio = res.DSAMs / res.DenseMs
	res.DSACPUMs, res.SparseCPUMs = upperMedian(cDSA)/1e6, upperMedian(cSp)/1e6
	if res.DenseCPUMs > 0 {
		res.CPURatio = res.DSACPUMs / res.DenseCPUMs
	}
	// indexer: scores and their gradient [L·L], q, dq [L·IH·IDh], k, k̂, dk [L·IDh], w, dw [L·IH], the lanes' block
	// scores [16·IH·L] and dk [L·IDh]; sparse (MQA mode): P [H·L·K], the latent rows [L·W] (W = kvr + dr), the
	// absorbed queries and their gradients [2·H·L·W], the latent outputs and their gradients [2·H·L·kvr], and
	// one latent-gradient accumulator per worker [threads·L·W].
	ixBuf := 2*L*L + 2*L*sh.IH*sh.IDh + 3*L*sh.IDh + 2*L*sh.IH + L + 8*(16*sh.IH*L+L*sh.IDh)
	W := sh.KVr + sh.Dr
	spBuf := sh.H*L*K + L*W + 2*sh.H*L*W + 2*sh.H*L*sh.KVr + kernels.Threads()*L*W
	res.DSAMemMiB = float64(ixBuf+spBuf) * 4 / (1 << 20)

	// Decode one token at cache length L (absorbed attention over the latent cache).
	latent, krope := fill(L*sh.KVr, 1), fill(L*sh.Dr, 1)
	ikeys := fill(L*sh.IDh, 1)
	qt, qr := fill(sh.H*sh.KVr, 1), fill(sh.H*sh.Dr, 1)
	iq, iw := fill(sh.IH*sh.IDh, 1), fill(sh.IH, 1)
	ctx := make([]float32, sh.KVr)
	sc := make([]float32, L)
	dot, axpy := dsa.Level1[float32]()
	scale := float32(1 / math.Sqrt(float64(dq)))
	res.DenseDecUs, _ = timeIt(reps*20, func() {
		for i := 0; i < sh.H; i++ {
			kernels.Gemm(false, true, 1, L, sh.KVr, scale, qt[i*sh.KVr:(i+1)*sh.KVr], sh.KVr, latent, sh.KVr, 0, sc, L)
			kernels.Gemm(false, true, 1, L, sh.Dr, scale, qr[i*sh.Dr:(i+1)*sh.Dr], sh.Dr, krope, sh.Dr, 1, sc, L)
			kernels.SoftmaxRow(sc)
			kernels.Gemm(false, false, 1, sh.KVr, L, 1, sc, L, latent, sh.KVr, 0, ctx, sh.KVr)
		}
	})
	res.DenseDecUs /= 1e3
	isc := make([]float32, L)
	selRow, heap, ksc := make([]int32, K), make([]int32, K), make([]float32, K)
	res.DSADecUs, _ = timeIt(reps*20, func() {
		clear(isc)
		for j := 0; j < sh.IH; j++ {
			qj := iq[j*sh.IDh : (j+1)*sh.IDh]
			for t := 0; t < L; t++ {
				if z := dot(qj, ikeys[t*sh.IDh:(t+1)*sh.IDh]); z > 0 {
					isc[t] += iw[j] * z
				}
			}
		}
		dsa.SelectRow(selRow, isc, L, heap)
		for i := 0; i < sh.H; i++ {
			for k, t := range selRow {
				ksc[k] = (dot(qt[i*sh.KVr:(i+1)*sh.KVr], latent[int(t)*sh.KVr:(int(t)+1)*sh.KVr]) + dot(qr[i*sh.Dr:(i+1)*sh.Dr], krope[int(t)*sh.Dr:(int(t)+1)*sh.Dr])) * scale
			}
			kernels.SoftmaxRow(ksc)
			clear(ctx)
			for k, t := range selRow {
				axpy(ksc[k], latent[int(t)*sh.KVr:(int(t)+1)*sh.KVr], ctx)
			}
		}
	})
	res.DSADecUs /= 1e3
	res.DecodeRatio = res.DSADecUs / res.DenseDecUs
	res.DenseDecKiB = float64(L*(sh.KVr+sh.Dr)) * 4 / 1024
	res.DSADecKiB = float64(L*(sh.KVr+sh.Dr+sh.IDh)) * 4 / 1024
	return res, nil
}

func shapesOf(L int, sh AttentionBenchShape) []tensor.Shape {
	return []tensor.Shape{{L, sh.H * (sh.Dn + sh.Dr)}, {L, sh.H * (sh.Dn + sh.Dv)}, {L, sh.KVr + sh.Dr}, {1}}
}

// LogLogSlope is the least-squares slope of log(y) against log(x).
func LogLogSlope(x, y []float64) float64 {
	n := float64(len(x))
	var sx, sy, sxx, sxy float64
	for i := range x {
		lx, ly := math.Log(x[i]), math.Log(y[i])
		sx, sy, sxx, sxy = sx+lx, sy+ly, sxx+lx*lx, sxy+lx*ly
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}
