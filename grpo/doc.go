// Package grpo is the GRPO objective of DeepSeek-V3.2 as pure float64 functions
// with per-token gradients: group advantages, importance ratios with asymmetric
// and dual clipping, the KL estimators k1, k2, k3 and the importance-weighted
// ("unbiased") k3, off-policy sequence masking, and loss aggregation normalised
// over the whole batch. It imports only the standard library: no model, no bus.
// The learner hands it per-token log-probabilities and gets back the loss and
// dL/dlogp per token, which it chains through its (kept-set) softmax into the
// network.
//
// Equations (numbers from docs/dsv32-spec.md §3.2, i.e. DeepSeek-V3.2 §3.1):
//
//	Advantage (unnumbered):  Â_i = R_i − mean(R_1..R_G)                  (default, as in the paper)
//	                         Â_i = (R_i − mean(R)) / (std(R) + eps)       (StdNormalize; std = sample std, n−1)
//	Eq. 6  ratio:            r_{i,t} = π_θ(o_{i,t}) / π_old(o_{i,t}) = exp(ℓ − ℓ_old)
//	Eq. 7  unbiased KL:      D̂_{i,t} = ρ·(u − ln u − 1),  ρ = π_θ/π_old,  u = π_ref/π_θ
//	                         ∂D̂/∂ℓ = ρ·(ℓ − ℓ_ref)   (ℓ = ln π_θ; ρ depends on ℓ too, see kl.go)
//	Eq. 8  objective:        J = (1/G) Σ_i (1/|o_i|) Σ_t { min(r·Â, clip(r, 1−ε_low, 1+ε_high)·Â)·M_{i,t} − β·D̂_{i,t} }
//	                         the loss minimised here is L = −J; the mask M multiplies only the surrogate.
//	Eq. 9  OPSM:             M_i = 0 if Â_i < 0 and (1/|o_i|) Σ_t ln(π_old/π_θ) > δ, else 1 (one decision per sequence)
//
// The spec's Eq. 5 (the original GRPO objective) is not restated there; Eq. 8
// supersedes it here.
//
// Beyond the paper, as the peers (verl core_algos.py, NeMo RL ClippedPGLossFn)
// ship them:
//
//   - Dual clip (verl clip_ratio_c, arXiv:1912.09729): for Â < 0 the per-token
//     loss is capped at −Â·c, so a token whose ratio exploded cannot dominate.
//   - KL estimators k1 = ℓ − ℓ_ref, k2 = ½(ℓ − ℓ_ref)², k3 = u − ln u − 1
//     (verl "kl", "mse", "low_var_kl", without verl's ±10 clamp). The KL is always a
//     loss term (β·D̂ in the loss, as DeepSeek), never a reward penalty.
//   - Aggregation modes (verl agg_loss): seq-mean-token-mean (Eq. 8),
//     token-mean (DAPO), seq-mean-token-sum, seq-mean-token-sum-norm (Dr.GRPO:
//     token sum / MaxLen, then mean over sequences). Normalisers come from the
//     whole batch (Normalizer), so splitting a batch into micro-batches of whole
//     sequences and summing their losses and gradients gives the same result.
//
// Layout of a micro-batch: all tokens of all its sequences concatenated in one
// flat slice of length T; Seq[t] names the sequence of token t and LossMask[t]
// is 1 where the token is trained (policy-generated), 0 elsewhere (prompt, tool
// results, padding). Values at tokens with LossMask 0 are never read, so they
// may hold anything (padding, NaN); every value that is read must be finite, or
// the call fails with an error naming the field and index.
//
// The file loss.go puts the pieces together (Config, Batch, Loss, Result);
// advantage.go, ratio.go, kl.go, mask.go and agg.go hold one term each. On-policy distillation adds the
// sampled-token reverse KL as a per-token advantage (distill.go) and the exact reverse KL over the kept set
// with its gradient on the logits (distill_exact.go, which the learner's policy head calls per position).
package grpo
