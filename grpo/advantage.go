// Group-relative advantages (GRPO, DeepSeek-V3.2 §3.1): each prompt's G
// completions form a group and each completion's advantage is its reward minus
// the group mean, Â_i = R_i − mean(R), optionally divided by the group's sample
// standard deviation plus eps (verl norm_adv_by_std_in_grpo; Dr.GRPO and the
// paper leave it off). A group whose rewards are all equal gets advantages of
// exactly 0 (not rounding noise), so it contributes no policy gradient; the
// share of such groups is reported as reward/frac_zero_std.

package grpo

import (
	"fmt"
	"math"
)

// GroupStat describes one group's rewards.
type GroupStat struct {
	Mean float64 // mean reward
	Std  float64 // sample standard deviation (n−1 denominator, as torch.std)
	// ZeroStd is true when every reward of the group is identical: its
	// advantages are exactly 0 and it teaches nothing (DAPO filters such groups).
	ZeroStd bool
}

// AdvantageStats summarises a batch of groups for the metrics.
type AdvantageStats struct {
	Groups      []GroupStat // one per group, in input order
	RewardMean  float64     // mean over all rewards (reward/mean)
	RewardStd   float64     // sample std over all rewards (reward/std); 0 for one reward
	FracZeroStd float64     // share of groups with ZeroStd (reward/frac_zero_std)
}

// GroupAdvantages returns one advantage per reward. rewards holds len/groupSize
// consecutive groups of groupSize completions each (rewards[g*groupSize+j] is
// completion j of group g). Without stdNormalize the advantage is R − mean(R)
// over the group; with it, (R − mean)/(std + eps) where std is the unbiased
// sample standard deviation sqrt(Σ(R−mean)²/(G−1)), as verl (torch.std) uses.
// Groups whose rewards are all equal get exact zeros in both modes.
//
// Errors: groupSize < 2 (a group of one has no baseline), a length that is not a
// multiple of groupSize, eps < 0 or non-finite, a non-finite reward.
func GroupAdvantages(rewards []float64, groupSize int, stdNormalize bool, eps float64) ([]float64, AdvantageStats, error) {
	var st AdvantageStats
	if groupSize < 2 {
		return nil, st, fmt.Errorf("grpo: advantages: group size %d: a group needs at least 2 completions", groupSize)
	}
	if len(rewards)%groupSize != 0 {
		return nil, st, fmt.Errorf("grpo: advantages: %d rewards is not a multiple of group size %d", len(rewards), groupSize)
	}
	if eps < 0 || math.IsNaN(eps) || math.IsInf(eps, 0) {
		return nil, st, fmt.Errorf("grpo: advantages: eps %v: must be finite and >= 0", eps)
	}
	for i, r := range rewards {
		if math.IsNaN(r) || math.IsInf(r, 0) {
			return nil, st, fmt.Errorf("grpo: advantages: rewards[%d] (group %d) = %v: not finite", i, i/groupSize, r)
		}
	}
	adv := make([]float64, len(rewards))
	nGroups := len(rewards) / groupSize
	st.Groups = make([]GroupStat, nGroups)
	zero := 0
	for g := range nGroups {
		r := rewards[g*groupSize : (g+1)*groupSize]
		a := adv[g*groupSize : (g+1)*groupSize]
		mean, std := meanStd(r)
		allEqual := true
		for _, x := range r[1:] {
			if x != r[0] {
				allEqual = false
				break
			}
		}
		st.Groups[g] = GroupStat{Mean: mean, Std: std, ZeroStd: allEqual}
		if allEqual {
			zero++
			continue // advantages stay exactly 0
		}
		for j, x := range r {
			a[j] = x - mean
			if stdNormalize {
				a[j] /= std + eps
			}
		}
	}
	if nGroups > 0 {
		st.FracZeroStd = float64(zero) / float64(nGroups)
		st.RewardMean, st.RewardStd = meanStd(rewards)
	}
	return adv, st, nil
}

// meanStd returns the mean and the sample standard deviation (n−1
// denominator; 0 for fewer than two values) of xs, in two passes.
func meanStd(xs []float64) (mean, std float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range xs {
		d := x - mean
		ss += d * d
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1))
}
