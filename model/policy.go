// policy.go: the policy-gradient head of the RL learner. For each position n it computes the log-probability
// of the sampled token under the temperature-scaled distribution renormalised over the sampler's kept set
// (Keep Sampling Mask, dsv32-spec.md §3.2):
//
//	logp_n = z_{o_n} − log Σ_{v∈K_n} exp(z_v),   z = logits/temperature
//
// then hands the vector of log-probabilities to a loss function (the GRPO objective, computed by package grpo
// outside the network) that returns the loss and ∂loss/∂logp per position. The backward pass chains that into
// the logits with the masked-softmax Jacobian: ∂logp_n/∂z_v = 1[v=o_n] − softmax_K(z)_v on K_n, 0 off K_n.
// On-policy distillation may add the exact reverse KL to a teacher over each kept set (PolicySide.KeptKL,
// policy_kl.go) to the same loss.

package model

import (
	"fmt"
	"math"

	"gorgonia.org/tensor"
)

// PolicyLoss maps the per-position log-probabilities [N] to a scalar loss and its gradient dlogp [N]
// (the callee owns dlogp's memory until the next call).
type PolicyLoss func(logp []float64) (loss float64, dlogp []float64, err error)

// PolicySide is the per-step side state of the policy head.
type PolicySide struct {
	// Temperature divides the logits (the sampler's temperature); 0 means 1.
	Temperature float64
	// KeptOffsets [N+1] and KeptIDs (CSR): the kept set of position n is KeptIDs[KeptOffsets[n]:KeptOffsets[n+1]];
	// an empty set means the whole vocabulary. Nil KeptOffsets = whole vocabulary everywhere.
	KeptOffsets []int32
	KeptIDs     []int32
	// Loss receives the log-probabilities. Required.
	Loss PolicyLoss
	// Logp receives log p(target) of every position after the forward pass (float32 copy).
	Logp []float32
	// Entropy receives the entropy of the kept-set distribution at every position.
	Entropy []float32
	// KeptKL, when set, adds the exact reverse KL to a teacher over each position's kept set to the loss
	// (on-policy distillation, policy_kl.go).
	KeptKL *KeptKL
}

type policyKernel[T Float] struct {
	side  *PolicySide
	ids   []int32
	N, V  int
	prob  []T // softmax over the kept set (0 elsewhere), [N, V]
	logp  []float64
	dlogp []float64
	// exact-KL work space (policy_kl.go): one set's scaled logits, and ∂KL/∂z of every weighted position
	klZ, klGrad []float64
}

func (k *policyKernel[T]) Name() string           { return "policy_head" }
func (k *policyKernel[T]) DiffWRT() []bool        { return []bool{true, false} }
func (k *policyKernel[T]) SetInts(ints [][]int32) { k.ids = ints[1] }
func (k *policyKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 2, "policy_head"); err != nil {
		return nil, err
	}
	k.N, k.V = in[0][0], in[0][1]
	if in[1][0] != k.N {
		return nil, fmt.Errorf("policy_head: targets %v for logits %v", in[1], in[0])
	}
	k.prob = make([]T, k.N*k.V)
	k.logp = make([]float64, k.N)
	return nil, nil
}

func (k *policyKernel[T]) kept(n int) []int32 {
	s := k.side
	if s.KeptOffsets == nil {
		return nil
	}
	return s.KeptIDs[s.KeptOffsets[n]:s.KeptOffsets[n+1]]
}

func (k *policyKernel[T]) Forward(in [][]T, out []T) error {
	s := k.side
	if s.Loss == nil {
		return fmt.Errorf("policy_head: no loss function")
	}
	if s.KeptOffsets != nil && len(s.KeptOffsets) != k.N+1 {
		return fmt.Errorf("policy_head: %d kept-set offsets for %d positions", len(s.KeptOffsets), k.N)
	}
	temp := s.Temperature
	if temp == 0 {
		temp = 1
	}
	if len(s.Logp) != k.N {
		s.Logp = make([]float32, k.N)
		s.Entropy = make([]float32, k.N)
	}
	V := k.V
	for n := 0; n < k.N; n++ {
		z := in[0][n*V : (n+1)*V]
		p := k.prob[n*V : (n+1)*V]
		clear(p)
		kept := k.kept(n)
		m := math.Inf(-1)
		if len(kept) == 0 {
			for _, v := range z {
				m = math.Max(m, float64(v)/temp)
			}
		} else {
			for _, id := range kept {
				if id < 0 || int(id) >= V {
					return fmt.Errorf("policy_head: kept id %d at position %d outside vocabulary [0, %d)", id, n, V)
				}
				m = math.Max(m, float64(z[id])/temp)
			}
		}
		var sum float64
		if len(kept) == 0 {
			for v := range z {
				e := math.Exp(float64(z[v])/temp - m)
				p[v] = T(e)
				sum += e
			}
		} else {
			for _, id := range kept {
				e := math.Exp(float64(z[id])/temp - m)
				p[id] = T(e)
				sum += e
			}
		}
		lse := m + math.Log(sum)
		var ent float64
		for v := range p {
			if p[v] != 0 {
				q := float64(p[v]) / sum
				p[v] = T(q)
				ent -= q * math.Log(q)
			}
		}
		id := k.ids[n]
		if id < 0 || int(id) >= V {
			return fmt.Errorf("policy_head: target %d at position %d outside vocabulary [0, %d)", id, n, V)
		}
		if len(kept) > 0 && p[id] == 0 && !contains32(kept, id) {
			k.logp[n] = math.Inf(-1)
		} else {
			k.logp[n] = float64(z[id])/temp - lse
		}
		s.Logp[n] = float32(k.logp[n])
		s.Entropy[n] = float32(ent)
	}
	loss, dlogp, err := s.Loss(k.logp)
	if err != nil {
		return fmt.Errorf("policy_head: %w", err)
	}
	if len(dlogp) != k.N {
		return fmt.Errorf("policy_head: loss returned %d gradients for %d positions", len(dlogp), k.N)
	}
	k.dlogp = dlogp
	if s.KeptKL != nil {
		if err := k.keptKLForward(in[0], temp); err != nil {
			return err
		}
		loss += s.KeptKL.Loss
	}
	out[0] = T(loss)
	return nil
}

func contains32(s []int32, x int32) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func (k *policyKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	temp := k.side.Temperature
	if temp == 0 {
		temp = 1
	}
	V := k.V
	for n := 0; n < k.N; n++ {
		g := k.dlogp[n]
		if g == 0 {
			continue
		}
		c := T(float64(dout[0]) * g / temp)
		p, d := k.prob[n*V:(n+1)*V], din[0][n*V:(n+1)*V]
		for v, q := range p {
			if q != 0 {
				d[v] = -c * q
			}
		}
		d[k.ids[n]] += c
	}
	if k.side.KeptKL != nil {
		k.keptKLBackward(din[0], float64(dout[0]), temp)
	}
	return nil
}
