// trajectory_test.go: Trajectory.Validate and Group.Validate, one case per invariant: each broken field is
// refused by Validate (a *TrajectoryError naming that field), by Group.Validate (naming the trajectory's
// index), by EncodeGroup and, written around the encoder's checks, by DecodeGroup; and the trajectories the
// samplers legitimately produce pass.

package data

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// rawStream writes g as EncodeGroup would, but without any check: the bytes a faulty or hostile worker
// could send.
func rawStream(t *testing.T, g *Group, vocab int) []byte {
	t.Helper()
	sc := schemaFor(vocab)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer rb.Release()
	for i := range g.Trajectories {
		appendRow(rb, &g.Trajectories[i], vocab)
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(sc), ipc.WithZstd())
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTrajectoryValidate(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	cases := []struct {
		name  string
		row   int // the trajectory edited (0 is written with CSR kept sets, which keep any offsets as written)
		edit  func(tr *Trajectory)
		field string
		want  string // in the message besides the field
	}{
		{"empty group_id", 1, func(tr *Trajectory) { tr.GroupID = "" }, "group_id", ""},
		{"negative policy_version", 0, func(tr *Trajectory) { tr.PolicyVersion = -1 }, "policy_version", "-1 < 0"},
		{"empty prompt", 0, func(tr *Trajectory) { tr.PromptTokens = nil }, "prompt_tokens", "empty"},
		{"prompt token past the vocabulary", 0, func(tr *Trajectory) { tr.PromptTokens[2] = 64 }, "prompt_tokens", "token 2 is id 64, outside vocabulary [0, 64)"},
		{"negative prompt token", 0, func(tr *Trajectory) { tr.PromptTokens[0] = -1 }, "prompt_tokens", "id -1"},
		{"completion token past the vocabulary", 0, func(tr *Trajectory) { tr.CompletionTokens[1] = 99 }, "completion_tokens", "token 1 is id 99"},
		{"negative completion token", 0, func(tr *Trajectory) { tr.CompletionTokens[4] = -3 }, "completion_tokens", "id -3"},
		{"loss_mask too short", 0, func(tr *Trajectory) { tr.LossMask = tr.LossMask[:4] }, "loss_mask", "4 entries for 5 completion tokens"},
		{"loss_mask value 2", 0, func(tr *Trajectory) { tr.LossMask[3] = 2 }, "loss_mask", "token 3 is 2, want 0 or 1"},
		{"logp_old too long", 0, func(tr *Trajectory) { tr.LogpOld = append(tr.LogpOld, -1) }, "logp_old", "6 entries for 5"},
		{"logp_old NaN", 0, func(tr *Trajectory) { tr.LogpOld[1] = nan }, "logp_old", "token 1 is NaN"},
		{"logp_old −Inf", 0, func(tr *Trajectory) { tr.LogpOld[1] = -inf }, "logp_old", "token 1 is -Inf"},
		{"logp_old positive", 0, func(tr *Trajectory) { tr.LogpOld[0] = 0.5 }, "logp_old", "≤ 0"},
		{"teacher_logp too short", 0, func(tr *Trajectory) { tr.TeacherLogp = tr.TeacherLogp[:4] }, "teacher_logp", "4 entries for 5"},
		{"teacher_logp NaN", 0, func(tr *Trajectory) { tr.TeacherLogp[2] = nan }, "teacher_logp", "token 2 is NaN"},
		{"teacher_logp positive", 0, func(tr *Trajectory) { tr.TeacherLogp[0] = 0.5 }, "teacher_logp", "≤ 0"},
		{"teacher_kept_offsets too short", 1, func(tr *Trajectory) { tr.TeacherKeptOffsets = tr.TeacherKeptOffsets[:3] }, "teacher_kept_offsets", "3 entries for 3 completion tokens, want 4"},
		{"teacher_kept_offsets without values", 1, func(tr *Trajectory) { tr.TeacherKeptLogp = nil }, "teacher_kept_offsets", "teacher_kept_logp has 0 entries"},
		{"teacher_kept_offsets not starting at 0", 1, func(tr *Trajectory) { tr.TeacherKeptOffsets[0] = 1 }, "teacher_kept_offsets", "starts at 1"},
		{"teacher_kept_offsets decreasing", 1, func(tr *Trajectory) { tr.TeacherKeptOffsets[2] = 1 }, "teacher_kept_offsets", "decreasing at token 1"},
		{"teacher_kept_logp of another set size", 1, func(tr *Trajectory) { tr.TeacherKeptOffsets[1] = 3 }, "teacher_kept_logp", "token 0 has 3 entries, want 2 (its kept set) or 64 (the whole vocabulary)"},
		{"teacher_kept_logp NaN", 1, func(tr *Trajectory) { tr.TeacherKeptLogp[3] = nan }, "teacher_kept_logp", "token 1 entry 1 is NaN"},
		{"teacher_kept_logp positive", 1, func(tr *Trajectory) { tr.TeacherKeptLogp[0] = 0.25 }, "teacher_kept_logp", "token 0 entry 0 is 0.25"},
		{"teacher_kept_logp not renormalised", 1, func(tr *Trajectory) { tr.TeacherKeptLogp[6] = -0.5 }, "teacher_kept_logp", "token 2: probabilities sum to"},
		{"teacher_kept_logp at a loss_mask-0 token", 0, func(tr *Trajectory) { scoreWholeVocab(tr, []int{1, 64, 1, 2, 64}) }, "teacher_kept_logp", "token 2 (loss_mask 0) has 1 entries, want none"},
		{"teacher_kept_logp short of the whole vocabulary", 0, func(tr *Trajectory) { scoreWholeVocab(tr, []int{1, 63, 0, 2, 64}) }, "teacher_kept_logp", "token 1 has 63 entries, want 64 (its kept set is the whole vocabulary)"},
		{"kept_offsets too short", 0, func(tr *Trajectory) { tr.KeptOffsets = tr.KeptOffsets[:5] }, "kept_offsets", "5 entries for 5 completion tokens, want 6"},
		{"kept_offsets not starting at 0", 0, func(tr *Trajectory) { tr.KeptOffsets[0] = 1 }, "kept_offsets", "starts at 1"},
		{"kept_offsets decreasing", 0, func(tr *Trajectory) { tr.KeptOffsets[2] = 0 }, "kept_offsets", "decreasing at token 1"},
		{"kept_offsets short of kept_ids", 0, func(tr *Trajectory) { tr.KeptIDs = append(tr.KeptIDs, 63) }, "kept_offsets", "kept_ids has 4 entries"},
		{"kept id past the vocabulary", 0, func(tr *Trajectory) { tr.KeptIDs[2] = 64 }, "kept_ids", "kept id 64 of token 3 outside vocabulary [0, 64)"},
		{"negative kept id", 0, func(tr *Trajectory) { tr.KeptIDs[1] = -1 }, "kept_ids", "kept id -1"},
		{"kept set descending", 0, func(tr *Trajectory) { tr.KeptIDs[1], tr.KeptIDs[2] = 50, 21 }, "kept_ids", "not strictly ascending"},
		{"kept set with a duplicate", 0, func(tr *Trajectory) { tr.KeptIDs[1] = 50 }, "kept_ids", "not strictly ascending (50 after 50)"},
		{"sampled token outside its kept set", 0, func(tr *Trajectory) { tr.KeptIDs[0] = 32 }, "kept_ids", "sampled token 0 (id 33, loss_mask 1) is not in its kept set"},
		{"negative moe_layers", 0, func(tr *Trajectory) { tr.MoELayers = -1 }, "moe_layers", "out of range"},
		{"huge moe_layers", 0, func(tr *Trajectory) { tr.MoELayers = MaxMoEStride + 1 }, "moe_layers", "out of range"},
		{"huge top_k", 0, func(tr *Trajectory) { tr.TopK = 1 << 20 }, "top_k", "out of range"},
		{"expert_ids too short", 0, func(tr *Trajectory) { tr.ExpertIDs = tr.ExpertIDs[:17] }, "expert_ids", "17 entries, want 18"},
		{"expert_ids without moe_layers", 0, func(tr *Trajectory) { tr.MoELayers = 0 }, "expert_ids", "18 entries, want 0"},
		{"negative dsa_layers", 0, func(tr *Trajectory) { tr.DSALayers = -1 }, "dsa_layers", "out of range"},
		{"huge dsa_k", 0, func(tr *Trajectory) { tr.DSAK = MaxDSAStride + 1 }, "dsa_k", "out of range"},
		{"dsa_k without dsa_layers", 0, func(tr *Trajectory) { tr.DSALayers = 0 }, "dsa_layers", "both or neither 0"},
		{"dsa_layers without dsa_k", 0, func(tr *Trajectory) { tr.DSAK = 0 }, "dsa_k", "both or neither 0"},
		{"dsa_topk without strides", 0, func(tr *Trajectory) { tr.DSALayers, tr.DSAK = 0, 0 }, "dsa_topk", "18 entries without dsa_layers and dsa_k"},
		{"dsa_topk too short", 0, func(tr *Trajectory) { tr.DSATopK = tr.DSATopK[:16] }, "dsa_topk", "16 entries, want 18"},
		{"dsa_topk key after its query", 0, func(tr *Trajectory) { tr.DSATopK[1] = 1 }, "dsa_topk", "position 0 (layer 0) selects key 1 outside [0, 0]"},
		{"dsa_topk key below −1", 0, func(tr *Trajectory) { tr.DSATopK[17] = -2 }, "dsa_topk", "selects key -2"},
		{"reward NaN", 0, func(tr *Trajectory) { tr.Reward = nan }, "reward", "NaN is not finite"},
		{"reward +Inf", 0, func(tr *Trajectory) { tr.Reward = inf }, "reward", "not finite"},
		{"reward_parts NaN", 0, func(tr *Trajectory) { tr.RewardParts["format"] = nan }, "reward_parts", `"format" is NaN`},
		{"timings −Inf", 0, func(tr *Trajectory) { tr.Timings["decode_s"] = -inf }, "timings", `"decode_s" is -Inf`},
		{"empty finish_reason", 0, func(tr *Trajectory) { tr.FinishReason = "" }, "finish_reason", `"", want "stop" or "length"`},
		{"unknown finish_reason", 1, func(tr *Trajectory) { tr.FinishReason = "eos" }, "finish_reason", `"eos"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := goldenGroup()
			if err := g.Validate(goldenVocab); err != nil {
				t.Fatalf("the untouched fixture is invalid: %v", err)
			}
			c.edit(&g.Trajectories[c.row])
			tr := &g.Trajectories[c.row]
			check := func(who string, err error, index int) {
				t.Helper()
				var te *TrajectoryError
				if !errors.As(err, &te) {
					t.Fatalf("%s: err = %v, want a *TrajectoryError", who, err)
				}
				if te.Field != c.field || te.Index != index || te.GroupID != tr.GroupID && te.GroupID != g.GroupID {
					t.Fatalf("%s: error of field %q, index %d, group %q; want field %q, index %d, group %q (%v)", who, te.Field, te.Index, te.GroupID, c.field, index, g.GroupID, err)
				}
				msg := err.Error()
				if !strings.Contains(msg, c.field+": ") || !strings.Contains(msg, c.want) {
					t.Fatalf("%s: err = %q, want one naming %s and containing %q", who, msg, c.field, c.want)
				}
				if index >= 0 && (!strings.Contains(msg, fmt.Sprintf("trajectory %d", index)) || !strings.Contains(msg, g.GroupID)) {
					t.Fatalf("%s: err = %q, want one naming group %s trajectory %d", who, msg, g.GroupID, index)
				}
			}
			check("Trajectory.Validate", tr.Validate(goldenVocab), -1)
			check("Group.Validate", g.Validate(goldenVocab), c.row)
			_, err := EncodeGroup(g, goldenVocab)
			check("EncodeGroup", err, c.row)
			_, err = DecodeGroup(rawStream(t, g, goldenVocab), goldenVocab)
			check("DecodeGroup", err, c.row)
		})
	}
}

// TestTrajectoryValidateAccepts: what the samplers produce passes: an empty completion, an inserted token
// (loss_mask 0) outside its kept set, a kept set listing the whole vocabulary, a dense model whose top_k is
// set without moe_layers, greedy decoding (logp_old 0, a one-id kept set), no reward parts or timings.
func TestTrajectoryValidateAccepts(t *testing.T) {
	cases := []struct {
		name string
		edit func(tr *Trajectory)
	}{
		{"untouched", func(tr *Trajectory) {}},
		{"empty completion", func(tr *Trajectory) {
			tr.CompletionTokens, tr.LossMask, tr.LogpOld, tr.TeacherLogp, tr.KeptOffsets, tr.KeptIDs = nil, nil, nil, nil, []int32{0}, nil
			tr.ExpertIDs, tr.DSATopK = tr.ExpertIDs[:8], tr.DSATopK[:8]
		}},
		{"inserted token outside its kept set", func(tr *Trajectory) {
			tr.LossMask[0] = 0
			tr.KeptIDs[0] = 32
		}},
		{"whole vocabulary listed", func(tr *Trajectory) {
			tr.KeptIDs = nil
			for v := range int32(goldenVocab) {
				tr.KeptIDs = append(tr.KeptIDs, v)
			}
			tr.KeptOffsets = []int32{0, 64, 64, 64, 64, 64}
		}},
		{"dense model with top_k", func(tr *Trajectory) { tr.MoELayers, tr.ExpertIDs = 0, nil }},
		{"no DSA selections", func(tr *Trajectory) { tr.DSALayers, tr.DSAK, tr.DSATopK = 0, 0, nil }},
		{"greedy", func(tr *Trajectory) {
			tr.LogpOld = []float32{0, 0, 0, 0, 0}
			tr.KeptOffsets, tr.KeptIDs = []int32{0, 1, 2, 3, 4, 5}, []int32{33, 17, 9, 50, 2}
		}},
		{"no reward parts or timings", func(tr *Trajectory) { tr.RewardParts, tr.Timings = nil, nil }},
		{"not scored by a teacher", func(tr *Trajectory) { tr.TeacherLogp = nil }},
		{"teacher over kept sets and the whole vocabulary", func(tr *Trajectory) { scoreWholeVocab(tr, []int{1, 64, 0, 2, 64}) }},
		{"teacher over the whole vocabulary everywhere (keep_sampling_mask off)", func(tr *Trajectory) { scoreWholeVocab(tr, []int{64, 64, 0, 64, 64}) }},
		{"policy version 0, negative reward", func(tr *Trajectory) { tr.PolicyVersion, tr.Reward = 0, -1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := goldenGroup()
			c.edit(&g.Trajectories[0])
			if err := g.Trajectories[0].Validate(goldenVocab); err != nil {
				t.Fatal(err)
			}
			b, err := EncodeGroup(g, goldenVocab)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeGroup(b, goldenVocab); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// scoreWholeVocab gives tr teacher_kept ranges of the given sizes, each a uniform distribution over its size.
func scoreWholeVocab(tr *Trajectory, sizes []int) {
	tr.TeacherKeptOffsets, tr.TeacherKeptLogp = []int32{0}, nil
	for _, n := range sizes {
		for range n {
			tr.TeacherKeptLogp = append(tr.TeacherKeptLogp, float32(-math.Log(float64(n))))
		}
		tr.TeacherKeptOffsets = append(tr.TeacherKeptOffsets, int32(len(tr.TeacherKeptLogp)))
	}
}

func TestGroupValidate(t *testing.T) {
	other := goldenGroup()
	other.Trajectories[1].GroupID = "rl-000007-003"
	noID := goldenGroup()
	noID.GroupID = ""
	cases := []struct {
		name  string
		g     *Group
		vocab int
		want  string // "" = valid
	}{
		{"golden group", goldenGroup(), goldenVocab, ""},
		{"no trajectories (a failed job)", &Group{GroupID: "g"}, goldenVocab, ""},
		{"nil", nil, goldenVocab, "nil group"},
		{"empty id", noID, goldenVocab, "group without an id (group_id is empty"},
		{"trajectory of another group", other, goldenVocab, `group "rl-000007-002" trajectory 1: group_id: trajectory carries group id "rl-000007-003"`},
		{"zero vocabulary", goldenGroup(), 0, "vocabulary size 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.g.Validate(c.vocab)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("err = %v, want none", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
	if err := (&Trajectory{GroupID: "g"}).Validate(0); err == nil || !strings.Contains(err.Error(), "vocabulary size 0") {
		t.Fatalf("Trajectory.Validate(0): err = %v, want one naming the vocabulary size", err)
	}
}
