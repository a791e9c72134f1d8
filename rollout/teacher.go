// teacher.go: teacher scoring for on-policy distillation (Agarwal et al. 2024, "On-Policy Distillation of
// Language Models"; Thinking Machines 2025, "On-Policy Distillation"; DeepSeek-V3.2 §3 distils its
// specialists into one model). After a worker samples a group, the task family's teacher reads each
// completion teacher-forced after the prompt and gives log π_T(y_t | x, y_<t) for every completion token
// (full vocabulary, temperature 1); the worker attaches them to the trajectory (data.Trajectory.TeacherLogp)
// before publishing, so the learner never loads a teacher and teachers scale with the workers.
//
// For the exact KL over the kept set (grpo/distill_exact.go) the scorer also attaches, at each loss token,
// the teacher's distribution renormalised over the set the learner trains on (TeacherScorer.Kept):
//
//	ln q_v = z_v − log Σ_{u∈K_t} exp(z_u)   for v ∈ K_t   (z the teacher's logits, temperature 1)
//
// where K_t is the recorded kept set, or the whole vocabulary when it is empty (top_p 1) or when the learner
// does not replay kept sets (KeptWholeVocab: rl.keep_sampling_mask off); data.Trajectory.TeacherKeptLogp.
// It costs |K_t| floats per token on the wire, so it is attached only when the exact KL is configured.
//
// The scorer runs after GroupSampler.Sample and outside its decode loop: it prefills the prompt once per
// group and forks the cached prompt for each completion, as the sampler does. Each trajectory's scoring
// time goes to Timings["teacher_s"] (the first one's includes the prompt's prefill).

package rollout

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
)

// Scorer adds to a sampled group what the learner needs besides the samples (the worker loop calls it
// between Sample and Publish).
type Scorer interface {
	Score(ctx context.Context, g *data.Group) error
}

// TeacherScorer scores each trajectory with the teacher of its task family (Trajectory.Env). Engines are
// read-only, so one scorer serves every worker of a process.
type TeacherScorer struct {
	// Teachers maps a task family to its teacher's engine; several families may share one engine.
	Teachers map[string]*model.Engine
	// Kept says over which sets the teacher's renormalised log-probabilities are attached for the exact KL
	// (KeptNone, the zero value: not attached).
	Kept KeptScoring
}

// KeptScoring selects the sets of TeacherKeptLogp.
type KeptScoring int

const (
	KeptNone       KeptScoring = iota // no TeacherKeptLogp (the sampled-token KL only)
	KeptRecorded                      // each loss token's recorded kept set; the whole vocabulary where it is empty
	KeptWholeVocab                    // the whole vocabulary at every loss token (the learner ignores kept sets)
)

// TaskEnv is the task family a trajectory of task t records: the task's own family (a mixture of families
// hands out tasks of its members), or the sampler's family when the task does not name one.
func TaskEnv(f envs.Family, t envs.Task) string {
	if t.Family != "" {
		return t.Family
	}
	return f.Name()
}

// Score fills TeacherLogp (and with Kept, TeacherKeptOffsets and TeacherKeptLogp) of every trajectory of g. A trajectory whose family has no teacher is an error
// naming the family and the teachers there are.
func (s *TeacherScorer) Score(ctx context.Context, g *data.Group) error {
	if len(g.Trajectories) == 0 {
		return nil
	}
	// trajectories of one group share the prompt and (always, in practice) the family: one prefill each
	var prefix, work *model.Session
	var prefixEnv string
	var prefixPrompt []int32
	for i := range g.Trajectories {
		if err := ctx.Err(); err != nil {
			return err
		}
		tr := &g.Trajectories[i]
		t0 := time.Now()
		e, ok := s.Teachers[tr.Env]
		if !ok {
			return fmt.Errorf("teacher scoring: group %s trajectory %d: no teacher for task family %q (teachers: %v)", g.GroupID, i, tr.Env, s.families())
		}
		n := len(tr.PromptTokens) + len(tr.CompletionTokens)
		if prefix == nil || prefixEnv != tr.Env || !slices.Equal(prefixPrompt, tr.PromptTokens) || work.MaxLen < n {
			var err error
			if prefix, err = e.NewSession(max(n, len(tr.PromptTokens))); err != nil {
				return fmt.Errorf("teacher scoring: group %s: %w", g.GroupID, err)
			}
			if work, err = e.NewSession(prefix.MaxLen); err != nil {
				return fmt.Errorf("teacher scoring: group %s: %w", g.GroupID, err)
			}
			if err := prefix.Prefill(tr.PromptTokens, nil, nil); err != nil {
				return fmt.Errorf("teacher scoring: group %s: prompt: %w", g.GroupID, err)
			}
			prefixEnv, prefixPrompt = tr.Env, tr.PromptTokens
		}
		work.CopyFrom(prefix)
		if err := s.scoreCompletion(work, tr); err != nil {
			return fmt.Errorf("teacher scoring: group %s trajectory %d: %w", g.GroupID, i, err)
		}
		if tr.Timings == nil {
			tr.Timings = map[string]float32{}
		}
		tr.Timings["teacher_s"] = float32(time.Since(t0).Seconds())
	}
	return nil
}

// scoreCompletion steps session s (which holds the prompt, its Logits those of the prompt's last position)
// through tr's completion and sets tr.TeacherLogp, log π_T(c_t | prompt, c_<t) over the whole vocabulary
// [len(c)], and with sc.Kept set TeacherKeptOffsets/TeacherKeptLogp, the teacher renormalised over each loss
// token's set.
func (sc *TeacherScorer) scoreCompletion(s *model.Session, tr *data.Trajectory) error {
	c := tr.CompletionTokens
	tr.TeacherLogp = make([]float32, len(c))
	tr.TeacherKeptOffsets, tr.TeacherKeptLogp = nil, nil
	if sc.Kept != KeptNone {
		tr.TeacherKeptOffsets = make([]int32, 1, len(c)+1)
	}
	for t, tok := range c {
		tr.TeacherLogp[t] = model.LogSoftmaxAt(s.Logits, tok)
		if sc.Kept != KeptNone {
			if tr.LossMask[t] == 1 {
				var set []int32
				if sc.Kept == KeptRecorded {
					set = tr.KeptIDs[tr.KeptOffsets[t]:tr.KeptOffsets[t+1]]
				}
				tr.TeacherKeptLogp = KeptLogSoftmax(tr.TeacherKeptLogp, s.Logits, set)
			}
			tr.TeacherKeptOffsets = append(tr.TeacherKeptOffsets, int32(len(tr.TeacherKeptLogp)))
		}
		if t+1 == len(c) {
			break
		}
		if err := s.Step(tok, nil); err != nil {
			return fmt.Errorf("completion token %d: %w", t, err)
		}
	}
	return nil
}

// KeptLogSoftmax appends to dst the log-softmax of logits [V] renormalised over the ids of set (in its
// order; the whole vocabulary, ids 0..V−1, when set is empty): z_v − log Σ_{u∈set} exp(z_u).
func KeptLogSoftmax(dst []float32, logits []float32, set []int32) []float32 {
	m := math.Inf(-1)
	if len(set) == 0 {
		for _, v := range logits {
			m = math.Max(m, float64(v))
		}
	} else {
		for _, id := range set {
			m = math.Max(m, float64(logits[id]))
		}
	}
	var sum float64
	if len(set) == 0 {
		for _, v := range logits {
			sum += math.Exp(float64(v) - m)
		}
	} else {
		for _, id := range set {
			sum += math.Exp(float64(logits[id]) - m)
		}
	}
	lse := m + math.Log(sum)
	if len(set) == 0 {
		for _, v := range logits {
			dst = append(dst, float32(float64(v)-lse))
		}
		return dst
	}
	for _, id := range set {
		dst = append(dst, float32(float64(logits[id])-lse))
	}
	return dst
}

func (s *TeacherScorer) families() []string {
	var fs []string
	for f := range s.Teachers {
		fs = append(fs, f)
	}
	slices.Sort(fs)
	return fs
}
