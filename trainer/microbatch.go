// microbatch.go: what the stages that train on token batches (lm.go, dsa_stages.go) share: the step's
// micro-batches from a batcher and their data cursor in the checkpoint, gradient accumulation over the
// micro-batches, and the MoE expert loads that drive the aux-loss-free balance bias (dsv32-spec.md §5.2).

package trainer

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
)

// packerCursor is a batch stage's data cursor in trainer_state.json: its batcher's position
// (data.PackerState or data.DocPackerState).
type packerCursor struct {
	Packer json.RawMessage `json:"packer"`
}

// cursorOf returns src's position as a data cursor.
func cursorOf(src batcher) (json.RawMessage, error) {
	state, err := src.State()
	if err != nil {
		return nil, err
	}
	return json.Marshal(packerCursor{Packer: state})
}

// restoreCursor moves src to the position of a data cursor written by cursorOf.
func restoreCursor(src batcher, raw json.RawMessage) error {
	var cur packerCursor
	if err := json.Unmarshal(raw, &cur); err != nil {
		return fmt.Errorf("data cursor: %w", err)
	}
	return src.Restore(cur.Packer)
}

// nextBatches fills the step's micro-batches from src and returns their trained-token count.
func nextBatches(src batcher, batches []data.Batch) (int, error) {
	total := 0
	for i := range batches {
		if err := src.Next(&batches[i]); err != nil {
			return 0, err
		}
		total += batches[i].Tokens
	}
	if total == 0 {
		return 0, errors.New("the accumulated batch has no trained token")
	}
	return total, nil
}

// accumulate adds the graph's gradients of the tensors of (spec index of) groups into their Grad.
// The adds run on the kernel workers in chunks of normChunk elements (each element's sum is the same).
func accumulate(g *model.Graph[float32], groups []ParamGroup, of []int) {
	var cs []gradChunk
	for k, gi := range of {
		n := min(len(g.Grad(gi)), len(groups[k].Grad))
		for lo := 0; lo < n; lo += normChunk {
			cs = append(cs, gradChunk{k, lo, min(lo+normChunk, n)})
		}
	}
	kernels.For(len(cs), 2*normChunk, func(c int) {
		ch := cs[c]
		kernels.Axpy(1, g.Grad(of[ch.g])[ch.lo:ch.hi], groups[ch.g].Grad[ch.lo:ch.hi])
	})
}

// moeLoad counts, per decoder layer, the tokens routed to each expert over a step's micro-batches (nil for
// dense layers).
type moeLoad [][]int

func newMoELoad(c configs.Model) moeLoad {
	l := make(moeLoad, c.NumHiddenLayers)
	for i := range l {
		if c.IsMoE(i) {
			l[i] = make([]int, c.NRoutedExperts)
		}
	}
	return l
}

func (l moeLoad) reset() {
	for _, x := range l {
		clear(x)
	}
}

// add counts the routing of the graph's last run.
func (l moeLoad) add(g *model.Graph[float32]) {
	for i, r := range g.Routing {
		if r != nil {
			for e, c := range r.Load {
				l[i][e] += c
			}
		}
	}
}

// cv is the mean over MoE layers of the load's coefficient of variation (moe/load_cv); ok is false without
// MoE layers.
func (l moeLoad) cv() (cv float64, ok bool) {
	n := 0
	for _, x := range l {
		if x != nil {
			cv += model.LoadCV(x)
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return cv / float64(n), true
}

// updateBiases moves each MoE layer's e_score_correction_bias against its load (aux-loss-free balancing).
func (l moeLoad) updateBiases(p *model.Params) {
	for i, x := range l {
		if x != nil {
			model.UpdateBias(p.Get(model.LayerPrefix(i)+"mlp.gate.e_score_correction_bias"), x, p.Config.BiasUpdateSpeed)
		}
	}
}
