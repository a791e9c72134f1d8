package kernels

import (
	"fmt"
	"testing"
	"unsafe"
)

// TestHugeSlab: a large slab starts on a 2 MB boundary, has the length and capacity asked for and is zeroed;
// a small one is a plain buffer of that length.
func TestHugeSlab(t *testing.T) {
	for _, n := range []int{1, 1000, 4*HugePageFloats - 1, 4 * HugePageFloats, 5*HugePageFloats + 3} {
		s := HugeSlab(n)
		if len(s) != n || cap(s) != n {
			t.Fatalf("n=%d: len %d cap %d", n, len(s), cap(s))
		}
		for i, v := range s {
			if v != 0 {
				t.Fatalf("n=%d: s[%d] = %v, want 0", n, i, v)
			}
		}
		if a := uintptr(unsafe.Pointer(&s[0])) % (2 << 20); n >= 4*HugePageFloats && a != 0 {
			t.Fatalf("n=%d: starts %d bytes past a 2 MB boundary", n, a)
		}
	}
}

// BenchmarkLinearRowsHugePages: BenchmarkLinearRows's 24 MB pool of [256, 256] weights (about a decode
// step's weights, streamed from beyond L2) in one HugeSlab against separate Go allocations (4 KB pages), for
// the row counts of a batch-8 step's products (1–2 rows per routed expert, 8 for the rest).
func BenchmarkLinearRowsHugePages(b *testing.B) {
	const in, out, pool = 256, 256, 96
	for _, huge := range []bool{false, true} {
		ws := make([][]float32, pool)
		var slab []float32
		if huge {
			slab = HugeSlab(pool * in * out)
		}
		for i := range ws {
			if huge {
				ws[i] = slab[i*in*out : (i+1)*in*out]
			} else {
				ws[i] = make([]float32, in*out)
			}
			for j := range ws[i] {
				ws[i][j] = float32(j%7) * 0.1
			}
		}
		for _, m := range []int{1, 2, 8} {
			x, y := make([]float32, m*in), make([]float32, m*out)
			b.Run(fmt.Sprintf("huge=%v/m=%d", huge, m), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					LinearRows(y, out, x, in, ws[i%pool], m, in, out, false)
				}
			})
		}
	}
}
