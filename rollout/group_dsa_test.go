package rollout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
)

// TestGroupSamplerSparse: with a sparse-attention policy the group's completions (forked from one sparse
// prefill) record, per position and layer, exactly the keys a fresh sparse session selects when fed the same
// tokens, and the experts it routes to; the trajectories pass Validate with their dsa_topk. So do they when
// the completions are decoded together (a decode batch of 2 for 3 completions: a slot is reused mid-group).
func TestGroupSamplerSparse(t *testing.T) {
	for _, batch := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("decode_batch=%d", batch), func(t *testing.T) { testGroupSamplerSparse(t, batch) })
	}
}

func testGroupSamplerSparse(t *testing.T, batch int) {
	cfg := configs.DefaultModel()
	cfg.HiddenSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads = 32, 2, 2
	cfg.QLoraRank, cfg.KVLoraRank, cfg.QKNopeHeadDim, cfg.QKRopeHeadDim, cfg.VHeadDim = 16, 16, 8, 8, 8
	cfg.IntermediateSize, cfg.MoEIntermediateSize, cfg.NRoutedExperts, cfg.NGroup, cfg.TopkGroup = 64, 16, 4, 2, 1
	cfg.IndexNHeads, cfg.IndexHeadDim, cfg.IndexTopk = 2, 16, 5
	cfg.MaxPositionEmbeddings = 256
	p := model.NewParams(cfg)
	p.Init(3)
	tok, err := data.NewTokenizer(cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	fam, err := envs.New("math", envs.Options{HeldOut: 0.1, Params: map[string]string{"digits": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	eng := model.NewEngine(p)
	gs := NewGroupSampler(eng, tok, fam, "w0", SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 1}, GroupSize: 3, MaxNewTokens: 12,
		Sparse: true, RecordSelection: true, DecodeBatch: batch})
	task := fam.Sample(rand.New(rand.NewPCG(1, 2)), data.SplitTrain)
	g, err := gs.Sample(context.Background(), task, "g0", 0, rand.New(rand.NewPCG(5, 6)))
	if err != nil {
		t.Fatal(err)
	}
	L, K := cfg.NumHiddenLayers, cfg.IndexTopk
	moe := []int{}
	for l := 0; l < L; l++ {
		if cfg.IsMoE(l) {
			moe = append(moe, l)
		}
	}
	for i, tr := range g.Trajectories {
		if err := tr.Validate(cfg.VocabSize); err != nil {
			t.Fatalf("trajectory %d: %v", i, err)
		}
		if tr.DSALayers != L || tr.DSAK != K {
			t.Fatalf("trajectory %d: dsa_topk strides %d × %d, want %d × %d", i, tr.DSALayers, tr.DSAK, L, K)
		}
		fresh, err := eng.NewDSASession(len(tr.PromptTokens)+len(tr.CompletionTokens), K)
		if err != nil {
			t.Fatal(err)
		}
		all := append(slices.Clone(tr.PromptTokens), tr.CompletionTokens...)
		for pos, id := range all {
			if err := fresh.Step(id, nil, nil); err != nil {
				t.Fatal(err)
			}
			for l := 0; l < L; l++ {
				want := fresh.Selected[l]
				got := tr.DSATopK[(pos*L+l)*K : (pos*L+l+1)*K]
				if !slices.Equal(got, want) {
					t.Fatalf("trajectory %d position %d layer %d: recorded keys %v, a fresh sparse session selects %v", i, pos, l, got, want)
				}
			}
			for m, l := range moe {
				for k, e := range fresh.Experts[l] {
					if got := tr.ExpertIDs[(pos*len(moe)+m)*tr.TopK+k]; int32(got) != e {
						t.Fatalf("trajectory %d position %d layer %d: recorded expert %d, fresh session %d", i, pos, l, got, e)
					}
				}
			}
		}
	}
	// recording needs sparse decoding
	dense := NewGroupSampler(eng, tok, fam, "w1", SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 1}, GroupSize: 2, MaxNewTokens: 4, RecordSelection: true})
	if _, err := dense.Sample(context.Background(), task, "g1", 0, rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Fatal("recording DSA selections with dense decoding was accepted")
	}
}
