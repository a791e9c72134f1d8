// teacher.go: teacher scoring for on-policy distillation (Agarwal et al. 2024, "On-Policy Distillation of
// Language Models"; Thinking Machines 2025, "On-Policy Distillation"; DeepSeek-V3.2 §3 distils its
// specialists into one model). After a worker samples a group, the task family's teacher reads each
// completion teacher-forced after the prompt and gives log π_T(y_t | x, y_<t) for every completion token
// (full vocabulary, temperature 1); the worker attaches them to the trajectory (data.Trajectory.TeacherLogp)
// before publishing, so the learner never loads a teacher and teachers scale with the workers.
//
// The scorer runs after GroupSampler.Sample and outside its decode loop: it prefills the prompt once per
// group and forks the cached prompt for each completion, as the sampler does. Each trajectory's scoring
// time goes to Timings["teacher_s"] (the first one's includes the prompt's prefill).

package rollout

import (
	"context"
	"fmt"
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
}

// TaskEnv is the task family a trajectory of task t records: the task's own family (a mixture of families
// hands out tasks of its members), or the sampler's family when the task does not name one.
func TaskEnv(f envs.Family, t envs.Task) string {
	if t.Family != "" {
		return t.Family
	}
	return f.Name()
}

// Score fills TeacherLogp of every trajectory of g. A trajectory whose family has no teacher is an error
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
		lp, err := TeacherLogp(work, tr.CompletionTokens)
		if err != nil {
			return fmt.Errorf("teacher scoring: group %s trajectory %d: %w", g.GroupID, i, err)
		}
		tr.TeacherLogp = lp
		if tr.Timings == nil {
			tr.Timings = map[string]float32{}
		}
		tr.Timings["teacher_s"] = float32(time.Since(t0).Seconds())
	}
	return nil
}

// TeacherLogp returns log π(c_t | cached prefix, c_<t) for each token of completion c, [len(c)], stepping
// session s (which holds the prompt, its Logits those of the prompt's last position) through c.
func TeacherLogp(s *model.Session, completion []int32) ([]float32, error) {
	out := make([]float32, len(completion))
	for t, tok := range completion {
		out[t] = model.LogSoftmaxAt(s.Logits, tok)
		if t+1 == len(completion) {
			break
		}
		if err := s.Step(tok, nil); err != nil {
			return nil, fmt.Errorf("completion token %d: %w", t, err)
		}
	}
	return out, nil
}

func (s *TeacherScorer) families() []string {
	var fs []string
	for f := range s.Teachers {
		fs = append(fs, f)
	}
	slices.Sort(fs)
	return fs
}
