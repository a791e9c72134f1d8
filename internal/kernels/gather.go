// gather.go: gathered level-1 kernels over selected rows of a row-major matrix, the inner loops of sparse
// attention (DeepSeek Sparse Attention reads k selected key/value rows per query and scatter-adds their
// gradients). A row r of base is base[r·stride : r·stride+n]. One call handles every selected row, so the
// per-row cost is a few vector instructions instead of a function call; on amd64 with AVX2 and FMA the float32
// versions run in assembly (simd/gather_amd64.s) when n is a multiple of 8, everywhere else in plain Go.

package kernels

import "fmt"

// checkRows panics when a selected row does not fit in base (the assembly does no bounds checks).
func checkRows[T Float](base []T, stride, n int, idx []int32) {
	lo, hi := idx[0], idx[0]
	for _, r := range idx {
		lo, hi = min(lo, r), max(hi, r)
	}
	if lo < 0 || int(hi)*stride+n > len(base) {
		panic(fmt.Sprintf("kernels: gathered rows %d…%d (stride %d, width %d) outside a matrix of %d elements", lo, hi, stride, n, len(base)))
	}
}

// GatherDot sets out[i] = alpha · x·base[idx[i]] for every i < len(idx), rows of width len(x).
func GatherDot[T Float](out, x, base []T, stride int, idx []int32, alpha T) {
	n, m := len(x), len(idx)
	if m == 0 {
		return
	}
	out = out[:m]
	checkRows(base, stride, n, idx)
	if n%8 == 0 && n > 0 && gatherASM {
		if o, ok := any(out).([]float32); ok {
			gatherDotF32(o, any(x).([]float32), any(base).([]float32), stride, idx, float32(alpha))
			return
		}
	}
	for i, r := range idx {
		row := base[int(r)*stride : int(r)*stride+n]
		var s0, s1, s2, s3 T
		d := 0
		for ; d+4 <= n; d += 4 {
			s0 += x[d] * row[d]
			s1 += x[d+1] * row[d+1]
			s2 += x[d+2] * row[d+2]
			s3 += x[d+3] * row[d+3]
		}
		for ; d < n; d++ {
			s0 += x[d] * row[d]
		}
		out[i] = alpha * ((s0 + s1) + (s2 + s3))
	}
}

// GatherAxpy accumulates y += Σ_i a[i]·base[idx[i]] (rows of width len(y)).
func GatherAxpy[T Float](y, a, base []T, stride int, idx []int32) {
	n, m := len(y), len(idx)
	if m == 0 {
		return
	}
	a = a[:m]
	checkRows(base, stride, n, idx)
	if n%8 == 0 && n > 0 && gatherASM {
		if yy, ok := any(y).([]float32); ok {
			gatherAxpyF32(yy, any(a).([]float32), any(base).([]float32), stride, idx)
			return
		}
	}
	for i, r := range idx {
		ai := a[i]
		row := base[int(r)*stride : int(r)*stride+n]
		for d, v := range row {
			y[d] += ai * v
		}
	}
}

// ScatterAxpy accumulates base[idx[i]] += a[i]·x for every i < len(idx) (rows of width len(x)). Repeated
// indices accumulate in order.
func ScatterAxpy[T Float](base []T, stride int, idx []int32, a, x []T) {
	n, m := len(x), len(idx)
	if m == 0 {
		return
	}
	a = a[:m]
	checkRows(base, stride, n, idx)
	if n%8 == 0 && n > 0 && gatherASM {
		if b, ok := any(base).([]float32); ok {
			scatterAxpyF32(b, stride, idx, any(a).([]float32), any(x).([]float32))
			return
		}
	}
	for i, r := range idx {
		ai := a[i]
		row := base[int(r)*stride : int(r)*stride+n]
		for d, v := range x {
			row[d] += ai * v
		}
	}
}
