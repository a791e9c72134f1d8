// bench_test.go: benchmarks of the DSA kernels one part at a time (indexer forward/backward, top-k, sparse
// attention forward/backward), for profiling `trainer bench attention`; the sparse attention also reports its
// process CPU time per operation.
package dsa

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

func benchData(n int, rng *rand.Rand, s float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * s)
	}
	return x
}

// cpuMetric reports the process CPU time per operation (cpu-ms/op) when the returned function runs: robust to
// other processes on the cores, unlike ns/op.
func cpuMetric(b *testing.B) func() {
	c0 := cpuNanos()
	return func() { b.ReportMetric(float64(cpuNanos()-c0)/1e6/float64(b.N), "cpu-ms/op") }
}

// BenchmarkDSAParts runs each part at the default shape of `trainer bench attention` (8 heads, qk 64+32, v 64;
// indexer 2 heads × 32; k = 256), e.g. go test -run - -bench . -benchtime 3x ./dsa/
func BenchmarkDSAParts(b *testing.B) {
	const H, dn, dr, dv, kvr, K = 8, 64, 32, 64, 128, 256
	const D, QR, IH, IDh = 256, 128, 2, 32
	for _, L := range []int{1024, 2048, 4096, 8192} {
		rng := rand.New(rand.NewPCG(1, uint64(L)))
		rope := kernels.NewRopeTable(dr, L, 10000)
		lengths := []int32{int32(L)}
		ix, err := NewIndexer[float32](IndexerDims{D: D, QR: QR, H: IH, Dh: IDh, Dr: dr}, 1, L, rope)
		if err != nil {
			b.Fatal(err)
		}
		h, qn := benchData(L*D, rng, 1), benchData(L*QR, rng, 1)
		wt := IndexerWeights[float32]{WQ: benchData(IH*IDh*QR, rng, 0.1), WK: benchData(IDh*D, rng, 0.1), KNorm: benchData(IDh, rng, 1), KBias: benchData(IDh, rng, 0.1), WW: benchData(IH*D, rng, 0.1)}
		dwt := IndexerWeights[float32]{WQ: make([]float32, len(wt.WQ)), WK: make([]float32, len(wt.WK)), KNorm: make([]float32, IDh), KBias: make([]float32, IDh), WW: make([]float32, len(wt.WW))}
		scores, dScores := make([]float32, L*L), benchData(L*L, rng, 0.01)
		dh, dqn := make([]float32, len(h)), make([]float32, len(qn))
		sel := make([]int32, L*K) // the real selection, also when only some sub-benchmarks run
		ix.Forward(h, qn, wt, scores)
		SelectTopK(sel, scores, 1, L, K, lengths)
		b.Run(fmt.Sprintf("L=%d/indexer_fwd", L), func(b *testing.B) {
			for b.Loop() {
				ix.Forward(h, qn, wt, scores)
			}
		})
		b.Run(fmt.Sprintf("L=%d/topk", L), func(b *testing.B) {
			for b.Loop() {
				SelectTopK(sel, scores, 1, L, K, lengths)
			}
		})
		b.Run(fmt.Sprintf("L=%d/indexer_bwd", L), func(b *testing.B) {
			for b.Loop() {
				ix.Backward(h, qn, wt, dScores, dh, dqn, dwt)
			}
		})
		sa, err := NewSparseMQA[float32](MLADims{H: H, Dn: dn, Dr: dr, Dv: dv, KVr: kvr}, 1, L, K, rope)
		if err != nil {
			b.Fatal(err)
		}
		q, ckv, kva := benchData(L*H*(dn+dr), rng, 1), benchData(L*kvr, rng, 1), benchData(L*(kvr+dr), rng, 1)
		wkvb := benchData(H*(dn+dv)*kvr, rng, 0.1)
		out, dout := make([]float32, L*H*dv), benchData(L*H*dv, rng, 1)
		dq, dckv, dkva, dw := make([]float32, len(q)), make([]float32, len(ckv)), make([]float32, len(kva)), make([]float32, len(wkvb))
		b.Run(fmt.Sprintf("L=%d/sparse_fwd", L), func(b *testing.B) {
			defer cpuMetric(b)()
			for b.Loop() {
				if err := sa.Forward(q, ckv, kva, wkvb, sel, lengths, out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("L=%d/sparse_bwd", L), func(b *testing.B) {
			defer cpuMetric(b)()
			for b.Loop() {
				sa.Backward(q, wkvb, dout, dq, dckv, dkva, dw)
			}
		})
	}
}
