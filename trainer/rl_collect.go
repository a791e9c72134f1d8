// rl_collect.go: how an rl step gets its groups: it draws the step's prompts (deterministically from the
// seed and the group id), dispatches them, collects the groups, admits each against the stage (size, length,
// policy version, staleness) or drops and counts it, and with dynamic sampling replaces groups whose rewards
// are all equal.

package trainer

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/rollout"
)

// Reasons a collected group is dropped rather than trained on (counted in rollout/dropped_<reason>).
const (
	dropFailed  = "failed"  // the worker could not sample it (or it was over the max payload)
	dropStale   = "stale"   // sampled with weights older than rl.max_staleness allows
	dropInvalid = "invalid" // from a policy version the learner has not made yet
	dropShape   = "shape"   // another group size, or longer than the learner's graph
	dropZeroStd = "zero_std"
)

// collect dispatches the step's prompts and collects their groups, ordered by id. With dynamic sampling,
// groups whose rewards are all equal are dropped (and counted) and replaced by new prompts, at most
// max_refill of them; a batch still short after that is topped up with dropped groups (their advantages are
// zero, so they add no policy gradient) rather than abort the run.
func (s *rlStage) collect(ctx context.Context, step int) (groups []*data.Group, zeroStd int, err error) {
	rc := s.rc
	s.stepDrops = map[string]string{}
	if s.rollouts != nil {
		s.tasks = map[string]envs.Task{}
	}
	next, refills := 0, 0
	var spare []*data.Group
	for len(groups) < rc.PromptsPerStep {
		n := rc.PromptsPerStep - len(groups)
		if next >= rc.PromptsPerStep {
			if n = min(n, rc.MaxRefill-refills); n <= 0 {
				break
			}
			refills += n
		}
		jobs, err := s.jobs(step, next, n)
		if err != nil {
			return nil, 0, err
		}
		if err := s.transport.Dispatch(ctx, step, jobs); err != nil {
			return nil, 0, err
		}
		next += n
		got, err := s.transport.Collect(ctx, n)
		if err != nil {
			return nil, 0, err
		}
		select {
		case e := <-s.workerErrs: // nil channel (no in-process workers): never ready
			return nil, 0, fmt.Errorf("rollout: %w", e)
		default:
		}
		slices.SortFunc(got, byGroupID)
		for _, g := range got {
			ok, err := s.admit(g)
			if err != nil {
				return nil, 0, err
			}
			if !ok {
				continue
			}
			if rc.DynamicSampling && allEqualRewards(g) {
				zeroStd++
				spare = append(spare, g)
				continue
			}
			groups = append(groups, g)
		}
	}
	for len(groups) < rc.PromptsPerStep && len(spare) > 0 {
		groups, spare = append(groups, spare[0]), spare[1:]
		zeroStd--
	}
	for _, g := range spare {
		s.stepDrops[g.GroupID] = dropZeroStd
	}
	if len(groups) == 0 {
		return nil, 0, fmt.Errorf("no usable group (every one failed or was stale); see the rollout log")
	}
	slices.SortFunc(groups, byGroupID)
	return groups, zeroStd, nil
}

func byGroupID(a, b *data.Group) int { return strings.Compare(a.GroupID, b.GroupID) }

func allEqualRewards(g *data.Group) bool {
	for _, t := range g.Trajectories {
		if t.Reward != g.Trajectories[0].Reward {
			return false
		}
	}
	return true
}

// jobs returns n of the step's prompts, numbered from first (refills continue the numbering). A task whose
// prompt is longer than rl.max_prompt_tokens is redrawn (deterministically) and counted.
func (s *rlStage) jobs(step, first, n int) ([]rollout.Job, error) {
	seed := s.run.Config.Seed
	out := make([]rollout.Job, n)
	for i := range out {
		id := rollout.GroupID{Stage: s.stage.Name, Step: step, Index: first + i}.String()
		for attempt := 0; ; attempt++ {
			if attempt == 100 {
				return nil, fmt.Errorf("stages[%s].rl.max_prompt_tokens: %d is too small: 100 tasks in a row had longer prompts", s.stage.Name, s.rc.MaxPromptTokens)
			}
			task := s.family.Sample(labeledRNG(seed, fmt.Sprintf("task/%s/%d", id, attempt), 1), data.SplitTrain)
			prompt, err := rollout.RenderTaskPrompt(s.tok, s.family, task)
			if err != nil {
				return nil, fmt.Errorf("task %s: %w", task.ID, err)
			}
			if len(prompt) > s.rc.MaxPromptTokens {
				s.tooLong++
				continue
			}
			out[i] = rollout.Job{GroupID: id, Task: task, Version: s.version, Seed: seedOf(seed, "sample/"+id)}
			if s.tasks != nil {
				s.tasks[id] = task
			}
			break
		}
	}
	return out, nil
}

// admit takes a collected group (its records checked by the transport, data.Group.Validate): it is recorded
// as handled (so that a checkpoint acks it), checked against the stage — its shape against the config, its
// policy version and staleness — and said to be trainable or dropped and counted. A group the stage's replay
// cannot use (experts or selections of another model layout) is a configuration error.
func (s *rlStage) admit(g *data.Group) (bool, error) {
	s.uncommitted = append(s.uncommitted, g.GroupID)
	reason, why, err := s.check(g)
	if err != nil || reason == "" {
		return err == nil, err
	}
	s.drops[reason]++
	s.stepDrops[g.GroupID] = reason
	if reason != dropFailed {
		s.run.Log.Warn("dropped a group", "stage", s.stage.Name, "group", g.GroupID, "reason", reason, "why", why)
	}
	return false, nil
}

// check returns why group g cannot be trained on ("" when it can), or an error when it reveals a
// configuration error.
func (s *rlStage) check(g *data.Group) (reason, why string, err error) {
	if len(g.Trajectories) == 0 {
		return dropFailed, "", nil
	}
	if len(g.Trajectories) != s.rc.GroupSize {
		return dropShape, fmt.Sprintf("%d completions, rl.group_size is %d (a worker started with another config?)", len(g.Trajectories), s.rc.GroupSize), nil
	}
	lag := int64(0)
	for i := range g.Trajectories {
		tr := &g.Trajectories[i]
		if tr.PolicyVersion > s.version {
			return dropInvalid, fmt.Sprintf("trajectory %d: policy version %d is newer than the learner's %d", i, tr.PolicyVersion, s.version), nil
		}
		if lp, lc := len(tr.PromptTokens), len(tr.CompletionTokens); lp > s.rc.MaxPromptTokens || lp+lc-1 > s.batch.T {
			return dropShape, fmt.Sprintf("trajectory %d: prompt of %d tokens and completion of %d exceed the graph length %d (rl.max_prompt_tokens %d)", i, lp, lc, s.batch.T, s.rc.MaxPromptTokens), nil
		}
		if s.layout.keepRouting && len(s.layout.moeLayers) > 0 && (tr.MoELayers != len(s.layout.moeLayers) || tr.TopK != s.layout.topK) {
			return "", "", fmt.Errorf("group %s: rl.keep_routing is on but the trajectory records experts of %d MoE layers × %d per token, the model has %d × %d (was it sampled by another model?)",
				g.GroupID, tr.MoELayers, tr.TopK, len(s.layout.moeLayers), s.layout.topK)
		}
		if s.layout.keepSelection && (tr.DSALayers != s.layout.selectionLayers || tr.DSAK != s.layout.selectionK) {
			return "", "", fmt.Errorf("group %s: rl.keep_selection is on but the trajectory's dsa_topk has %d layers × %d keys, want %d × %d (was it sampled by a worker decoding densely, or with another index_topk?)",
				g.GroupID, tr.DSALayers, tr.DSAK, s.layout.selectionLayers, s.layout.selectionK)
		}
		lag = max(lag, s.version-tr.PolicyVersion)
	}
	if s.distill != nil {
		if err := s.distill.check(g); err != nil {
			return "", "", err
		}
	}
	if lag > int64(s.rc.MaxStaleness) {
		return dropStale, fmt.Sprintf("sampled %d versions ago, rl.max_staleness is %d", lag, s.rc.MaxStaleness), nil
	}
	return "", "", nil
}
