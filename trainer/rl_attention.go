// rl_attention.go: with which attention an rl stage's policy runs, dense or DeepSeek Sparse Attention: from
// the pipeline (configs.PolicyAttention) or from the trainer state of the checkpoint it starts from. The
// learner and its rollout workers must attend alike.

package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
)

// RLPolicyAttention says with which attention (configs.AttentionDense or AttentionSparse) the rl stage st's
// policy runs, and why: from the pipeline (configs.PolicyAttention) or, when the weights come from an
// init_from checkpoint, from that checkpoint's trainer state (kind dsa_sparse, or an rl checkpoint that
// records a sparse policy). Rollout workers in other processes need it to decode as the learner trains
// (rollout.GroupSampler.Sparse, and RecordSelection with rl.keep_selection).
func RLPolicyAttention(cfg *configs.Config, st configs.Stage) (string, string, error) {
	i := slices.IndexFunc(cfg.Stages, func(x configs.Stage) bool { return x.Name == st.Name })
	if i < 0 { // a stage built outside its config (tests): only its own init_from can tell
		cfg = &configs.Config{Stages: []configs.Stage{st}}
		i = 0
	}
	att, dir, why := cfg.PolicyAttention(i)
	if dir == "" {
		return att, why, nil
	}
	att, what, err := CheckpointAttention(dir)
	if err != nil {
		return "", "", fmt.Errorf("stages[%s]: reading the attention of the init_from checkpoint: %w", st.Name, err)
	}
	return att, why + " (" + what + ")", nil
}

// CheckpointAttention says with which attention (configs.AttentionDense or AttentionSparse) the policy of the
// checkpoint in dir runs, and what kind of checkpoint told: a dsa_sparse checkpoint is sparse, an rl checkpoint
// records its policy's attention in its trainer state, any other one (and a checkpoint made elsewhere, without
// trainer state) is dense.
func CheckpointAttention(dir string) (attention, what string, err error) {
	path := filepath.Join(dir, checkpoints.TrainerStateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return configs.AttentionDense, "a checkpoint made elsewhere (no trainer state): dense attention", nil
	}
	if err != nil {
		return "", "", err
	}
	var ts checkpoints.TrainerState
	if err := json.Unmarshal(b, &ts); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	if ts.Kind == configs.KindDSASparse {
		return configs.AttentionSparse, "a dsa_sparse checkpoint", nil
	}
	if raw, ok := ts.Extra[attentionExtraKey]; ok {
		var a string
		if err := json.Unmarshal(raw, &a); err != nil || (a != configs.AttentionDense && a != configs.AttentionSparse) {
			return "", "", fmt.Errorf("%s: extra.%s is %s, want \"dense\" or \"sparse\"", path, attentionExtraKey, raw)
		}
		return a, fmt.Sprintf("an rl checkpoint of a %s policy", a), nil
	}
	return configs.AttentionDense, fmt.Sprintf("a %s checkpoint", ts.Kind), nil
}
