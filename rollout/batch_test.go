package rollout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
)

// eosModel is a small dense-and-sparse-capable MoE model whose LM head row of EOS is scaled up, so that a
// random policy ends its completions at different lengths instead of always at max_new_tokens.
func eosModel(t *testing.T) (*model.Engine, *data.Tokenizer, envs.Family) {
	t.Helper()
	cfg := configs.DefaultModel()
	cfg.HiddenSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads = 32, 3, 2
	cfg.QLoraRank, cfg.KVLoraRank, cfg.QKNopeHeadDim, cfg.QKRopeHeadDim, cfg.VHeadDim = 16, 16, 8, 8, 8
	cfg.IntermediateSize, cfg.MoEIntermediateSize, cfg.NRoutedExperts, cfg.NGroup, cfg.TopkGroup = 64, 16, 4, 2, 1
	cfg.IndexNHeads, cfg.IndexHeadDim, cfg.IndexTopk = 2, 16, 6
	cfg.MaxPositionEmbeddings = 256
	p := model.NewParams(cfg)
	p.Init(7)
	head := p.MustGet("lm_head.weight")
	D := cfg.HiddenSize
	for j := range D {
		head[int(data.EOS)*D+j] *= 25
	}
	tok, err := data.NewTokenizer(cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	fam, err := envs.New("math", envs.Options{HeldOut: 0.1, Params: map[string]string{"digits": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	return model.NewEngine(p), tok, fam
}

// bitwise says whether the engine's batched rows equal one-at-a-time decoding bit for bit here (see
// model/engine_batch.go): with the row-dot kernels (AVX2) or with gonum's BLAS.
func bitwise() bool { return kernels.RowsInvariant(8, 4) || kernels.Backend() == "gonum" }

// sameGroup reports the first difference between two groups' records (timings aside); exact says whether
// log π_old must match bit for bit (else within 1e-5).
func sameGroup(a, b *data.Group, exact bool) error {
	if a.GroupID != b.GroupID || len(a.Trajectories) != len(b.Trajectories) {
		return fmt.Errorf("group %s with %d completions vs %s with %d", a.GroupID, len(a.Trajectories), b.GroupID, len(b.Trajectories))
	}
	for i := range a.Trajectories {
		x, y := a.Trajectories[i], b.Trajectories[i]
		switch {
		case !slices.Equal(x.CompletionTokens, y.CompletionTokens):
			return fmt.Errorf("completion %d: tokens %v vs %v", i, x.CompletionTokens, y.CompletionTokens)
		case !slices.Equal(x.KeptIDs, y.KeptIDs) || !slices.Equal(x.KeptOffsets, y.KeptOffsets):
			return fmt.Errorf("completion %d: kept sets differ", i)
		case !slices.Equal(x.ExpertIDs, y.ExpertIDs):
			return fmt.Errorf("completion %d: expert ids differ", i)
		case !slices.Equal(x.DSATopK, y.DSATopK) || x.DSALayers != y.DSALayers || x.DSAK != y.DSAK:
			return fmt.Errorf("completion %d: DSA selections differ", i)
		case x.FinishReason != y.FinishReason || x.Reward != y.Reward || !reflect.DeepEqual(x.RewardParts, y.RewardParts):
			return fmt.Errorf("completion %d: finish %s reward %v vs finish %s reward %v", i, x.FinishReason, x.Reward, y.FinishReason, y.Reward)
		case !slices.Equal(x.PromptTokens, y.PromptTokens) || !slices.Equal(x.LossMask, y.LossMask):
			return fmt.Errorf("completion %d: prompt or loss mask differ", i)
		}
		for j := range x.LogpOld {
			d := x.LogpOld[j] - y.LogpOld[j]
			if exact && d != 0 || d > 1e-5 || d < -1e-5 {
				return fmt.Errorf("completion %d token %d: log π_old %v vs %v", i, j, x.LogpOld[j], y.LogpOld[j])
			}
		}
	}
	return nil
}

// TestBatchedSamplingMatchesOneAtATime: groups sampled with continuous batching (decode batches of 1 to 16
// completions, a finished completion's slot taking the next one across groups) record exactly what sampling
// each group alone with a decode batch of 1 records — tokens, log π_old (bit for bit where bitwise says so),
// kept sets, experts, DSA selections, finish reasons and rewards — for dense and sparse policies with
// completions ending at different lengths; and the result does not depend on the decode batch.
func TestBatchedSamplingMatchesOneAtATime(t *testing.T) {
	eng, tok, fam := eosModel(t)
	var reqs []GroupRequest
	for i := range 5 {
		task := fam.Sample(rand.New(rand.NewPCG(uint64(i), 9)), data.SplitTrain)
		reqs = append(reqs, GroupRequest{Task: task, GroupID: fmt.Sprintf("g%d", i), Version: 3})
	}
	seed := func(i int) *rand.Rand { return rand.New(rand.NewPCG(uint64(40+i), 2)) }
	for _, sparse := range []bool{false, true} {
		sc := SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 0.95, TopK: 50}, GroupSize: 4, MaxNewTokens: 10,
			Sparse: sparse, RecordSelection: sparse, DecodeBatch: 1}
		// one at a time: each group alone, one completion per step
		alone := NewGroupSampler(eng, tok, fam, "w", sc)
		var want []*data.Group
		lengths := map[int]bool{}
		for i, r := range reqs {
			g, err := alone.Sample(context.Background(), r.Task, r.GroupID, r.Version, seed(i))
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range g.Trajectories {
				lengths[len(tr.CompletionTokens)] = true
				if err := tr.Validate(eng.Cfg.VocabSize); err != nil {
					t.Fatal(err)
				}
			}
			want = append(want, g)
		}
		if len(lengths) < 3 {
			t.Fatalf("sparse %v: completion lengths %v: the test needs completions ending at different lengths", sparse, lengths)
		}
		for _, batch := range []int{3, 8, 16} {
			t.Run(fmt.Sprintf("sparse=%v/batch=%d", sparse, batch), func(t *testing.T) {
				sc.DecodeBatch = batch
				gs := NewGroupSampler(eng, tok, fam, "w", sc)
				in := slices.Clone(reqs)
				for i := range in {
					in[i].RNG = seed(i)
				}
				got, err := gs.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if err := sameGroup(want[i], got[i], bitwise()); err != nil {
						t.Fatalf("group %s: one at a time vs batch %d: %v", reqs[i].GroupID, batch, err)
					}
				}
				if gs.InFlight() != 0 || gs.Waiting() != 0 {
					t.Fatalf("after the run: %d groups in flight, %d completions waiting", gs.InFlight(), gs.Waiting())
				}
			})
		}
	}
}

// TestGroupSamplerErrors: a request that cannot be sampled is refused at admission, naming the reason, and
// leaves the sampler idle.
func TestGroupSamplerErrors(t *testing.T) {
	eng, tok, fam := eosModel(t)
	gs := NewGroupSampler(eng, tok, fam, "w", SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 1}, GroupSize: 2, MaxNewTokens: 300, DecodeBatch: 4})
	task := fam.Sample(rand.New(rand.NewPCG(1, 1)), data.SplitTrain)
	for _, tc := range []struct {
		req  GroupRequest
		want string
	}{
		{GroupRequest{Task: task, GroupID: "a"}, "sampling needs a generator"},
		{GroupRequest{Task: task, GroupID: "b", RNG: rand.New(rand.NewPCG(1, 1))}, "exceed max_position_embeddings"},
	} {
		err := gs.Admit(context.Background(), tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Admit %s: %v, want an error saying %q", tc.req.GroupID, err, tc.want)
		}
		if gs.InFlight() != 0 {
			t.Fatalf("a refused request stayed admitted")
		}
	}
}
