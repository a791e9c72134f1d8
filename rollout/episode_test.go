package rollout

import (
	"context"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
)

// episodeModel is a small MoE (and, with sparse, DSA-ready) model long enough for tool episodes.
func episodeModel(t testing.TB) (*model.Engine, *data.Tokenizer) {
	t.Helper()
	cfg := configs.DefaultModel()
	cfg.HiddenSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads = 32, 2, 2
	cfg.QLoraRank, cfg.KVLoraRank, cfg.QKNopeHeadDim, cfg.QKRopeHeadDim, cfg.VHeadDim = 16, 16, 8, 8, 8
	cfg.IntermediateSize, cfg.MoEIntermediateSize, cfg.NRoutedExperts, cfg.NGroup, cfg.TopkGroup = 64, 16, 4, 2, 1
	cfg.IndexNHeads, cfg.IndexHeadDim, cfg.IndexTopk = 2, 16, 8
	cfg.MaxPositionEmbeddings = 2048
	p := model.NewParams(cfg)
	p.Init(3)
	tok, err := data.NewTokenizer(cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	return model.NewEngine(p), tok
}

// policyScript is the policy's part of a worked conversation: the ids the encoder marks as the assistant's
// (loss mask 1) except each EOS that directly follows a tool-call block (the episode loop inserts it).
func policyScript(t testing.TB, tok *data.Tokenizer, msgs []data.Message) (all []int32, mask []uint8, script []int32) {
	t.Helper()
	ids, m, err := data.EncodeForTraining(tok, msgs, envs.ToolEncodeOptions())
	if err != nil {
		t.Fatal(err)
	}
	closeTag := callsCloseTag(tok)
	for i, id := range ids {
		if m[i] == 0 {
			continue
		}
		if id == data.EOS && hasSuffix(ids[:i], closeTag) {
			m[i] = 0
			continue
		}
		script = append(script, id)
	}
	return ids, m, script
}

// reencode rebuilds the conversation of an episode from its turns (each parsed with the chat parser) and
// the tool results it recorded.
func reencode(t *testing.T, te envs.ToolEnv, task envs.Task, ep *Episode) []data.Message {
	t.Helper()
	msgs := envs.ToolPrompt(te, task)
	for i, turn := range ep.Turns {
		text := turn.Text
		if i < len(ep.Turns)-1 {
			text += data.SpecialTokens[data.EOS-256] // the inserted EOS closes the assistant message
		}
		pm, err := data.ParseCompletion(text, data.ModeThinking)
		if err != nil {
			t.Fatalf("turn %d %q: %v", i, text, err)
		}
		msgs = append(msgs, pm.Message())
		for _, c := range turn.Calls {
			msgs = append(msgs, data.Message{Role: "tool", Content: c.Result})
		}
	}
	return msgs
}

// TestEpisodeReencodes: for every tool environment, dense and sparse, a policy forced to write a worked
// tool-using conversation produces an episode whose prompt + completion equal the chat encoder's rendering of
// that conversation, and equal the encoder's rendering of the messages rebuilt from the episode's own turns
// and results; the loss mask is 1 exactly on the policy's tokens; every position has its experts (and
// selections); the answer is graded correct; the tool statistics are counted.
func TestEpisodeReencodes(t *testing.T) {
	eng, tok := episodeModel(t)
	for _, name := range []string{"calc", "search", "interpreter"} {
		for _, sparse := range []bool{false, true} {
			fam, err := envs.New(name, envs.Options{Params: map[string]string{}})
			if err != nil {
				t.Fatal(err)
			}
			te := fam.(envs.ToolEnv)
			task := fam.Sample(rand.New(rand.NewPCG(7, 8)), data.SplitTrain)
			conv, err := te.Episode(context.Background(), task, -1)
			if err != nil {
				t.Fatal(err)
			}
			want, wantMask, script := policyScript(t, tok, conv)
			gs := NewGroupSampler(eng, tok, fam, "w0", SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 1}, GroupSize: 1,
				MaxNewTokens: 900, Sparse: sparse, RecordSelection: sparse, Episode: EpisodeConfig{Drawer: &ForcedDrawer{Tokens: script}}})
			g, err := gs.Sample(context.Background(), task, "g0", 3, rand.New(rand.NewPCG(1, 1)))
			if err != nil {
				t.Fatal(err)
			}
			tr := g.Trajectories[0]
			if err := tr.Validate(eng.Cfg.VocabSize); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got := append(slices.Clone(tr.PromptTokens), tr.CompletionTokens...)
			if !slices.Equal(got, want) {
				t.Fatalf("%s sparse=%v: episode tokens\n%q\nwant the encoder's\n%q", name, sparse, tok.Decode(got), tok.Decode(want))
			}
			if !slices.Equal(tr.LossMask, wantMask[len(tr.PromptTokens):]) {
				t.Fatalf("%s: loss mask %v\nwant %v", name, tr.LossMask, wantMask[len(tr.PromptTokens):])
			}
			for i, m := range tr.LossMask {
				if m == 0 && (tr.LogpOld[i] != 0 || tr.KeptOffsets[i+1] != tr.KeptOffsets[i]) {
					t.Fatalf("%s: inserted token %d has a sampling record (logp %v)", name, i, tr.LogpOld[i])
				}
			}
			if sparse && (tr.DSALayers == 0 || len(tr.DSATopK) != len(got)*tr.DSALayers*tr.DSAK) {
				t.Fatalf("%s: %d selections for %d positions", name, len(tr.DSATopK), len(got))
			}
			if tr.RewardParts["correct"] != 1 || tr.FinishReason != "stop" {
				t.Fatalf("%s: correct %v finish %s", name, tr.RewardParts["correct"], tr.FinishReason)
			}
			calls := 0
			for _, m := range conv {
				calls += len(m.ToolCalls)
			}
			if tr.RewardParts[PartToolCalls] != float32(calls) || tr.RewardParts[PartMalformed] != 0 || tr.RewardParts[PartTurns] != float32(calls+1) {
				t.Fatalf("%s: parts %v, want %d calls in %d turns", name, tr.RewardParts, calls, calls+1)
			}
			// the same run, greedy-free, as an Episode: re-encode the messages rebuilt from its turns
			gs.Episode.Drawer = &ForcedDrawer{Tokens: script}
			r, s, err := gs.episodeStart(envs.TaskEnv(te, task), GroupRequest{Task: task, GroupID: "reencode"})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CopyFrom(r.prefix); err != nil {
				t.Fatal(err)
			}
			ep, err := gs.runEpisode(context.Background(), te, task, s, gs.Episode.Drawer, nil, nil)
			gs.episodeEnd(r, s)
			if err != nil {
				t.Fatal(err)
			}
			if turns := EpisodeTurns(tok, tr.CompletionTokens); !reflect.DeepEqual(turns, ep.Turns) {
				t.Fatalf("%s: EpisodeTurns of the trajectory\n%+v\nwant the episode's\n%+v", name, turns, ep.Turns)
			}
			re, err := data.EncodeIDs(tok, reencode(t, te, task, ep), envs.ToolEncodeOptions())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(re, want) {
				t.Fatalf("%s: re-encoded episode\n%q\nwant\n%q", name, tok.Decode(re), tok.Decode(want))
			}
		}
	}
}

// TestEpisodeMalformedAndLimits: a block the parser refuses, an unknown tool and bad arguments each get an
// error result and are counted, and the episode goes on to its answer; a block past max_tool_calls ends the
// episode; a tool that outlives its time gets an error result and the episode goes on.
func TestEpisodeMalformedAndLimits(t *testing.T) {
	eng, tok := episodeModel(t)
	fam, err := envs.New("calc", envs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	task := fam.Sample(rand.New(rand.NewPCG(1, 1)), data.SplitTrain)
	dsml := data.SpecialTokens[data.DSML-256]
	block := func(inner string) string {
		return "\n\n<" + dsml + "function_calls>\n" + inner + "\n</" + dsml + "function_calls>"
	}
	invoke := func(name, params string) string {
		return "<" + dsml + `invoke name="` + name + "\">\n" + params + "\n</" + dsml + "invoke>"
	}
	param := func(k, v string) string {
		return "<" + dsml + `parameter name="` + k + `" string="true">` + v + "</" + dsml + "parameter>"
	}
	te := data.SpecialTokens[data.ThinkEnd-256]
	enc := func(s string) []int32 {
		var ids []int32
		for s != "" {
			best, bestID := -1, int32(0)
			for k, lit := range data.SpecialTokens {
				if i := strings.Index(s, lit); i >= 0 && (best < 0 || i < best) {
					best, bestID = i, int32(256+k)
				}
			}
			if best < 0 {
				return tok.AppendText(ids, s)
			}
			ids = tok.AppendText(ids, s[:best])
			ids = tok.AppendSpecial(ids, bestID)
			s = s[best+len(data.SpecialTokens[bestID-256]):]
		}
		return ids
	}
	segments := []string{
		"a" + te + block("<"+dsml+"invoke nam=\"calc\">\n</"+dsml+"invoke>"), // bad DSML
		"b" + te + block(invoke("sqrt", param("x", "2"))),                    // unknown tool
		"c" + te + block(invoke("calc", param("e", "1+1"))),                  // bad arguments
		"d" + te + block(invoke("calc", param("expr", "2*3"))),               // a good call
		"e" + te + task.Answer + data.SpecialTokens[data.EOS-256],
	}
	var script []int32
	for _, s := range segments {
		script = append(script, enc(s)...)
	}
	gs := NewGroupSampler(eng, tok, fam, "w0", SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 1}, GroupSize: 1, MaxNewTokens: 900,
		Episode: EpisodeConfig{Drawer: &ForcedDrawer{Tokens: script}, MaxToolCalls: 10}})
	g, err := gs.Sample(context.Background(), task, "g0", 0, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	tr := g.Trajectories[0]
	if err := tr.Validate(eng.Cfg.VocabSize); err != nil {
		t.Fatal(err)
	}
	p := tr.RewardParts
	if p[PartMalformed] != 3 || p[PartToolCalls] != 3 || p[PartTurns] != 5 || p["correct"] != 1 || tr.FinishReason != "stop" {
		t.Fatalf("parts %v finish %s; want 3 malformed, 3 calls (unknown, bad arguments, good), 5 turns, correct", p, tr.FinishReason)
	}
	text := tok.Decode(tr.CompletionTokens)
	for _, want := range []string{"<result>error: chat parse: tool name format error (at byte 55)</result>", `<result>error: unknown tool "sqrt" (tools: calc)</result>`,
		"<result>error: bad arguments: calc needs a string parameter expr</result>", "<result>6</result>"} {
		if !strings.Contains(text, want) {
			t.Errorf("episode lacks %q:\n%s", want, text)
		}
	}
	// max_tool_calls 1: the second block ends the episode
	gs.Episode = EpisodeConfig{Drawer: &ForcedDrawer{Tokens: enc(segments[3] + segments[3] + segments[4])}, MaxToolCalls: 1}
	g, err = gs.Sample(context.Background(), task, "g0", 0, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if tr := g.Trajectories[0]; tr.FinishReason != "length" || tr.RewardParts[PartToolCalls] != 1 || tr.RewardParts["correct"] != 0 {
		t.Fatalf("max_tool_calls 1: finish %s parts %v", tr.FinishReason, tr.RewardParts)
	}
	// a tool that outlives its time: an error result, the episode goes on
	slow := slowEnv{Calc: fam.(*envs.Calc)}
	gs = NewGroupSampler(eng, tok, slow, "w0", SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 1}, GroupSize: 1, MaxNewTokens: 900,
		Episode: EpisodeConfig{Drawer: &ForcedDrawer{Tokens: enc(segments[3] + segments[4])}, Limits: envs.ToolLimits{Timeout: 20 * time.Millisecond}}})
	g, err = gs.Sample(context.Background(), task, "g0", 0, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	tr = g.Trajectories[0]
	if tr.RewardParts[PartToolError] != 1 || tr.RewardParts["correct"] != 1 || !strings.Contains(tok.Decode(tr.CompletionTokens), "<result>error: tool call timed out after 20ms: calc</result>") {
		t.Fatalf("slow tool: parts %v\n%s", tr.RewardParts, tok.Decode(tr.CompletionTokens))
	}
}

// slowEnv is calc whose calculator waits for its context to end.
type slowEnv struct{ *envs.Calc }

type slowCalc struct{ envs.Calculator }

func (slowCalc) Call(ctx context.Context, _ map[string]any) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

func (slowEnv) Tools() []envs.Tool { return []envs.Tool{slowCalc{}} }

// FuzzEpisode: whatever bytes and special tokens the policy writes (a fuzzed script, forced), the episode
// loop neither panics nor fails; the trajectory is valid and its statistics are consistent.
func FuzzEpisode(f *testing.F) {
	eng, tok := episodeModel(f)
	fam, err := envs.New("calc", envs.Options{})
	if err != nil {
		f.Fatal(err)
	}
	task := fam.Sample(rand.New(rand.NewPCG(1, 1)), data.SplitTrain)
	conv, err := fam.(envs.ToolEnv).Episode(context.Background(), task, -1)
	if err != nil {
		f.Fatal(err)
	}
	_, _, script := policyScript(f, tok, conv)
	seed := make([]byte, 0, 2*len(script))
	for _, id := range script {
		seed = append(seed, byte(id>>8), byte(id))
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{})
	f.Add([]byte{1, 7, 1, 7, 1, 7})
	gs := NewGroupSampler(eng, tok, fam, "w0", SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 1}, GroupSize: 1, MaxNewTokens: 300})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ids []int32
		for i := 0; i+1 < len(b); i += 2 {
			ids = append(ids, int32(b[i]&1)<<8|int32(b[i+1])) // bytes and special ids (256..263 are specials)
		}
		gs.Episode = EpisodeConfig{Drawer: &ForcedDrawer{Tokens: ids}, MaxToolCalls: 3}
		g, err := gs.Sample(context.Background(), task, "g0", 0, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		tr := g.Trajectories[0]
		if err := tr.Validate(eng.Cfg.VocabSize); err != nil {
			t.Fatal(err)
		}
		if n := len(tr.CompletionTokens); n > 300 || n == 0 {
			t.Fatalf("%d completion tokens", n)
		}
		if tr.RewardParts[PartToolCalls] > 3 {
			t.Fatalf("%v calls past max_tool_calls 3", tr.RewardParts[PartToolCalls])
		}
	})
}

// TestEpisodeFormatNeedsCall: the tool episodes' format rule (withholdFormat). Hand-computed rewards of calc
// episodes forced through the sampler, with the defaults Correct 1, Format 0.1: a right call and answer 1.1;
// a call whose result is ignored (wrong answer) 0.1; a wrong answer without a call 0 (no format reward); a
// right answer without a call 1.0 (its correctness, no format reward).
func TestEpisodeFormatNeedsCall(t *testing.T) {
	eng, tok := episodeModel(t)
	fam, err := envs.New("calc", envs.Options{Params: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	te := fam.(envs.ToolEnv)
	task := fam.Sample(rand.New(rand.NewPCG(7, 8)), data.SplitTrain)
	worked := func(misuse int) []data.Message {
		conv, err := te.Episode(context.Background(), task, misuse)
		if err != nil {
			t.Fatal(err)
		}
		return conv
	}
	rightNoCall := append(envs.ToolPrompt(te, task), data.Message{Role: "assistant", ReasoningContent: "I compute it myself.", Content: task.Answer})
	for _, tc := range []struct {
		name                   string
		conv                   []data.Message
		total, format, correct float32
		calls                  float32
	}{
		{"right call and answer", worked(-1), 1.1, 0.1, 1, 1},
		{"ignored result", worked(envs.MisuseIgnored), 0.1, 0.1, 0, 1},
		{"wrong answer without a call", worked(envs.MisuseNoCall), 0, 0, 0, 0},
		{"right answer without a call", rightNoCall, 1, 0, 1, 0},
	} {
		_, _, script := policyScript(t, tok, tc.conv)
		gs := NewGroupSampler(eng, tok, fam, "w0", SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 1}, GroupSize: 1,
			MaxNewTokens: 900, Episode: EpisodeConfig{Drawer: &ForcedDrawer{Tokens: script}}})
		g, err := gs.Sample(context.Background(), task, "g0", 3, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		tr := g.Trajectories[0]
		p := tr.RewardParts
		if math.Abs(float64(tr.Reward-tc.total)) > 1e-6 || p[envs.PartFormat] != tc.format || p["correct"] != tc.correct || p[PartToolCalls] != tc.calls {
			t.Fatalf("%s: reward %v parts %v, want total %v format %v correct %v calls %v", tc.name, tr.Reward, p, tc.total, tc.format, tc.correct, tc.calls)
		}
	}
}
