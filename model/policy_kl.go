// policy_kl.go: the policy head's optional distillation term, the exact reverse KL to a teacher over each
// position's kept set (grpo/distill_exact.go states it with its sources). At position n with weight w_n ≠ 0
// and set K_n (the kept set, or the whole vocabulary when it is empty), p the softmax of z = logits/τ over
// K_n and q the teacher renormalised over K_n:
//
//	loss += Σ_n w_n · KL_n,   KL_n = Σ_{v∈K_n} p_v (ln p_v − ln q_v)
//	∂loss/∂logits_v = w_n · ∂KL_n/∂z_v / τ   (v ∈ K_n; 0 elsewhere)
//
// The divergence and its gradient with respect to z come from the caller (Divergence: grpo.ExactKL, the one
// implementation; model never imports grpo); the head gathers z over the set in float64, keeps the returned
// gradient from the forward pass and adds it in the backward pass, in float32 and float64 graphs alike.

package model

import "fmt"

// KeptKL is the exact-KL term of the policy head (PolicySide.KeptKL).
type KeptKL struct {
	// Weights [N]: the loss adds Σ_n Weights[n]·KL_n; positions of weight 0 are skipped (not read below).
	Weights []float64
	// TeacherOffsets [N+1] and TeacherLogp (CSR): the teacher's log-probabilities over position n's set, in
	// the order of its kept ids (PolicySide.KeptIDs), or over the whole vocabulary (V entries, ids 0..V−1)
	// when the kept set is empty.
	TeacherOffsets []int32
	TeacherLogp    []float64
	// Divergence returns KL over one set from the scaled logits z and the teacher's log-probabilities logq,
	// writing ∂KL/∂z into dz (grpo.ExactKL). Required.
	Divergence func(z, logq, dz []float64) (float64, error)
	// KL [N] receives KL_n after the forward pass (0 where the weight is 0); Loss receives Σ_n Weights[n]·KL_n.
	KL   []float64
	Loss float64
}

// keptKLForward computes the term on the logits [N, V] at temperature temp, keeping each weighted position's
// gradient with respect to its scaled logits in k.klGrad (CSR like TeacherLogp).
func (k *policyKernel[T]) keptKLForward(logits []T, temp float64) error {
	t, N, V := k.side.KeptKL, k.N, k.V
	if t.Divergence == nil {
		return fmt.Errorf("policy_head: exact KL without a divergence function")
	}
	if len(t.Weights) != N || len(t.TeacherOffsets) != N+1 {
		return fmt.Errorf("policy_head: exact KL: %d weights and %d teacher offsets for %d positions (want %d and %d)", len(t.Weights), len(t.TeacherOffsets), N, N, N+1)
	}
	if t.TeacherOffsets[0] != 0 || int(t.TeacherOffsets[N]) != len(t.TeacherLogp) {
		return fmt.Errorf("policy_head: exact KL: teacher offsets span %d..%d, %d log-probabilities", t.TeacherOffsets[0], t.TeacherOffsets[N], len(t.TeacherLogp))
	}
	if len(t.KL) != N {
		t.KL = make([]float64, N)
	}
	if cap(k.klGrad) < len(t.TeacherLogp) {
		k.klGrad = make([]float64, len(t.TeacherLogp))
	}
	k.klGrad = k.klGrad[:len(t.TeacherLogp)]
	t.Loss = 0
	for n := range N {
		t.KL[n] = 0
		w := t.Weights[n]
		if w == 0 {
			continue
		}
		lo, hi := int(t.TeacherOffsets[n]), int(t.TeacherOffsets[n+1])
		set := k.kept(n)
		size := len(set)
		if size == 0 {
			size = V
		}
		if lo < 0 || hi < lo || hi-lo != size {
			return fmt.Errorf("policy_head: exact KL at position %d: %d teacher log-probabilities (offsets %d..%d) for a set of %d ids", n, hi-lo, lo, hi, size)
		}
		// the scaled logits z over the set, in float64
		z := logits[n*V : (n+1)*V]
		k.klZ = k.klZ[:0]
		if len(set) == 0 {
			for _, v := range z {
				k.klZ = append(k.klZ, float64(v)/temp)
			}
		} else {
			for _, id := range set {
				k.klZ = append(k.klZ, float64(z[id])/temp)
			}
		}
		kl, err := t.Divergence(k.klZ, t.TeacherLogp[lo:hi], k.klGrad[lo:hi])
		if err != nil {
			return fmt.Errorf("policy_head: exact KL at position %d: %w", n, err)
		}
		t.KL[n] = kl
		t.Loss += w * kl
	}
	return nil
}

// keptKLBackward adds dout·w_n·(∂KL_n/∂z)/τ into the logits' gradient din [N, V].
func (k *policyKernel[T]) keptKLBackward(din []T, dout, temp float64) {
	t, V := k.side.KeptKL, k.V
	for n := range k.N {
		w := t.Weights[n]
		if w == 0 {
			continue
		}
		c := dout * w / temp
		g := k.klGrad[t.TeacherOffsets[n]:t.TeacherOffsets[n+1]]
		row, set := din[n*V:(n+1)*V], k.kept(n)
		if len(set) == 0 {
			for v, gv := range g {
				row[v] += T(c * gv)
			}
			continue
		}
		for j, id := range set {
			row[id] += T(c * g[j])
		}
	}
}
