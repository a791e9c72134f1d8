// Tests of teacher scoring: the log-probabilities a worker attaches equal a standalone forward of the
// teacher over the same tokens, and each family's groups are scored by that family's teacher.

package rollout

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
)

// teacherEngine is a small random model seeded by seed (teachers differ by their seed).
func teacherEngine(t *testing.T, seed uint64) *model.Engine {
	t.Helper()
	cfg, err := configs.Load("tiny", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := model.NewParams(cfg.Model)
	p.Init(seed)
	return model.NewEngine(p)
}

// standaloneLogp is the teacher's forward over prompt+completion in one fresh session: logp of each
// completion token given everything before it.
func standaloneLogp(t *testing.T, e *model.Engine, tr data.Trajectory) []float32 {
	t.Helper()
	seq := append(append([]int32{}, tr.PromptTokens...), tr.CompletionTokens...)
	s, err := e.NewSession(len(seq))
	if err != nil {
		t.Fatal(err)
	}
	all := make([]float32, len(seq))
	if err := s.Prefill(seq, nil, all); err != nil {
		t.Fatal(err)
	}
	return all[len(tr.PromptTokens)-1 : len(seq)-1]
}

// TestTeacherScoringByWorker: two workers sample groups of a math+logic mixture on the in-process
// transport with a TeacherScorer of two different teachers; every trajectory carries the log-probabilities
// of its own family's teacher, equal to a standalone forward of that teacher, and differing from the other
// teacher's.
func TestTeacherScoringByWorker(t *testing.T) {
	mathT, logicT := teacherEngine(t, 11), teacherEngine(t, 22)
	scorer := &TeacherScorer{Teachers: map[string]*model.Engine{"math": mathT, "logic": logicT}}
	mix, err := envs.New("mix", envs.Options{HeldOut: 0.1, Params: map[string]string{"families": "math,logic", "math.digits": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewInProc(8, 272)
	gate := NewGate(0, 0, 10*time.Second, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, id := range []string{"w0", "w1"} {
		s := tinySampler(t, id, 2)
		s.Family = mix
		w := &Worker{Sampler: s, Weights: gate, Scorer: scorer}
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(ctx, tr) }()
	}
	defer func() { cancel(); tr.Close(); wg.Wait() }()
	var jobs []Job
	for i := range 8 {
		task := mix.Sample(rand.New(rand.NewPCG(uint64(i), 7)), data.SplitTrain)
		jobs = append(jobs, Job{GroupID: GroupID{"distill", 0, i}.String(), Task: task, Seed: uint64(100 + i)})
	}
	if err := tr.Dispatch(ctx, 0, jobs); err != nil {
		t.Fatal(err)
	}
	got, err := tr.Collect(ctx, len(jobs))
	if err != nil {
		t.Fatal(err)
	}
	families := map[string]int{}
	for _, g := range got {
		for i, traj := range g.Trajectories {
			families[traj.Env]++
			own, other := mathT, logicT
			if traj.Env == "logic" {
				own, other = logicT, mathT
			}
			want, alt := standaloneLogp(t, own, traj), standaloneLogp(t, other, traj)
			if len(traj.TeacherLogp) != len(traj.CompletionTokens) {
				t.Fatalf("group %s trajectory %d: %d teacher log-probabilities for %d tokens", g.GroupID, i, len(traj.TeacherLogp), len(traj.CompletionTokens))
			}
			differs := false
			for k := range want {
				if d := traj.TeacherLogp[k] - want[k]; d > 1e-5 || d < -1e-5 {
					t.Fatalf("group %s (%s) trajectory %d token %d: attached %v, standalone forward of its teacher %v", g.GroupID, traj.Env, i, k, traj.TeacherLogp[k], want[k])
				}
				differs = differs || traj.TeacherLogp[k] != alt[k]
			}
			if !differs {
				t.Fatalf("group %s (%s) trajectory %d: equals the other family's teacher too", g.GroupID, traj.Env, i)
			}
		}
	}
	if families["math"] == 0 || families["logic"] == 0 {
		t.Fatalf("trajectories by family %v: want both families", families)
	}
}

// TestTeacherScoringUnknownFamily: a trajectory whose family has no teacher is an error naming it.
func TestTeacherScoringUnknownFamily(t *testing.T) {
	s := &TeacherScorer{Teachers: map[string]*model.Engine{"math": teacherEngine(t, 1)}}
	g := &data.Group{GroupID: "g", Trajectories: []data.Trajectory{{GroupID: "g", Env: "code", PromptTokens: []int32{1, 2}, CompletionTokens: []int32{3}}}}
	if err := s.Score(context.Background(), g); err == nil || !strings.Contains(err.Error(), `no teacher for task family "code"`) {
		t.Fatalf("got %v", err)
	}
}

// standaloneKeptLogp is the teacher's distribution at completion token k of tr renormalised over set (the
// whole vocabulary when set is empty), from a fresh session that prefills prompt + completion[:k] at once,
// renormalised here in float64.
func standaloneKeptLogp(t *testing.T, e *model.Engine, tr data.Trajectory, k int, set []int32) []float64 {
	t.Helper()
	seq := append(append([]int32{}, tr.PromptTokens...), tr.CompletionTokens[:k]...)
	s, err := e.NewSession(len(seq))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PrefillBatch(seq, nil); err != nil {
		t.Fatal(err)
	}
	if len(set) == 0 {
		for v := range s.Logits {
			set = append(set, int32(v))
		}
	}
	var sum float64
	for _, id := range set {
		sum += math.Exp(float64(s.Logits[id]))
	}
	out := make([]float64, len(set))
	for j, id := range set {
		out[j] = float64(s.Logits[id]) - math.Log(sum)
	}
	return out
}

// TestTeacherKeptScoringByWorker: a worker sampling at top_p 0.9 (kept sets smaller than the vocabulary)
// with a scorer for the exact KL attaches, at every loss token, the teacher's log-probabilities renormalised
// over the recorded kept set (KeptRecorded) or over the whole vocabulary (KeptWholeVocab), equal to a
// standalone forward of the teacher on the same tokens renormalised over those ids; the groups pass
// Group.Validate and survive the codec.
func TestTeacherKeptScoringByWorker(t *testing.T) {
	teacher := teacherEngine(t, 11)
	for _, mode := range []KeptScoring{KeptRecorded, KeptWholeVocab} {
		scorer := &TeacherScorer{Teachers: map[string]*model.Engine{"math": teacher}, Kept: mode}
		tr := NewInProc(4, 272)
		gate := NewGate(0, 0, 10*time.Second, nil)
		ctx, cancel := context.WithCancel(context.Background())
		s := tinySampler(t, "w0", 2)
		s.Params.TopP = 0.9
		w := &Worker{Sampler: s, Weights: gate, Scorer: scorer}
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(ctx, tr) }()
		var jobs []Job
		for i := range 2 {
			task := s.Family.Sample(rand.New(rand.NewPCG(uint64(i), 7)), data.SplitTrain)
			jobs = append(jobs, Job{GroupID: GroupID{"distill", 0, i}.String(), Task: task, Seed: uint64(100 + i)})
		}
		if err := tr.Dispatch(ctx, 0, jobs); err != nil {
			t.Fatal(err)
		}
		got, err := tr.Collect(ctx, len(jobs))
		cancel()
		tr.Close()
		<-done
		if err != nil {
			t.Fatal(err)
		}
		partial := 0 // loss tokens whose kept set is smaller than the vocabulary
		for _, g := range got {
			if err := g.Validate(272); err != nil {
				t.Fatal(err)
			}
			if _, err := data.EncodeGroup(g, 272); err != nil {
				t.Fatal(err)
			}
			for i, traj := range g.Trajectories {
				if len(traj.TeacherKeptOffsets) != len(traj.CompletionTokens)+1 {
					t.Fatalf("mode %d group %s trajectory %d: %d teacher kept offsets for %d tokens", mode, g.GroupID, i, len(traj.TeacherKeptOffsets), len(traj.CompletionTokens))
				}
				for k := range traj.CompletionTokens {
					set := traj.KeptIDs[traj.KeptOffsets[k]:traj.KeptOffsets[k+1]]
					if mode == KeptWholeVocab {
						set = nil
					} else if len(set) > 0 {
						partial++
					}
					want := standaloneKeptLogp(t, teacher, traj, k, set)
					gotK := traj.TeacherKeptLogp[traj.TeacherKeptOffsets[k]:traj.TeacherKeptOffsets[k+1]]
					if len(gotK) != len(want) {
						t.Fatalf("mode %d group %s trajectory %d token %d: %d entries, want %d", mode, g.GroupID, i, k, len(gotK), len(want))
					}
					for j := range want {
						if d := float64(gotK[j]) - want[j]; math.Abs(d) > 1e-4 {
							t.Fatalf("mode %d group %s trajectory %d token %d entry %d: attached %v, standalone %v", mode, g.GroupID, i, k, j, gotK[j], want[j])
						}
					}
				}
			}
		}
		if mode == KeptRecorded && partial == 0 {
			t.Fatal("no kept set smaller than the vocabulary was sampled: the test does not cover renormalisation")
		}
	}
}
