// merge.go: the three merges, tensor by tensor. With base θ_0 and fine-tuned models θ_1..θ_n, task vectors
// τ_i = θ_i − θ_0:
//
//	average:          θ = (1/n) Σ_i θ_i
//	task arithmetic:  θ = θ_0 + λ Σ_i τ_i                                         (Ilharco et al. 2023, Eq. 1)
//	TIES:             τ̂_i = trim(τ_i, keep the ⌈d·N⌉ largest |τ_i| of the tensor, zero the rest)
//	                  γ_p = sgn(Σ_i τ̂_i,p)                                       (elect: the sign of the larger total mass)
//	                  τ_m,p = mean{ τ̂_i,p : sgn(τ̂_i,p) = γ_p, τ̂_i,p ≠ 0 }        (disjoint mean; 0 when none)
//	                  θ = θ_0 + λ τ_m                                              (Yadav et al. 2023, Alg. 1)
//
// Sums are taken in float64. Trimming is per tensor (as mergekit does); equal magnitudes at the threshold
// are kept in index order.

package merge

import (
	"fmt"
	"math"
	"sort"
)

// Method names a merge.
type Method string

// The merges.
const (
	Average        Method = "average"
	TaskArithmetic Method = "task_arithmetic"
	TIES           Method = "ties"
)

// Methods lists the merges.
var Methods = []Method{Average, TaskArithmetic, TIES}

// Options tune the merges: Lambda scales the merged task vector (task arithmetic and TIES; 1 = plain sum
// or mean), Density is the share of each task vector TIES keeps, in (0, 1].
type Options struct {
	Lambda  float64
	Density float64
}

// Tensor merges one tensor: base [N] and the models' [N] (the base is not read by Average). Errors: no
// model, lengths that differ, options out of range, a non-finite result.
func Tensor(m Method, base []float32, models [][]float32, o Options) ([]float32, error) {
	if len(models) == 0 {
		return nil, fmt.Errorf("merge: no model to merge")
	}
	n := len(models[0])
	for i, x := range models {
		if len(x) != n {
			return nil, fmt.Errorf("merge: model %d has %d values, model 0 has %d", i, len(x), n)
		}
	}
	if m != Average && len(base) != n {
		return nil, fmt.Errorf("merge: the base has %d values, the models %d", len(base), n)
	}
	var out []float32
	switch m {
	case Average:
		out = average(models)
	case TaskArithmetic:
		if math.IsNaN(o.Lambda) || math.IsInf(o.Lambda, 0) {
			return nil, fmt.Errorf("merge: lambda %v is not finite", o.Lambda)
		}
		out = taskArithmetic(base, models, o.Lambda)
	case TIES:
		if math.IsNaN(o.Lambda) || math.IsInf(o.Lambda, 0) {
			return nil, fmt.Errorf("merge: lambda %v is not finite", o.Lambda)
		}
		if !(o.Density > 0 && o.Density <= 1) {
			return nil, fmt.Errorf("merge: TIES density %v is outside (0, 1]", o.Density)
		}
		out = ties(base, models, o.Lambda, o.Density)
	default:
		return nil, fmt.Errorf("merge: unknown method %q (one of average, task_arithmetic, ties)", m)
	}
	for i, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("merge: value %d is %v", i, v)
		}
	}
	return out, nil
}

func average(models [][]float32) []float32 {
	out := make([]float32, len(models[0]))
	for p := range out {
		s := 0.0
		for _, x := range models {
			s += float64(x[p])
		}
		out[p] = float32(s / float64(len(models)))
	}
	return out
}

func taskArithmetic(base []float32, models [][]float32, lambda float64) []float32 {
	out := make([]float32, len(base))
	for p := range out {
		s := 0.0
		for _, x := range models {
			s += float64(x[p]) - float64(base[p])
		}
		out[p] = float32(float64(base[p]) + lambda*s)
	}
	return out
}

// Trim returns τ with all but its ⌈density·N⌉ largest magnitudes set to 0 (ties kept in index order).
func Trim(tau []float64, density float64) []float64 {
	n := len(tau)
	k := int(math.Ceil(density * float64(n)))
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return math.Abs(tau[idx[a]]) > math.Abs(tau[idx[b]]) })
	out := make([]float64, n)
	for _, i := range idx[:min(k, n)] {
		out[i] = tau[i]
	}
	return out
}

func ties(base []float32, models [][]float32, lambda, density float64) []float32 {
	n := len(base)
	trimmed := make([][]float64, len(models))
	for i, x := range models {
		tau := make([]float64, n)
		for p := range tau {
			tau[p] = float64(x[p]) - float64(base[p])
		}
		trimmed[i] = Trim(tau, density)
	}
	out := make([]float32, n)
	for p := range out {
		total := 0.0
		for _, t := range trimmed {
			total += t[p]
		}
		sum, count := 0.0, 0
		for _, t := range trimmed {
			if v := t[p]; v != 0 && (v > 0) == (total > 0) && total != 0 {
				sum += v
				count++
			}
		}
		merged := 0.0
		if count > 0 {
			merged = sum / float64(count)
		}
		out[p] = float32(float64(base[p]) + lambda*merged)
	}
	return out
}
