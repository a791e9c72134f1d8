// params.go: the glue every training stage shares between the network, the optimizer and checkpoints: one
// optimizer group per trained tensor, optimizer state to and from checkpoint tensors, and a packed batch laid
// into the graph's step input.

package trainer

import (
	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
)

// paramGroup is the optimizer group of tensor i: its memory, a gradient buffer, and weight decay on matrices
// only (not on norms and biases).
func paramGroup(p *model.Params, i int) ParamGroup {
	sp := p.Specs[i]
	return ParamGroup{Name: sp.Name, Value: p.Data[i], Grad: make([]float32, sp.Size()), Decay: sp.Role == model.Weight}
}

// trainedGroups returns the optimizer groups of every tensor the graph differentiates, and the spec index of
// each (to copy the graph's gradients into the groups).
func trainedGroups(p *model.Params, g *model.Graph[float32]) (groups []ParamGroup, specIndex []int) {
	for i := range p.Specs {
		if g.Grads[i] != nil {
			groups = append(groups, paramGroup(p, i))
			specIndex = append(specIndex, i)
		}
	}
	return groups, specIndex
}

// optimizerTensors returns the optimizer's state as checkpoint tensors, their names prefixed.
func optimizerTensors(prefix string, o *AdamW) []checkpoints.Tensor {
	var out []checkpoints.Tensor
	for _, t := range o.State() {
		out = append(out, checkpoints.Tensor{Name: prefix + t.Name, Shape: t.Shape, Data: t.Data})
	}
	return out
}

// namedTensor converts a checkpoint tensor for AdamW.LoadState, dropping a name prefix.
func namedTensor(t checkpoints.Tensor, prefix string) NamedTensor {
	return NamedTensor{Name: t.Name[len(prefix):], Shape: t.Shape, Data: t.Data}
}

// namedTensors converts a whole optimizer state.
func namedTensors(ts []checkpoints.Tensor) []NamedTensor {
	out := make([]NamedTensor, len(ts))
	for i, t := range ts {
		out[i] = namedTensor(t, "")
	}
	return out
}

// fillStep lays a packed batch into the graph's step input (token and target ids are shared, not copied).
func fillStep(in *model.StepInput, b *data.Batch, scale float64) {
	in.Tokens, in.Targets = b.Inputs, b.Targets
	in.DocStart = b.DocStart
	copy(in.Weights, b.LossMask)
	for i, l := range b.Lengths {
		in.Lengths[i] = int32(l)
	}
	in.Scale = scale
}
