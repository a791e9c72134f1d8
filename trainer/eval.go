// eval.go: evaluation of a checkpoint: the held-out next-token loss (and perplexity) on a data section's
// held-out split. Task accuracy joins once task environments exist.
package trainer

import (
	"fmt"
	"math"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
)

// EvalResult is what `trainer eval` prints.
type EvalResult struct {
	Checkpoint string             `json:"checkpoint"`
	Step       int                `json:"step,omitempty"`
	Stage      string             `json:"stage,omitempty"`
	Metrics    map[string]float64 `json:"metrics"`
	Warnings   []string           `json:"warnings,omitempty"`
}

// Evaluate loads the checkpoint in dir and computes eval/loss and eval/perplexity on `batches` held-out
// batches of the data section and batch shape of stage st.
func Evaluate(dir string, cfg *configs.Config, st configs.Stage, batches int) (*EvalResult, error) {
	ck, err := checkpoints.Load(dir, checkpoints.LoadOptions{WeightsOnly: true})
	if err != nil {
		return nil, err
	}
	p, err := ck.ToParams()
	if err != nil {
		return nil, err
	}
	tok, err := data.NewTokenizer(p.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	if st.Train.SeqLen > p.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("eval: seq_len %d exceeds the checkpoint's max_position_embeddings %d", st.Train.SeqLen, p.Config.MaxPositionEmbeddings)
	}
	g, err := model.NewGraph[float32](p.Config, p.Data, model.GraphOptions{B: st.Train.BatchSize, T: st.Train.SeqLen})
	if err != nil {
		return nil, err
	}
	defer g.Close()
	loss, err := heldOutLoss(g, st, cfg.Seed, tok, batches)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	return &EvalResult{Checkpoint: dir, Step: ck.State.Step, Stage: ck.State.Stage, Warnings: ck.Warnings,
		Metrics: map[string]float64{"eval/loss": loss, "eval/perplexity": math.Exp(loss)}}, nil
}
