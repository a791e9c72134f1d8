// attn_bench_test.go: a benchmark of the dense attention kernel alone at the issue-19 shape, per causal query-block size.
package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// BenchmarkAttentionBlocks times the dense MLA attention kernel's forward and backward at the issue-19 shape
// (B 16, T 256, 4 heads, qk 32+16, v 32) for several causal query-block sizes (256 = no blocking).
func BenchmarkAttentionBlocks(b *testing.B) {
	const B, T, H, dn, dr, dv, kvr = 16, 256, 4, 32, 16, 32, 64
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	N := B * T
	q, kv, kva := fill(N*H*(dn+dr)), fill(N*H*(dn+dv)), fill(N*(kvr+dr))
	dout := fill(N * H * dv)
	lengths := make([]int32, B)
	for i := range lengths {
		lengths[i] = T
	}
	rope := kernels.NewRopeTable(dr, T, 10000)
	for _, blk := range []int{32, 64, 128, 256} {
		b.Run(fmt.Sprintf("block%d", blk), func(b *testing.B) {
			k := newAttnKernel[float32](B, T, mlaDims{H: H, Dn: dn, Dr: dr, Dv: dv, KVr: kvr}, rope, &AttnMask{})
			k.block = blk
			if _, err := k.OutShape([]tensor.Shape{{N, H * (dn + dr)}, {N, H * (dn + dv)}, {N, kvr + dr}, {B}}); err != nil {
				b.Fatal(err)
			}
			k.SetInts([][]int32{nil, nil, nil, lengths})
			out := make([]float32, N*H*dv)
			din := [][]float32{make([]float32, len(q)), make([]float32, len(kv)), make([]float32, len(kva)), nil}
			in := [][]float32{q, kv, kva, nil}
			for b.Loop() {
				if err := k.Forward(in, out); err != nil {
					b.Fatal(err)
				}
				if err := k.Backward(in, out, dout, din); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
