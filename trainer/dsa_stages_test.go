// The DSA stages on the tiny recipe: pretrain → dsa_warmup → dsa_sparse runs, the warm-up changes only the
// indexers, the sparse stage changes both the backbone and the indexers, and the DSA metrics are logged; on a
// text corpus and on chat-format task documents (one per row, packing padded).
package trainer

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/model"
)

func TestDSAStages(t *testing.T) {
	for _, tc := range []struct {
		name string
		sets []string
	}{
		{"text", nil},
		{"chat", []string{"data.generator=kvretrieval", "data.format=chat", "data.packing=padded", `data.params={"length":"32","key_len":"3"}`,
			"data.ops=[single]", "train.seq_len=64"}},
	} {
		t.Run(tc.name, func(t *testing.T) { testDSAStages(t, tc.sets) })
	}
}

func testDSAStages(t *testing.T, sets []string) {
	dir := t.TempDir()
	cfg := tinyConfig(t, append([]string{"train.steps=3", "train.eval_every=0", "train.eval_batches=1", "schedule.warmup_steps=0", "model.index_topk=8"}, sets...)...)
	base := cfg.Stages[0]
	warm, sparse := base, base
	warm.Name, warm.Kind = "warm", configs.KindDSAWarmup
	warm.Optimizer.LR = 1e-2
	sparse.Name, sparse.Kind = "sparse", configs.KindDSASparse
	sparse.DSA.EvalEnv, sparse.DSA.EvalTasks = "kvretrieval", 1
	cfg.Stages = append(cfg.Stages, warm, sparse)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := Execute(context.Background(), cfg, Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	pre := loadWeights(t, filepath.Join(dir, "checkpoints", "pretrain-3"))
	w := loadWeights(t, filepath.Join(dir, "checkpoints", "warm-3"))
	sp := loadWeights(t, filepath.Join(dir, "checkpoints", "sparse-3"))
	changed := func(a, b *model.Params, indexer bool) bool {
		for i, s := range a.Specs {
			if isIndexerSpec(s) == indexer && s.Role != model.Buffer && !slices.Equal(a.Data[i], b.Data[i]) {
				return true
			}
		}
		return false
	}
	if !changed(pre, w, true) || changed(pre, w, false) {
		t.Fatalf("warm-up: indexers changed %v (want true), backbone changed %v (want false)", changed(pre, w, true), changed(pre, w, false))
	}
	if !changed(w, sp, true) || !changed(w, sp, false) {
		t.Fatalf("sparse: indexers changed %v, backbone changed %v (want both)", changed(w, sp, true), changed(w, sp, false))
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		for k, v := range r.Values {
			if strings.HasPrefix(k, "dsa/") || strings.HasPrefix(k, "eval/") {
				seen[r.Stage+" "+k] = true
				if k == "dsa/topk_recall_rel" && (v <= 0 || v > 1+1e-6) {
					t.Errorf("%s %s = %v outside (0, 1]", r.Stage, k, v)
				}
			}
		}
	}
	for _, k := range []string{"warm dsa/indexer_kl", "warm dsa/indexer_kl/layer1", "warm dsa/topk_recall", "warm dsa/topk_recall_rel",
		"sparse dsa/indexer_kl", "sparse dsa/topk_recall_rel", "sparse eval/loss", "sparse eval/kvretrieval/accuracy", "sparse dsa/indexer_grad_norm"} {
		if !seen[k] {
			t.Errorf("metric %q not logged", k)
		}
	}
}

// TestEnvAccuracyFamilyParams: the long-context eval builds its family from the stage's data section as the
// corpus does — data.ops are kvretrieval's kinds only (a math section's default ops are no family param),
// flaw and follow-ups are left out — in both formats.
func TestEnvAccuracyFamilyParams(t *testing.T) {
	cfg := tinyConfig(t)
	p := model.NewParams(cfg.Model)
	p.Init(1)
	for _, d := range []configs.Data{
		{Source: "synthetic", Generator: "math", Format: "chat", HeldOut: 0.05, Ops: []string{"+", "-", "*"},
			Params: map[string]string{"digits": "1", "flaw": "0.5"}},
		{Source: "synthetic", Generator: "kvretrieval", Format: "text", HeldOut: 0.05, Ops: []string{"single"},
			Params: map[string]string{"length": "32", "followups": "2"}},
	} {
		acc, err := EnvAccuracy(p, d.Generator, configs.Stage{Data: d, RL: configs.RL{MaxNewTokens: 96}}, 2, false, 1)
		if err != nil || acc < 0 || acc > 1 {
			t.Errorf("%s (%s): accuracy %v, err %v", d.Generator, d.Format, acc, err)
		}
	}
}
