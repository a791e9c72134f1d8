// batch.go: continuous batching of group sampling. A group is admitted by rendering its prompt and
// prefilling it once into a prefix session; its G completions then wait for decode slots. Every step fills
// the free slots with waiting completions (each a copy of its group's prefix cache), draws one token for
// every slot from its logits with the completion's own generator, and feeds all the drawn tokens to the engine
// in one batched step (model.Batch). A completion ends at EOS or max_new_tokens, and its slot takes the next
// waiting completion — of the same group or of a later one — at the next step. A group is done when its last
// completion ends; it is graded by the family's verifier and handed back.
//
// The records of a completion (tokens, log π_old, kept sets, experts per position, DSA selections) do not
// depend on what else shares the batch: each completion draws from its own generator, seeded from the
// group's generator in completion order at admission, and the engine computes each row as it computes a
// sequence decoded alone (bit for bit with gonum's BLAS, within float rounding with OpenBLAS; see
// model/engine_batch.go).

package rollout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
)

// GroupRequest asks for one group: its task, id and the policy version of the weights that sample it.
type GroupRequest struct {
	Task    envs.Task
	GroupID string
	Version int64
	// RNG seeds the completions' generators (G draws at admission); nil for a greedy request.
	RNG *rand.Rand
	// Greedy decodes one completion by argmax (evaluation) instead of G sampled ones.
	Greedy bool
	// Tag is the caller's, handed back with the group (a worker's job).
	Tag any
}

// Finished is a group whose completions have all ended.
type Finished struct {
	Group *data.Group
	Tag   any
}

// groupRun is an admitted group: its prefilled prompt and its completions.
type groupRun struct {
	req           GroupRequest
	prompt        []int32
	prefix        *model.Session // the prompt's cache, until the group's last completion has started
	promptExperts []uint16
	promptSel     []int32
	prefill       time.Duration
	params        SamplingParams
	rngs          []*rand.Rand // per completion; nil entries for greedy
	trajs         []data.Trajectory
	next, ended   int // completions started, ended
}

// slot is one completion being decoded.
type slot struct {
	g       *groupRun
	i       int // completion index in its group
	s       *model.Session
	sampler Sampler
	start   time.Time
	tok     int32 // the token drawn this step (fed to the engine)
}

// decoder is the continuous-batching state of a GroupSampler.
type decoder struct {
	batch   *model.Batch
	active  []*slot
	waiting []*groupRun // admitted groups with completions not yet started, in admission order
	spare   []*model.Session
	in      []model.DecodeInput
	ready   []Finished // groups of a tool environment, sampled whole at admission (episode.go)
}

// Capacity is the number of completions decoded together (SamplerConfig.DecodeBatch, at least 1).
func (g *GroupSampler) Capacity() int { return max(g.DecodeBatch, 1) }

// Waiting is the number of admitted completions that have not started.
func (g *GroupSampler) Waiting() int {
	n := 0
	for _, r := range g.dec.waiting {
		n += len(r.trajs) - r.next
	}
	return n
}

// InFlight is the number of admitted groups not yet handed back.
func (g *GroupSampler) InFlight() int {
	seen := map[*groupRun]bool{}
	for _, r := range g.dec.waiting {
		seen[r] = true
	}
	for _, sl := range g.dec.active {
		seen[sl.g] = true
	}
	return len(seen) + len(g.dec.ready)
}

// WantsMore says whether another group should be admitted to keep every slot busy at the next step.
func (g *GroupSampler) WantsMore() bool {
	return len(g.dec.active)+g.Waiting() < g.Capacity()
}

// session returns a spare session (dense or sparse, as the sampler decodes) holding at least maxLen positions.
func (g *GroupSampler) session(maxLen int) (*model.Session, error) {
	d := &g.dec
	for i, s := range d.spare {
		if s.MaxLen >= maxLen {
			d.spare = append(d.spare[:i], d.spare[i+1:]...)
			return s, nil
		}
	}
	if len(d.spare) > 0 { // none is long enough: drop one, so that the pool stays as large as the work
		d.spare = d.spare[1:]
	}
	maxLen = (maxLen + 63) / 64 * 64 // room for slightly longer prompts later
	maxLen = min(maxLen, g.Engine.Cfg.MaxPositionEmbeddings)
	if g.Sparse {
		ds, err := g.Engine.NewDSASession(maxLen, g.SparseTopK)
		if err != nil {
			return nil, fmt.Errorf("rollout: sparse decoding: %w", err)
		}
		return ds.Session, nil
	}
	return g.Engine.NewSession(maxLen)
}

// Admit renders the request's prompt, prefills it once and queues the group's completions. An error leaves
// nothing admitted. A tool environment's group is sampled whole here, as multi-turn episodes
// (sampleEpisodes: each pauses at its tool calls), and handed back by the next Advance.
func (g *GroupSampler) Admit(ctx context.Context, req GroupRequest) error {
	if err := g.init(); err != nil {
		return err
	}
	if te := g.ToolEnv(); te != nil {
		if req.Greedy || req.RNG == nil {
			return fmt.Errorf("rollout: group %s: a tool environment's greedy episode is decoded by GreedyEpisode", req.GroupID)
		}
		grp, err := g.sampleEpisodes(ctx, te, req.Task, req.GroupID, req.Version, req.RNG)
		if err != nil {
			return err
		}
		g.dec.ready = append(g.dec.ready, Finished{Group: grp, Tag: req.Tag})
		return nil
	}
	params, n := g.Params, g.GroupSize
	if req.Greedy {
		params, n = SamplingParams{Temperature: 0, TopP: 1}, 1
	} else if req.RNG == nil {
		return fmt.Errorf("rollout: group %s: sampling needs a generator", req.GroupID)
	}
	if err := params.Validate(); err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("rollout: group %s: group size %d", req.GroupID, n)
	}
	prompt, err := RenderPrompt(g.Tok, req.Task)
	if err != nil {
		return fmt.Errorf("rollout: rendering task %s: %w", req.Task.ID, err)
	}
	maxLen := len(prompt) + g.MaxNewTokens
	if maxLen > g.Engine.Cfg.MaxPositionEmbeddings {
		return fmt.Errorf("rollout: prompt (%d tokens) + max_new_tokens (%d) exceed max_position_embeddings %d", len(prompt), g.MaxNewTokens, g.Engine.Cfg.MaxPositionEmbeddings)
	}
	prefix, err := g.session(maxLen)
	if err != nil {
		return err
	}
	r := &groupRun{req: req, prompt: prompt, prefix: prefix, params: params, rngs: make([]*rand.Rand, n), trajs: make([]data.Trajectory, n)}
	if err := g.prefill(r); err != nil {
		g.dec.spare = append(g.dec.spare, prefix)
		return err
	}
	for i := range r.rngs {
		if !req.Greedy {
			r.rngs[i] = rand.New(rand.NewPCG(req.RNG.Uint64(), req.RNG.Uint64()))
		}
		r.trajs[i] = g.newTrajectory(r)
	}
	g.dec.waiting = append(g.dec.waiting, r)
	return nil
}

// prefill fills r's prefix session with the prompt and records the prompt positions' experts (and DSA
// selections): batched through the layers for dense attention, token by token for sparse (the engine has no
// batched sparse prefill).
func (g *GroupSampler) prefill(r *groupRun) error {
	start := time.Now()
	s := r.prefix
	s.Reset()
	r.promptExperts = make([]uint16, 0, len(r.prompt)*len(g.moeLayer)*g.Engine.Cfg.NumExpertsPerTok)
	if g.Sparse {
		for _, id := range r.prompt {
			if err := s.Step(id, nil); err != nil {
				return fmt.Errorf("rollout: sparse prefill: %w", err)
			}
			r.promptExperts = g.appendExperts(r.promptExperts, s)
			if g.RecordSelection {
				r.promptSel = appendSelection(r.promptSel, s)
			}
		}
	} else {
		perPos := make([][][]int32, len(r.prompt))
		if err := s.PrefillBatch(r.prompt, perPos); err != nil {
			return fmt.Errorf("rollout: prefill: %w", err)
		}
		for _, ex := range perPos {
			for _, l := range g.moeLayer {
				for _, id := range ex[l] {
					r.promptExperts = append(r.promptExperts, uint16(id))
				}
			}
		}
	}
	r.prefill = time.Since(start)
	return nil
}

// newTrajectory starts the record of one completion of r: the prompt and its positions' records.
func (g *GroupSampler) newTrajectory(r *groupRun) data.Trajectory {
	t := r.req.Task
	tr := data.Trajectory{GroupID: r.req.GroupID, PromptID: t.ID, Env: TaskEnv(g.Family, t), PolicyVersion: r.req.Version, WorkerID: g.WorkerID,
		PromptTokens: r.prompt, KeptOffsets: []int32{0}, MoELayers: len(g.moeLayer), TopK: g.Engine.Cfg.NumExpertsPerTok, FinishReason: "length"}
	tr.ExpertIDs = append(make([]uint16, 0, len(r.promptExperts)+g.MaxNewTokens*len(g.moeLayer)*tr.TopK), r.promptExperts...)
	if len(g.moeLayer) == 0 {
		tr.ExpertIDs, tr.TopK = nil, 0
	}
	if g.RecordSelection {
		tr.DSALayers, tr.DSAK = g.Engine.Cfg.NumHiddenLayers, r.prefix.TopK
		tr.DSATopK = append(make([]int32, 0, len(r.promptSel)+g.MaxNewTokens*tr.DSALayers*tr.DSAK), r.promptSel...)
	}
	return tr
}

// fill starts waiting completions in the free slots, oldest group first.
func (g *GroupSampler) fill() error {
	d := &g.dec
	for len(d.active) < g.Capacity() && len(d.waiting) > 0 {
		r := d.waiting[0]
		s, err := g.session(r.prefix.MaxLen)
		if err != nil {
			return err
		}
		if err := s.CopyFrom(r.prefix); err != nil {
			return err
		}
		d.active = append(d.active, &slot{g: r, i: r.next, s: s, sampler: Sampler{P: r.params}, start: time.Now()})
		r.next++
		if r.next == len(r.trajs) {
			d.waiting = d.waiting[1:]
			d.spare = append(d.spare, r.prefix)
			r.prefix = nil
		}
	}
	return nil
}

// Advance runs one decode step of every active completion (after filling the free slots) and returns the
// groups that it finished, in the order they ended. An error (ctx ending, or the engine failing) leaves the
// admitted groups unfinished: the caller drops them with Abandon.
func (g *GroupSampler) Advance(ctx context.Context) ([]Finished, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := g.fill(); err != nil {
		return nil, err
	}
	d := &g.dec
	done := d.ready
	d.ready = nil
	if len(d.active) == 0 {
		return done, nil
	}
	// Draw: one token per completion from its logits, with its own generator.
	d.in = d.in[:0]
	for _, sl := range d.active {
		tr := &sl.g.trajs[sl.i]
		tok, lp, kept := sl.sampler.Draw(sl.s.Logits, sl.g.rngs[sl.i])
		sl.tok = tok
		tr.CompletionTokens = append(tr.CompletionTokens, tok)
		tr.LogpOld = append(tr.LogpOld, lp)
		tr.LossMask = append(tr.LossMask, 1)
		tr.KeptIDs = append(tr.KeptIDs, kept...)
		tr.KeptOffsets = append(tr.KeptOffsets, int32(len(tr.KeptIDs)))
		d.in = append(d.in, model.DecodeInput{S: sl.s, Token: tok})
	}
	// Feed: every drawn token to the engine at once; record the position's experts and selections.
	if err := g.batch().Step(d.in); err != nil {
		return nil, fmt.Errorf("rollout: decode: %w", err)
	}
	kept := d.active[:0]
	for _, sl := range d.active {
		tr := &sl.g.trajs[sl.i]
		if len(g.moeLayer) > 0 {
			tr.ExpertIDs = g.appendExperts(tr.ExpertIDs, sl.s)
		}
		if g.RecordSelection {
			tr.DSATopK = appendSelection(tr.DSATopK, sl.s)
		}
		stop := sl.tok == data.EOS
		if !stop && len(tr.CompletionTokens) < g.MaxNewTokens {
			kept = append(kept, sl)
			continue
		}
		if stop {
			tr.FinishReason = "stop"
		}
		g.finishCompletion(sl)
		d.spare = append(d.spare, sl.s)
		if sl.g.ended++; sl.g.ended == len(sl.g.trajs) {
			done = append(done, Finished{Group: &data.Group{GroupID: sl.g.req.GroupID, Trajectories: sl.g.trajs}, Tag: sl.g.req.Tag})
		}
	}
	clear(d.active[len(kept):])
	d.active = kept
	return done, nil
}

// finishCompletion grades an ended completion with the family's verifier and stamps its timings.
func (g *GroupSampler) finishCompletion(sl *slot) {
	tr := &sl.g.trajs[sl.i]
	g.grade(tr, sl.g.req.Task, CompletionText(g.Tok, tr.CompletionTokens), tr.FinishReason)
	tr.Timings = map[string]float32{"prefill_s": float32(sl.g.prefill.Seconds()), "decode_s": float32(time.Since(sl.start).Seconds())}
}

// Abandon drops every admitted group (after an error or when the caller stops) and returns their tags.
func (g *GroupSampler) Abandon() []any {
	d := &g.dec
	var tags []any
	seen := map[*groupRun]bool{}
	drop := func(r *groupRun) {
		if !seen[r] {
			seen[r] = true
			tags = append(tags, r.req.Tag)
			if r.prefix != nil {
				d.spare = append(d.spare, r.prefix)
				r.prefix = nil
			}
		}
	}
	for _, sl := range d.active {
		drop(sl.g)
		d.spare = append(d.spare, sl.s)
	}
	for _, r := range d.waiting {
		drop(r)
	}
	for _, f := range d.ready {
		tags = append(tags, f.Tag)
	}
	d.active, d.waiting, d.ready = d.active[:0], d.waiting[:0], nil
	return tags
}

// batch returns the engine's batch work space, allocated at the first step.
func (g *GroupSampler) batch() *model.Batch {
	if g.dec.batch == nil || g.dec.batch.Cap < g.Capacity() {
		b, err := g.Engine.NewBatch(g.Capacity())
		if err != nil {
			panic(err) // Capacity is at least 1
		}
		g.dec.batch = b
	}
	return g.dec.batch
}

// Run admits the requests as slots allow and decodes until all of them are done; it returns their groups
// in request order. The sampler must have no other group admitted.
func (g *GroupSampler) Run(ctx context.Context, reqs []GroupRequest) ([]*data.Group, error) {
	if n := g.InFlight(); n > 0 {
		return nil, fmt.Errorf("rollout: sampler %s has %d groups in flight already", g.WorkerID, n)
	}
	out := make([]*data.Group, len(reqs))
	next, done := 0, 0
	for done < len(reqs) {
		for next < len(reqs) && (g.WantsMore() || g.InFlight() == 0) {
			r := reqs[next]
			r.Tag = next
			if err := g.Admit(ctx, r); err != nil {
				g.Abandon()
				return nil, err
			}
			next++
		}
		fin, err := g.Advance(ctx)
		if err != nil {
			g.Abandon()
			return nil, err
		}
		for _, f := range fin {
			out[f.Tag.(int)] = f.Group
			done++
		}
	}
	return out, nil
}
