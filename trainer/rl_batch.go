// rl_batch.go: one GRPO mini-batch laid out for the training graph (RLBatch), with everything the learner
// replays from the sampler: the experts it routed to (Keep Routing), the kept sets it sampled from (Keep
// Sampling Mask) and the keys its sparse attention selected (Keep Selection), dsv32-spec.md §3.2 and §2.

package trainer

import (
	"fmt"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/grpo"
	"github.com/sparrow-rl/sparrow/model"
)

// RLBatch is one mini-batch of trajectories laid out for the training graph: Rows rows of T positions, row r
// holding trajectory r's prompt and completion teacher-forced (position t predicts token t+1), padded after
// its length.
type RLBatch struct {
	Rows, T int
	// Input feeds the graph: Tokens, Targets and Weights [Rows·T] (the weight of a completion token is its
	// loss mask, 0 elsewhere) and Lengths [Rows].
	Input model.StepInput
	// Experts (Keep Routing): per decoder layer, [Rows·T·K] the experts the sampler's engine chose at each
	// position; nil for dense layers, and all nil when rl.keep_routing is off.
	Experts [][]int32
	// KeptOffsets [Rows·T+1] and KeptIDs (CSR, Keep Sampling Mask): the sampler's kept set of the token
	// predicted at each position; an empty set is the whole vocabulary (and every set is empty when
	// rl.keep_sampling_mask is off).
	KeptOffsets, KeptIDs []int32
	// Selected (Keep Selection): per decoder layer, [Rows·T·k] the key positions the sampler's sparse attention
	// selected at each position (−1 = none); nil when rl.keep_selection is off.
	Selected [][]int32
	// LossPos are the flat positions (row·T + t) that predict completion tokens, in trajectory then token
	// order: the order of Layout's tokens and of LogpOld.
	LossPos []int
	Layout  grpo.Layout
	LogpOld []float64 // [len(LossPos)] ln π_old of each completion token
	Adv     []float64 // [sequences] advantage of each trajectory
	// LogpTeacher [len(LossPos)] is ln π_T of each completion token when the trajectories carry teacher
	// log-probabilities (distillation), else empty; TokenAdv [len(LossPos)] the per-token advantages the
	// distill stage derives from it (nil for rl).
	LogpTeacher []float64
	TokenAdv    []float64
	// TeacherKeptOffsets [Rows·T+1] and TeacherKeptLogp (CSR, the exact KL of distillation): at each loss
	// position of a trajectory carrying them, the teacher's log-probabilities renormalised over the
	// position's set (its KeptIDs range, or the whole vocabulary when that is empty), empty elsewhere.
	TeacherKeptOffsets []int32
	TeacherKeptLogp    []float64
	// KLWeights [Rows·T] is the exact-KL term's weight per position (λ·w_t at the loss positions).
	KLWeights []float64
	vocab     int
}

// rlLayout is what laying a batch out needs to know of the stage.
type rlLayout struct {
	maxPrompt                   int
	moeLayers                   []int // decoder layers with MoE
	topK                        int   // experts per token
	keepRouting, keepSampling   bool
	keepSelection               bool
	selectionLayers, selectionK int
}

// newRLBatch allocates a batch of rows × T positions for a model c.
func newRLBatch(rows, T int, c configs.Model, lay rlLayout) *RLBatch {
	N := rows * T
	b := &RLBatch{Rows: rows, T: T, KeptOffsets: make([]int32, N+1), TeacherKeptOffsets: make([]int32, N+1), KLWeights: make([]float64, N), vocab: c.VocabSize,
		Input: model.StepInput{Tokens: make([]int32, N), Targets: make([]int32, N), Weights: make([]float32, N), Lengths: make([]int32, rows), Scale: 1}}
	if lay.keepRouting {
		b.Experts = make([][]int32, c.NumHiddenLayers)
		for _, l := range lay.moeLayers {
			b.Experts[l] = make([]int32, N*lay.topK)
		}
	}
	if lay.keepSelection {
		b.Selected = make([][]int32, lay.selectionLayers)
		for l := range b.Selected {
			b.Selected[l] = make([]int32, N*lay.selectionK)
		}
	}
	return b
}

// lay fills b with trajs (at most b.Rows) and their advantages; rows after the last trajectory are empty.
func (b *RLBatch) lay(trajs []*data.Trajectory, adv []float64, lay rlLayout) error {
	if len(trajs) > b.Rows {
		return fmt.Errorf("%d trajectories for a batch of %d rows", len(trajs), b.Rows)
	}
	T := b.T
	clear(b.Input.Weights)
	b.LossPos, b.KeptIDs, b.TeacherKeptLogp = b.LossPos[:0], b.KeptIDs[:0], b.TeacherKeptLogp[:0]
	b.Layout = grpo.Layout{NumSeqs: len(trajs), Seq: b.Layout.Seq[:0], LossMask: b.Layout.LossMask[:0]}
	b.LogpOld, b.Adv, b.LogpTeacher = b.LogpOld[:0], append(b.Adv[:0], adv...), b.LogpTeacher[:0]
	for r := range b.Rows {
		var tr *data.Trajectory
		if r < len(trajs) {
			tr = trajs[r]
		}
		if err := b.layRow(r, tr, lay); err != nil {
			return err
		}
	}
	b.KeptOffsets[b.Rows*T] = int32(len(b.KeptIDs))
	b.TeacherKeptOffsets[b.Rows*T] = int32(len(b.TeacherKeptLogp))
	return nil
}

// layRow fills row r with trajectory tr (nil: an empty row).
func (b *RLBatch) layRow(r int, tr *data.Trajectory, lay rlLayout) error {
	T := b.T
	lp, lc, L := 0, 0, 0 // prompt and completion lengths; L positions predict a next token
	if tr != nil {
		lp, lc = len(tr.PromptTokens), len(tr.CompletionTokens)
		L = lp + lc - 1
		if lp > lay.maxPrompt || L > T {
			return fmt.Errorf("group %s: prompt of %d tokens and completion of %d exceed the graph length %d (rl.max_prompt_tokens %d)", tr.GroupID, lp, lc, T, lay.maxPrompt)
		}
	}
	row, tgt := b.Input.Tokens[r*T:(r+1)*T], b.Input.Targets[r*T:(r+1)*T]
	for t := range T {
		row[t], tgt[t] = data.PAD, data.PAD
		if t < L {
			row[t] = tokenAt(tr, t)
			tgt[t] = tokenAt(tr, t+1)
		}
	}
	b.Input.Lengths[r] = int32(L)
	if tr != nil && b.Experts != nil {
		if err := b.layExperts(r, tr, L, lay); err != nil {
			return err
		}
	}
	if b.Selected != nil {
		if err := b.laySelection(r, tr, L, lay); err != nil {
			return err
		}
	}
	for t := range T {
		pos := r*T + t
		b.KeptOffsets[pos] = int32(len(b.KeptIDs))
		b.TeacherKeptOffsets[pos] = int32(len(b.TeacherKeptLogp))
		i := t - (lp - 1) // completion token predicted at t
		if t < L && i >= 0 && i < lc {
			if lay.keepSampling {
				b.KeptIDs = append(b.KeptIDs, tr.KeptIDs[tr.KeptOffsets[i]:tr.KeptOffsets[i+1]]...)
			}
			if len(tr.TeacherKeptOffsets) > 0 && tr.LossMask[i] == 1 {
				if err := b.layTeacherKept(tr, i, int(b.KeptOffsets[pos]), lay); err != nil {
					return err
				}
			}
			b.LossPos = append(b.LossPos, pos)
			b.Layout.Seq = append(b.Layout.Seq, r)
			b.Layout.LossMask = append(b.Layout.LossMask, tr.LossMask[i])
			b.LogpOld = append(b.LogpOld, float64(tr.LogpOld[i]))
			if len(tr.TeacherLogp) > 0 {
				b.LogpTeacher = append(b.LogpTeacher, float64(tr.TeacherLogp[i]))
			}
			b.Input.Weights[pos] = float32(tr.LossMask[i])
		}
	}
	return nil
}

// layTeacherKept appends the teacher's kept-set log-probabilities of completion token i of tr, checking that
// they cover the learner's set at the position (its kept ids from keptStart on, or the whole vocabulary).
func (b *RLBatch) layTeacherKept(tr *data.Trajectory, i, keptStart int, lay rlLayout) error {
	r := tr.TeacherKeptLogp[tr.TeacherKeptOffsets[i]:tr.TeacherKeptOffsets[i+1]]
	want, what := b.vocab, "the whole vocabulary"
	if n := len(b.KeptIDs) - keptStart; n > 0 {
		want, what = n, "its kept set"
	}
	if len(r) != want {
		return fmt.Errorf("group %s: completion token %d: teacher_kept_logp covers %d ids, the learner's set is %s of %d (rl.keep_sampling_mask %v here: did the workers run with another setting?)",
			tr.GroupID, i, len(r), what, want, lay.keepSampling)
	}
	for _, v := range r {
		b.TeacherKeptLogp = append(b.TeacherKeptLogp, float64(v))
	}
	return nil
}

// tokenAt is token t of tr's prompt followed by its completion.
func tokenAt(tr *data.Trajectory, t int) int32 {
	if lp := len(tr.PromptTokens); t >= lp {
		return tr.CompletionTokens[t-lp]
	}
	return tr.PromptTokens[t]
}

// layExperts copies the experts tr's sampler chose at its first L positions into row r (Keep Routing); the
// padded positions, whose outputs no loss reads, keep the experts 0..K−1.
func (b *RLBatch) layExperts(r int, tr *data.Trajectory, L int, lay rlLayout) error {
	K, T, nMoE := lay.topK, b.T, len(lay.moeLayers)
	if tr.MoELayers != nMoE || tr.TopK != K {
		return fmt.Errorf("group %s: rl.keep_routing is on but the trajectory records experts of %d MoE layers × %d per token, the model has %d × %d (was it sampled by another model?)",
			tr.GroupID, tr.MoELayers, tr.TopK, nMoE, K)
	}
	for m, l := range lay.moeLayers {
		f := b.Experts[l][r*T*K : (r+1)*T*K]
		for t := range T {
			for k := range K {
				if t < L {
					f[t*K+k] = int32(tr.ExpertIDs[(t*nMoE+m)*K+k])
				} else {
					f[t*K+k] = int32(k)
				}
			}
		}
	}
	return nil
}

// laySelection copies the recorded DSA selections of trajectory tr (nil for an empty row) into row r over
// its first L positions (Keep Selection). Padded positions, whose outputs no loss reads, attend to the first
// min(max(L, 1), k) positions, as the indexer's top-k lets a padded query see the valid prefix so that its
// row stays finite.
func (b *RLBatch) laySelection(r int, tr *data.Trajectory, L int, lay rlLayout) error {
	K, T, layers := lay.selectionK, b.T, len(b.Selected)
	if tr != nil && (tr.DSALayers != layers || tr.DSAK != K) {
		return fmt.Errorf("group %s: rl.keep_selection is on but the trajectory's dsa_topk has %d layers × %d keys, want %d × %d (was it sampled by a worker decoding densely, or with another index_topk?)",
			tr.GroupID, tr.DSALayers, tr.DSAK, layers, K)
	}
	pad := min(max(L, 1), K)
	for l, sel := range b.Selected {
		row := sel[r*T*K : (r+1)*T*K]
		for t := range T {
			dst := row[t*K : (t+1)*K]
			if t < L {
				copy(dst, tr.DSATopK[(t*layers+l)*K:(t*layers+l+1)*K])
				continue
			}
			for j := range dst {
				dst[j] = -1
				if j < pad {
					dst[j] = int32(j)
				}
			}
		}
	}
	return nil
}

// atLoss gathers the per-position values all [Rows·T] at the loss positions into dst.
func (b *RLBatch) atLoss(dst, all []float64) []float64 {
	dst = dst[:0]
	for _, p := range b.LossPos {
		dst = append(dst, all[p])
	}
	return dst
}

// replay sets graph g's side inputs for b: temperature, kept sets, and the recorded experts and selections
// (nil when their replay is off).
func (b *RLBatch) replay(g *model.Graph[float32], temperature float64, moeLayers []int) {
	g.Policy.Temperature = temperature
	g.Policy.KeptOffsets, g.Policy.KeptIDs = b.KeptOffsets, b.KeptIDs
	if g.DSA != nil {
		for l, ly := range g.DSA.Layers {
			ly.Forced = nil
			if b.Selected != nil {
				ly.Forced = b.Selected[l]
			}
		}
	}
	for _, l := range moeLayers {
		g.Routing[l].Forced = nil
		if b.Experts != nil {
			g.Routing[l].Forced = b.Experts[l]
		}
	}
}
