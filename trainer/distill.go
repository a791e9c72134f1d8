// distill.go: the distill stage kind. A student (the stage's init_from) learns from several teachers, each
// the checkpoint of the task families it is the expert of (distill.teachers), on prompts of those families
// mixed by weight (rl.env: mix with env_params.families). Method on_policy (the default) is an rl stage in
// all but the advantage (Agarwal et al. 2024, arXiv:2306.13649; Thinking Machines 2025, "On-Policy
// Distillation"; DeepSeek-V3.2 §3 distils its specialists):
//
//  1. the student samples G completions per prompt through the same rollout machinery as GRPO (jobs,
//     rollout.Worker, GroupSampler with Keep Routing and Keep Sampling Mask recorded, transports, admission);
//  2. the worker's rollout.TeacherScorer has the family's teacher read every completion teacher-forced and
//     attaches log π_T of each sampled token to the trajectory (data.Trajectory.TeacherLogp) before it is
//     published: the learner never loads a teacher when its workers run elsewhere;
//  3. the learner trains each token with the advantage Â_t = α·(R_i − mean R) − λ·(ℓ_old,t − ℓ_T,t)
//     (grpo.DistillAdvantages, Batch.TokenAdv) through the clipped surrogate of grpo.Loss, i.e. it minimises
//     the per-token reverse KL to the teacher, optionally mixed with the verifier's reward (α =
//     distill.reward_weight, λ = distill.kl_coef);
//  4. with distill.kl exact (or both) the workers also attach the teacher renormalised over each token's
//     kept set (data.Trajectory.TeacherKeptLogp, rollout.KeptRecorded) and the policy head adds
//     λ·Σ_t w_t·KL_t, the exact reverse KL over the kept set (grpo.ExactKL, model.KeptKL), with w_t the GRPO
//     loss's token aggregation weights; exact alone drops the sampled-token advantage.
//
// Metrics besides the rl ones: distill/<env>/kl (the sampled-token reverse KL per token, per family),
// distill/kl, with the exact KL distill/<env>/kl_exact and distill/kl_exact (per loss token, at the policy
// pass), distill/<env>/accuracy, distill/teacher_vs_decode, and eval/<env>/accuracy for every family of
// the mixture.

package trainer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/grpo"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// distillState is what an rl stage carries when it is an on-policy distill stage.
type distillState struct {
	klCoef, rewardWeight float64
	sampled, exact       bool                   // the reverse-KL terms distill.kl selects
	scorer               *rollout.TeacherScorer // nil when the workers run in other processes
}

// newDistillStage builds the distill stage of st over the student params.
func newDistillStage(ctx context.Context, r *Run, st configs.Stage, params *model.Params) (stage, error) {
	d := st.Distill
	if d.Method == configs.DistillSFT {
		return newSFTDistillStage(ctx, r, st, params)
	}
	ds := &distillState{klCoef: d.KLCoef, rewardWeight: d.RewardWeight,
		sampled: d.KL != configs.DistillKLExact, exact: d.KL != configs.DistillKLSampled}
	if st.RL.Bus.Transport == "inproc" || st.RL.Bus.LocalWorkers {
		sc, err := LoadTeacherScorer(ctx, st, params.Config, r.stageFinal, filepath.Join(r.Dir, "cache"), r.Log)
		if err != nil {
			return nil, err
		}
		ds.scorer = sc
	}
	st.RL.DynamicSampling = false // every group carries a distillation signal, equal rewards or not
	s, err := newRLStage(r, st, params)
	if err != nil {
		return nil, err
	}
	s.distill = ds
	return s, nil
}

// LoadTeacherScorer loads the teachers of distill stage st (each distinct checkpoint once) into a scorer
// by task family. stageFinal resolves stage:<name> references (nil: refused, e.g. in a worker process
// without the run directory); s3:// references are downloaded under cache. A teacher whose vocabulary or
// tokenizer differs from the student's (model student) is refused, naming the family and the checkpoint.
func LoadTeacherScorer(ctx context.Context, st configs.Stage, student configs.Model, stageFinal func(string) (string, error), cache string, log interface{ Info(string, ...any) }) (*rollout.TeacherScorer, error) {
	tok, err := data.NewTokenizer(student.VocabSize)
	if err != nil {
		return nil, fmt.Errorf("stages[%s]: the student's tokenizer: %w", st.Name, err)
	}
	wantTok, err := tok.HFJSON()
	if err != nil {
		return nil, err
	}
	engines := map[string]*model.Engine{} // by resolved directory
	sc := &rollout.TeacherScorer{Teachers: map[string]*model.Engine{}, Kept: TeacherKeptScoring(st)}
	for _, fam := range st.Distill.TeacherFamilies() {
		ref := st.Distill.Teachers[fam]
		key := fmt.Sprintf("stages[%s].distill.teachers.%s", st.Name, fam)
		dir := ref
		switch name, isStage := configs.StageRef(ref); {
		case isStage && stageFinal == nil:
			return nil, fmt.Errorf("%s: %s names a stage of the run, which this process cannot resolve: pass the run directory (trainer rollout --run-dir), or give the checkpoint directory or an s3:// URL", key, ref)
		case isStage:
			if dir, err = stageFinal(name); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
		case objstore.IsURL(ref):
			if dir, err = objstore.Resolve(ctx, ref, cache); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
		}
		if e, ok := engines[dir]; ok {
			sc.Teachers[fam] = e
			continue
		}
		p, _, err := checkpoints.LoadParams(dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if err := checkTeacherVocab(p.Config, student, dir, wantTok); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if att, what, err := CheckpointAttention(dir); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		} else if att != configs.AttentionDense {
			return nil, fmt.Errorf("%s: teacher %s is %s; teacher scoring reads completions with dense attention, so a sparse-attention teacher is not supported", key, dir, what)
		}
		e := model.NewEngine(p)
		engines[dir], sc.Teachers[fam] = e, e
		if log != nil {
			log.Info("teacher loaded", "stage", st.Name, "family", fam, "checkpoint", dir)
		}
	}
	return sc, nil
}

// TeacherKeptScoring is over which sets the workers of distill stage st attach the teacher for the exact
// KL: none with distill.kl sampled (or method sft); the recorded kept sets when the learner replays them
// (rl.keep_sampling_mask); else the whole vocabulary, the learner's set then.
func TeacherKeptScoring(st configs.Stage) rollout.KeptScoring {
	switch {
	case st.Distill.Method != configs.DistillOnPolicy || st.Distill.KL == configs.DistillKLSampled:
		return rollout.KeptNone
	case st.RL.KeepSamplingMask:
		return rollout.KeptRecorded
	}
	return rollout.KeptWholeVocab
}

// checkTeacherVocab refuses a teacher whose vocabulary size or tokenizer.json differs from the student's:
// its log-probabilities would be of other tokens.
func checkTeacherVocab(teacher, student configs.Model, dir string, studentTok []byte) error {
	if teacher.VocabSize != student.VocabSize {
		return fmt.Errorf("teacher %s has vocab_size %d, the student %d: a teacher must share the student's tokenizer and vocabulary", dir, teacher.VocabSize, student.VocabSize)
	}
	b, err := os.ReadFile(filepath.Join(dir, checkpoints.TokenizerFile))
	if err != nil {
		if os.IsNotExist(err) {
			return nil // no tokenizer.json: the vocabulary size decides (the byte tokenizer)
		}
		return fmt.Errorf("teacher %s: %w", dir, err)
	}
	if !bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace(studentTok)) {
		return fmt.Errorf("teacher %s: its %s differs from the student's tokenizer: a teacher must share the student's tokenizer and vocabulary", dir, checkpoints.TokenizerFile)
	}
	return nil
}

// check refuses a group whose trajectories do not carry one teacher log-probability per completion
// token (its workers run without teachers), or, with the exact KL, the teacher over the kept sets (its
// workers run with another distill.kl): configuration errors.
func (d *distillState) check(g *data.Group) error {
	for i := range g.Trajectories {
		tr := &g.Trajectories[i]
		n := len(tr.CompletionTokens)
		if n > 0 && len(tr.TeacherLogp) != n {
			return fmt.Errorf("group %s trajectory %d (%s): %d teacher log-probabilities for %d tokens: was it sampled by a worker without teachers? `trainer rollout` must serve the distill stage", g.GroupID, i, tr.Env, len(tr.TeacherLogp), n)
		}
		if d.exact && n > 0 && len(tr.TeacherKeptOffsets) != n+1 {
			return fmt.Errorf("group %s trajectory %d (%s): no teacher log-probabilities over the kept sets (teacher_kept_logp), which distill.kl exact/both needs: was it sampled by a worker run with distill.kl sampled?", g.GroupID, i, tr.Env)
		}
	}
	return nil
}

// distillMetrics are distill/<env>/kl (the sampled-token reverse KL per token, ℓ_old − ℓ_T, per family),
// distill/kl over the batch, and distill/<env>/accuracy (the share of the family's sampled completions the
// verifier found correct), and distill/teacher_vs_decode: the workers' time scoring with the teachers over
// their time sampling, summed over the batch's trajectories (both measured in the same workers).
func distillMetrics(trajs []*data.Trajectory) (map[string]float64, error) {
	byEnv := map[string]grpo.ReverseKL{}
	var all grpo.ReverseKL
	correct, count := map[string]float64{}, map[string]float64{}
	var teacherS, sampleS float64
	prefilled := map[string]bool{} // the sampler's prompt prefill is once per group (every trajectory records it)
	for _, tr := range trajs {
		teacherS += float64(tr.Timings["teacher_s"])
		sampleS += float64(tr.Timings["decode_s"])
		if !prefilled[tr.GroupID] {
			prefilled[tr.GroupID] = true
			sampleS += float64(tr.Timings["prefill_s"])
		}
		correct[tr.Env] += float64(tr.RewardParts["correct"])
		count[tr.Env]++
		n := len(tr.CompletionTokens)
		l := grpo.Layout{Seq: make([]int, n), LossMask: tr.LossMask, NumSeqs: 1}
		old, teacher := make([]float64, n), make([]float64, n)
		for t := range n {
			old[t], teacher[t] = float64(tr.LogpOld[t]), float64(tr.TeacherLogp[t])
		}
		k, err := grpo.SampledReverseKL(l, old, teacher)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", tr.GroupID, err)
		}
		e := byEnv[tr.Env]
		e.Sum, e.Tokens = e.Sum+k.Sum, e.Tokens+k.Tokens
		byEnv[tr.Env] = e
		all.Sum, all.Tokens = all.Sum+k.Sum, all.Tokens+k.Tokens
	}
	m := map[string]float64{"distill/kl": all.Mean()}
	if sampleS > 0 {
		m["distill/teacher_vs_decode"] = teacherS / sampleS
	}
	envNames := make([]string, 0, len(byEnv))
	for e := range byEnv {
		envNames = append(envNames, e)
	}
	slices.Sort(envNames)
	for _, e := range envNames {
		m["distill/"+e+"/kl"] = byEnv[e].Mean()
		m["distill/"+e+"/accuracy"] = correct[e] / count[e]
	}
	return m, nil
}
