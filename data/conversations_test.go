// conversations_test.go checks the conversation corpora: the golden two-turn conversation of
// testdata/sft/two_turn.jsonl rendered to hand-built ids and mask (thinking and chat modes, and equal to
// EncodeForTraining), the same conversations read from JSONL, a directory of JSONL files, Parquet with a
// list<struct> messages column and Parquet with a string-JSON column (written here with pqarrow) giving the
// same documents, row-level tools moved onto the system message, the train/held-out split (disjoint, covering,
// the same for every file kind), skipping of conversations without an assistant turn, exact resume of both
// packers over every file kind through a JSON round trip of the state, and errors naming file, line or row
// and field.

package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// gp is one piece of a hand-built encoding: a special id (sp ≠ 0) or text, with its loss mask.
type gp struct {
	sp   int32
	text string
	m    uint8
}

func buildIDs(ps ...gp) ([]int32, []uint8) {
	var ids []int32
	var mask []uint8
	for _, p := range ps {
		if p.sp != 0 {
			ids, mask = append(ids, p.sp), append(mask, p.m)
			continue
		}
		for i := 0; i < len(p.text); i++ {
			ids, mask = append(ids, int32(p.text[i])), append(mask, p.m)
		}
	}
	return ids, mask
}

func TestConversationGoldenTwoTurn(t *testing.T) {
	path := filepath.Join("testdata", "sft", "two_turn.jsonl")
	tests := []struct {
		mode string
		want []gp
	}{
		{ModeChat, []gp{
			{sp: BOS}, {text: "Be brief."}, {sp: User}, {text: "Hi"}, {sp: Assistant}, {sp: ThinkEnd},
			{text: "Hello!", m: 1}, {sp: EOS, m: 1},
			{sp: User}, {text: "2+2?"}, {sp: Assistant}, {sp: ThinkEnd},
			{text: "4", m: 1}, {sp: EOS, m: 1},
		}},
		// Thinking mode: the first user turn is before the last one, so it ends in </think> and the first
		// answer's (absent) reasoning is dropped; the last user turn ends in <think>, and the last answer's
		// reasoning and its </think> are trained.
		{ModeThinking, []gp{
			{sp: BOS}, {text: "Be brief."}, {sp: User}, {text: "Hi"}, {sp: Assistant}, {sp: ThinkEnd},
			{text: "Hello!", m: 1}, {sp: EOS, m: 1},
			{sp: User}, {text: "2+2?"}, {sp: Assistant}, {sp: ThinkBeg},
			{text: "Add.", m: 1}, {sp: ThinkEnd, m: 1}, {text: "4", m: 1}, {sp: EOS, m: 1},
		}},
	}
	line, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var row struct {
		Messages json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(line, &row); err != nil {
		t.Fatal(err)
	}
	msgs, err := ParseMessages(row.Messages)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			wantIDs, wantMask := buildIDs(tc.want...)
			encIDs, encMask, err := EncodeForTraining(nil, msgs, DefaultEncodeOptions(tc.mode))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(encIDs, wantIDs) || !slices.Equal(encMask, wantMask) {
				t.Fatalf("EncodeForTraining disagrees with the hand-built encoding:\n%v\n%v\nwant\n%v\n%v", encIDs, encMask, wantIDs, wantMask)
			}
			c, err := OpenConversationCorpus(CorpusConfig{Source: "jsonl", Path: path}, SplitTrain, nil, DefaultEncodeOptions(tc.mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			doc, err := c.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(doc.IDs, wantIDs) || !slices.Equal(doc.Mask, wantMask) {
				t.Fatalf("doc\n%v\n%v\nwant\n%v\n%v", doc.IDs, doc.Mask, wantIDs, wantMask)
			}
			// The padded packer puts the whole conversation on one row: inputs ids[:n-1], targets ids[1:],
			// mask the targets' mask, then PAD.
			c2, err := OpenConversationCorpus(CorpusConfig{Source: "jsonl", Path: path, TextColumn: "messages"}, SplitTrain, nil, DefaultEncodeOptions(tc.mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			const T = 64
			n := len(wantIDs)
			var b Batch
			if err := NewDocPackerPadded(c2, 1, T).Next(&b); err != nil {
				t.Fatal(err)
			}
			tokens := 0
			for i := range T {
				in, tg, m := int32(PAD), int32(PAD), float32(0)
				if i < n-1 {
					in, tg, m = wantIDs[i], wantIDs[i+1], float32(wantMask[i+1])
				}
				if b.Inputs[i] != in || b.Targets[i] != tg || b.LossMask[i] != m {
					t.Fatalf("padded row pos %d: %d %d %v, want %d %d %v", i, b.Inputs[i], b.Targets[i], b.LossMask[i], in, tg, m)
				}
				tokens += int(m)
			}
			if b.Lengths[0] != n-1 || b.Tokens != tokens {
				t.Errorf("padded row: length %d tokens %d, want %d %d", b.Lengths[0], b.Tokens, n-1, tokens)
			}
		})
	}
}

// Fixture conversations, written by the tests as JSONL and Parquet.
type fxCall struct{ ID, Name, Args string }

type fxMsg struct {
	Role, Content, Reasoning string
	Calls                    []fxCall
}

type fxConv struct {
	Msgs []fxMsg
	// Tools is the row-level tools field (JSON text, "" for none); SysTools the same definitions as the
	// encoder takes them on the system message (wrapped when bare).
	Tools, SysTools string
}

const weatherTool = `[{"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]`

func fixtureConvs() []fxConv {
	convs := []fxConv{
		{Msgs: []fxMsg{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Capital of Norway?"},
			{Role: "assistant", Reasoning: "Recall.", Content: "Oslo."}}},
		{Msgs: []fxMsg{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello!"},
			{Role: "user", Content: "Name a prime."}, {Role: "assistant", Reasoning: "2 is prime.", Content: "2"}}},
		{Tools: weatherTool, SysTools: weatherTool, Msgs: []fxMsg{{Role: "user", Content: "Weather in Bodø for 2 days?"},
			{Role: "assistant", Reasoning: "Call the tool.", Calls: []fxCall{{"call_1", "get_weather", `{"city": "Bodø", "days": 2}`}}},
			{Role: "tool", Content: "Rain, 7°C"}, {Role: "assistant", Reasoning: "Summarise.", Content: "Rain, 7 °C."}}},
		{Msgs: []fxMsg{{Role: "user", Content: "Ünïcödé: 東京 🦊?"}, {Role: "assistant", Reasoning: "思考", Content: "はい 🦊"}}},
		{Msgs: []fxMsg{{Role: "user", Content: "Say <think> literally."},
			{Role: "assistant", Reasoning: "Plain.", Content: "<think> and <｜User｜> stay bytes"}}},
		// No assistant turn: skipped.
		{Msgs: []fxMsg{{Role: "system", Content: "x"}, {Role: "user", Content: "unanswered"}}},
		{Tools: `[{"name": "add", "parameters": {"type": "object"}}]`,
			SysTools: `[{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]`,
			Msgs: []fxMsg{{Role: "system", Content: "Use tools."}, {Role: "user", Content: "1+2?"},
				{Role: "assistant", Calls: []fxCall{{"c1", "add", `{"a": 1, "b": 2}`}, {"c2", "add", `{"a": 0, "b": 0}`}}},
				{Role: "tool", Content: "3"}, {Role: "tool", Content: "0"},
				{Role: "assistant", Reasoning: "Done.", Content: "3 (and 0)"}}},
	}
	for i := 7; i <= 12; i++ {
		convs = append(convs, fxConv{Msgs: []fxMsg{{Role: "user", Content: fmt.Sprintf("What is %d squared?", i)},
			{Role: "assistant", Reasoning: "Multiply.", Content: fmt.Sprint(i * i)}}})
	}
	return convs
}

// fixtureTrainable is the number of fixture conversations with an assistant turn.
const fixtureTrainable = 12

func (m fxMsg) jsonMap() map[string]any {
	o := map[string]any{"role": m.Role, "content": m.Content}
	if m.Reasoning != "" {
		o["reasoning_content"] = m.Reasoning
	}
	if len(m.Calls) > 0 {
		var calls []any
		for _, c := range m.Calls {
			calls = append(calls, map[string]any{"id": c.ID, "type": "function",
				"function": map[string]any{"name": c.Name, "arguments": c.Args}})
		}
		o["tool_calls"] = calls
	}
	return o
}

func (c fxConv) messagesJSON(t *testing.T) []byte {
	t.Helper()
	var arr []any
	for _, m := range c.Msgs {
		arr = append(arr, m.jsonMap())
	}
	b, err := json.Marshal(arr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectedDoc renders c as the encoder takes it, tools on the system message, independently of the corpus.
func (c fxConv) expectedDoc(t *testing.T, opt EncodeOptions) (Doc, bool) {
	t.Helper()
	var arr []any
	if c.SysTools != "" && c.Msgs[0].Role != "system" {
		arr = append(arr, map[string]any{"role": "system", "content": "", "tools": json.RawMessage(c.SysTools)})
	}
	for i, m := range c.Msgs {
		o := m.jsonMap()
		if i == 0 && m.Role == "system" && c.SysTools != "" {
			o["tools"] = json.RawMessage(c.SysTools)
		}
		arr = append(arr, o)
	}
	b, err := json.Marshal(arr)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ParseMessages(b)
	if err != nil {
		t.Fatal(err)
	}
	ids, mask, err := EncodeForTraining(nil, msgs, opt)
	if err != nil {
		t.Fatal(err)
	}
	return Doc{IDs: ids, Mask: mask}, slices.Contains(mask, 1)
}

func writeConvJSONL(t *testing.T, path string, convs []fxConv) {
	t.Helper()
	var b strings.Builder
	for i, c := range convs {
		row := map[string]any{"id": i, "messages": json.RawMessage(c.messagesJSON(t))}
		if c.Tools != "" {
			row["tools"] = json.RawMessage(c.Tools)
		}
		js, err := json.Marshal(row)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(js)
		b.WriteByte('\n')
		if i == 3 {
			b.WriteString("\n") // a blank line is skipped
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeConvParquet writes convs with row groups of rowGroup rows: messages as list<struct<role, content,
// reasoning_content, tool_calls: list<struct<id, type, function: struct<name, arguments>>>>> as HF datasets
// store them (asList), or as a string of JSON; tools as a nullable string column; and an int id column.
func writeConvParquet(t *testing.T, path string, convs []fxConv, asList bool, rowGroup int) {
	t.Helper()
	str := arrow.BinaryTypes.String
	fnType := arrow.StructOf(arrow.Field{Name: "name", Type: str}, arrow.Field{Name: "arguments", Type: str})
	callType := arrow.StructOf(arrow.Field{Name: "id", Type: str, Nullable: true},
		arrow.Field{Name: "type", Type: str, Nullable: true}, arrow.Field{Name: "function", Type: fnType})
	msgType := arrow.StructOf(arrow.Field{Name: "role", Type: str}, arrow.Field{Name: "content", Type: str, Nullable: true},
		arrow.Field{Name: "reasoning_content", Type: str, Nullable: true},
		arrow.Field{Name: "tool_calls", Type: arrow.ListOf(callType), Nullable: true})
	var msgsType arrow.DataType = str
	if asList {
		msgsType = arrow.ListOf(msgType)
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "messages", Type: msgsType, Nullable: true}, {Name: "tools", Type: str, Nullable: true}}, nil)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pqarrow.NewFileWriter(schema, f, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(int64(rowGroup))),
		pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	rb := array.NewRecordBuilder(memory.NewGoAllocator(), schema)
	defer rb.Release()
	for start := 0; start < len(convs); start += rowGroup {
		for i, c := range convs[start:min(start+rowGroup, len(convs))] {
			rb.Field(0).(*array.Int64Builder).Append(int64(start + i))
			if asList {
				lb := rb.Field(1).(*array.ListBuilder)
				sb := lb.ValueBuilder().(*array.StructBuilder)
				lb.Append(true)
				for _, m := range c.Msgs {
					sb.Append(true)
					sb.FieldBuilder(0).(*array.StringBuilder).Append(m.Role)
					sb.FieldBuilder(1).(*array.StringBuilder).Append(m.Content)
					if m.Reasoning == "" {
						sb.FieldBuilder(2).AppendNull()
					} else {
						sb.FieldBuilder(2).(*array.StringBuilder).Append(m.Reasoning)
					}
					tcb := sb.FieldBuilder(3).(*array.ListBuilder)
					if len(m.Calls) == 0 {
						tcb.AppendNull()
						continue
					}
					tcb.Append(true)
					csb := tcb.ValueBuilder().(*array.StructBuilder)
					for _, call := range m.Calls {
						csb.Append(true)
						csb.FieldBuilder(0).(*array.StringBuilder).Append(call.ID)
						csb.FieldBuilder(1).(*array.StringBuilder).Append("function")
						fsb := csb.FieldBuilder(2).(*array.StructBuilder)
						fsb.Append(true)
						fsb.FieldBuilder(0).(*array.StringBuilder).Append(call.Name)
						fsb.FieldBuilder(1).(*array.StringBuilder).Append(call.Args)
					}
				}
			} else {
				rb.Field(1).(*array.StringBuilder).Append(string(c.messagesJSON(t)))
			}
			if c.Tools == "" {
				rb.Field(2).AppendNull()
			} else {
				rb.Field(2).(*array.StringBuilder).Append(c.Tools)
			}
		}
		rec := rb.NewRecordBatch()
		err := w.Write(rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// convKinds writes the fixture as every supported file kind and returns the configs opening them.
func convKinds(t *testing.T, convs []fxConv) map[string]CorpusConfig {
	t.Helper()
	dir := t.TempDir()
	jl := filepath.Join(dir, "convs.jsonl")
	writeConvJSONL(t, jl, convs)
	split := filepath.Join(dir, "split")
	if err := os.Mkdir(split, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConvJSONL(t, filepath.Join(split, "a.jsonl"), convs[:5])
	writeConvJSONL(t, filepath.Join(split, "b.jsonl"), convs[5:])
	pl := filepath.Join(dir, "list.parquet")
	writeConvParquet(t, pl, convs, true, 4)
	ps := filepath.Join(dir, "string.parquet")
	writeConvParquet(t, ps, convs, false, 5)
	pf, err := file.OpenParquetFile(pl, false)
	if err != nil {
		t.Fatal(err)
	}
	if pf.NumRowGroups() < 3 {
		t.Fatalf("list.parquet has %d row groups, want several", pf.NumRowGroups())
	}
	pf.Close()
	return map[string]CorpusConfig{
		"jsonl":          {Source: "jsonl", Path: jl, TextColumn: "text"},
		"jsonl_dir":      {Source: "jsonl", Path: split},
		"parquet_list":   {Source: "parquet", Path: pl},
		"parquet_string": {Source: "parquet", Path: ps, TextColumn: "messages"},
	}
}

func openConv(t *testing.T, cfg CorpusConfig, split Split, opt EncodeOptions) *ConversationCorpus {
	t.Helper()
	src, err := OpenConversationCorpus(cfg, split, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src.(*ConversationCorpus)
}

func TestConversationKindsAgree(t *testing.T) {
	convs := fixtureConvs()
	opt := DefaultEncodeOptions(ModeThinking)
	var want []Doc
	for _, c := range convs {
		if d, ok := c.expectedDoc(t, opt); ok {
			want = append(want, d)
		}
	}
	if len(want) != fixtureTrainable {
		t.Fatalf("%d trainable fixture conversations, want %d", len(want), fixtureTrainable)
	}
	for name, cfg := range convKinds(t, convs) {
		t.Run(name, func(t *testing.T) {
			c := openConv(t, cfg, SplitTrain, opt)
			for i := range 2 * len(want) { // two epochs
				d, err := c.Next()
				if err != nil {
					t.Fatalf("doc %d: %v", i, err)
				}
				w := want[i%len(want)]
				if !slices.Equal(d.IDs, w.IDs) || !slices.Equal(d.Mask, w.Mask) {
					t.Fatalf("doc %d: %q\nwant %q", i, (&Tokenizer{}).Decode(d.IDs), (&Tokenizer{}).Decode(w.IDs))
				}
				if i == len(want)-1 && c.Epoch() != 0 || i == len(want) && c.Epoch() != 1 {
					t.Errorf("doc %d: epoch %d", i, c.Epoch())
				}
			}
			if c.Skipped() != 2 {
				t.Errorf("skipped %d conversations in two epochs, want 2", c.Skipped())
			}
			if s := c.State(); s.Docs != int64(2*len(want)) || s.Epoch != 1 || s.EpochDocs != int64(len(want)) {
				t.Errorf("state %+v", s)
			}
		})
	}
}

func TestConversationToolsOnSystem(t *testing.T) {
	// The weather conversation has no system message: a new empty one carries the tools, as in
	// chat-format.md example E3; the prompt then starts with BOS "\n\n" and the tools block.
	path := filepath.Join(t.TempDir(), "tools.jsonl")
	writeConvJSONL(t, path, fixtureConvs()[2:3])
	c := openConv(t, CorpusConfig{Source: "jsonl", Path: path}, SplitTrain, DefaultEncodeOptions(ModeThinking))
	d, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	text := (&Tokenizer{}).Decode(d.IDs)
	wantPre := litBOS + "\n\n" + templateTokens.Replace(DefaultToolsTemplate) + "\n<functions>\n" +
		`{"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}` +
		"\n</functions>\n" + litUser + "Weather in Bodø for 2 days?"
	if !strings.HasPrefix(text, wantPre) {
		t.Errorf("prompt %q\nwant prefix %q", text, wantPre)
	}
}

func TestConversationSplit(t *testing.T) {
	convs := fixtureConvs()
	opt := DefaultEncodeOptions(ModeChat)
	var all []string
	for _, c := range convs {
		if d, ok := c.expectedDoc(t, opt); ok {
			all = append(all, string((&Tokenizer{}).Decode(d.IDs)))
		}
	}
	slices.Sort(all)
	const heldOut = 0.4
	var first [2][]string
	kinds := convKinds(t, convs)
	for _, name := range []string{"jsonl", "jsonl_dir", "parquet_list", "parquet_string"} {
		cfg := kinds[name]
		cfg.HeldOut = heldOut
		var sides [2][]string
		for _, split := range []Split{SplitTrain, SplitHeldOut} {
			c := openConv(t, cfg, split, opt)
			for {
				d, err := c.Next()
				if err != nil {
					t.Fatalf("%s %s: %v", name, split, err)
				}
				if c.Epoch() > 0 {
					break
				}
				sides[split] = append(sides[split], (&Tokenizer{}).Decode(d.IDs))
			}
		}
		if len(sides[0]) == 0 || len(sides[1]) == 0 {
			t.Fatalf("%s: train %d, held out %d conversations; want both non-empty", name, len(sides[0]), len(sides[1]))
		}
		for _, s := range sides[1] {
			if slices.Contains(sides[0], s) {
				t.Errorf("%s: conversation in both splits: %q", name, s)
			}
		}
		union := slices.Concat(sides[0], sides[1])
		slices.Sort(union)
		if !slices.Equal(union, all) {
			t.Errorf("%s: the splits together hold %d conversations, not the %d of the corpus", name, len(union), len(all))
		}
		if first[0] == nil {
			first = sides
		} else if !slices.Equal(sides[0], first[0]) || !slices.Equal(sides[1], first[1]) {
			t.Errorf("%s: split differs from the jsonl one", name)
		}
	}
}

func TestConversationResume(t *testing.T) {
	convs := fixtureConvs()
	opt := DefaultEncodeOptions(ModeThinking)
	packers := map[string]func(DocSource) *DocPacker{
		"packed": func(s DocSource) *DocPacker { return NewDocPacker(s, 4, 64) },
		"padded": func(s DocSource) *DocPacker { return NewDocPackerPadded(s, 3, 64) },
	}
	const N = 24
	for kind, cfg := range convKinds(t, convs) {
		cfg.HeldOut = 0.25
		for pname, mk := range packers {
			t.Run(kind+"/"+pname, func(t *testing.T) {
				ref := mk(openConv(t, cfg, SplitTrain, opt))
				want := runDocPacker(t, ref, N)
				if ref.State().Corpus.Epoch < 1 {
					t.Fatalf("%d batches do not wrap around the corpus", N)
				}
				for _, cut := range []int{0, 1, 2, 5, 9, 13, 17, 23} {
					p := mk(openConv(t, cfg, SplitTrain, opt))
					runDocPacker(t, p, cut)
					js, err := json.Marshal(p.State())
					if err != nil {
						t.Fatal(err)
					}
					var s DocPackerState
					if err := json.Unmarshal(js, &s); err != nil {
						t.Fatal(err)
					}
					q := mk(openConv(t, cfg, SplitTrain, opt))
					if err := q.Restore(s); err != nil {
						t.Fatalf("cut %d: restore %s: %v", cut, js, err)
					}
					got := runDocPacker(t, q, N-cut)
					for i := range got {
						if !batchEqual(&got[i], &want[cut+i]) {
							t.Fatalf("cut %d (state %s): batch %d differs after restore", cut, js, cut+i)
						}
					}
					if !equalState(q.State(), ref.State()) {
						t.Errorf("cut %d: final state %+v, want %+v", cut, q.State(), ref.State())
					}
				}
			})
		}
	}
}

func equalState(a, b DocPackerState) bool {
	return a.Mode == b.Mode && a.Corpus == b.Corpus && slices.Equal(a.Leftover, b.Leftover) &&
		slices.Equal(a.LeftoverMask, b.LeftoverMask) && a.Truncated == b.Truncated && a.TruncatedTokens == b.TruncatedTokens
}

func TestConversationRestoreErrors(t *testing.T) {
	kinds := convKinds(t, fixtureConvs())
	c := openConv(t, kinds["jsonl"], SplitTrain, DefaultEncodeOptions(ModeChat))
	good := c.State()
	text, err := OpenJSONLCorpus(kinds["jsonl"].Path, "id", 0, SplitTrain)
	if err == nil {
		defer text.Close()
	}
	tests := []struct {
		name string
		edit func(*CorpusState)
		want string
	}{
		{"text corpus state", func(s *CorpusState) { s.Source = "jsonl" }, `cannot restore a "jsonl" corpus state`},
		{"parquet state", func(s *CorpusState) { s.Source = "chat_parquet" }, `cannot restore a "chat_parquet" corpus state`},
		{"split", func(s *CorpusState) { s.Split = "held_out" }, `state is for split "held_out"`},
		{"files", func(s *CorpusState) { s.Files = 2 }, "state is for 2 files"},
		{"mid-line", func(s *CorpusState) { s.Offset, s.Line, s.Row = 5, 1, 0 }, "not at the start of a line"},
		{"past end", func(s *CorpusState) { s.Offset = 1 << 30 }, "past the end of the file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.edit(&s)
			if err := c.Restore(s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	p := openConv(t, kinds["parquet_list"], SplitTrain, DefaultEncodeOptions(ModeChat))
	ps := p.State()
	ps.Rows++
	if err := p.Restore(ps); err == nil || !strings.Contains(err.Error(), "the file changed") {
		t.Errorf("parquet rows mismatch: err = %v", err)
	}
}

func TestConversationSkipAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prompts.jsonl")
	if err := os.WriteFile(path, []byte(`{"messages": [{"role": "user", "content": "a"}]}`+"\n"+
		`{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "b"}]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := openConv(t, CorpusConfig{Source: "jsonl", Path: path}, SplitTrain, DefaultEncodeOptions(ModeChat))
	_, err := c.Next()
	if err == nil || !strings.Contains(err.Error(), "no trainable conversation") || !strings.Contains(err.Error(), "2 skipped") {
		t.Errorf("err = %v, want no trainable conversation, 2 skipped", err)
	}
}

func TestConversationJSONLErrors(t *testing.T) {
	const good = `{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "reasoning_content": "r", "content": "a"}]}`
	tests := []struct {
		name   string
		line   string
		column string
		mode   string
		want   string // after "jsonl PATH: line 3: "
		is     error
	}{
		{name: "bad JSON", line: `{"messages": [`, want: "bad JSON"},
		{name: "not an object", line: `[1, 2]`, want: "not a JSON object"},
		{name: "missing field", line: `{"text": "hello", "id": 3}`, want: `no field "messages" (fields: id, text)`},
		{name: "null field", line: `{"messages": null}`, want: `no field "messages"`},
		{name: "custom column missing", line: good, column: "conversation", want: `no field "conversation" (fields: messages)`},
		{name: "not an array", line: `{"messages": 5}`, want: `field "messages" must be an array of messages`},
		{name: "string not JSON", line: `{"messages": "[{"}`, want: `field "messages"`},
		{name: "no role", line: `{"messages": [{"content": "x"}]}`, want: `field "messages": [0]: message: no role`},
		{name: "bad content type", line: `{"messages": [{"role": "user", "content": 3}]}`, want: `field "messages": [0]: message (user): content must be a string`},
		{name: "developer disabled", line: `{"messages": [{"role": "developer", "content": "d"}, {"role": "assistant", "reasoning_content": "r", "content": "a"}]}`,
			want: `field "messages": message 0: chat: the developer role`, is: ErrDeveloperRole},
		{name: "assistant without reasoning (thinking)", line: `{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}`,
			mode: ModeThinking, want: `field "messages": message 1 (assistant)`, is: ErrBadMessage},
		{name: "orphan tool result", line: `{"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}]}`,
			want: `field "messages": message 1 (tool)`, is: ErrOrphanToolResult},
		{name: "bad arguments", line: `{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}`,
			want: `field "messages": message 1 (assistant)`, is: ErrBadMessage},
		{name: "tools twice", line: `{"tools": [{"name": "f"}], "messages": [{"role": "system", "content": "", "tools": [{"type": "function", "function": {"name": "g"}}]}, {"role": "user", "content": "q"}]}`,
			want: `field "tools": tools are given both`},
		{name: "tools not array", line: `{"tools": 5, "messages": []}`, want: `field "tools": must be an array`},
		{name: "tool without name", line: `{"tools": [{"description": "d"}], "messages": []}`, want: `field "tools": [0] has neither`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.jsonl")
			if err := os.WriteFile(path, []byte(good+"\n\n"+tc.line+"\n"+good+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			mode := tc.mode
			if mode == "" {
				mode = ModeChat
			}
			src, err := OpenConversationCorpus(CorpusConfig{Source: "jsonl", Path: path, TextColumn: tc.column}, SplitTrain, nil, DefaultEncodeOptions(mode))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			at := 3
			if tc.column != "" {
				at = 1
			} else if _, err := src.Next(); err != nil {
				t.Fatalf("line 1: %v", err)
			}
			_, err = src.Next()
			want := fmt.Sprintf("jsonl %s: line %d: %s", path, at, tc.want)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
}

func TestConversationParquetErrors(t *testing.T) {
	dir := t.TempDir()
	str := arrow.BinaryTypes.String
	write := func(name string, schema *arrow.Schema, fill func(rb *array.RecordBuilder)) string {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w, err := pqarrow.NewFileWriter(schema, f, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps())
		if err != nil {
			t.Fatal(err)
		}
		rb := array.NewRecordBuilder(memory.NewGoAllocator(), schema)
		defer rb.Release()
		fill(rb)
		rec := rb.NewRecordBatch()
		defer rec.Release()
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := `[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]`
	strSchema := arrow.NewSchema([]arrow.Field{{Name: "messages", Type: str, Nullable: true}}, nil)
	rows := func(vals ...string) func(rb *array.RecordBuilder) {
		return func(rb *array.RecordBuilder) {
			for _, v := range vals {
				if v == "NULL" {
					rb.Field(0).AppendNull()
				} else {
					rb.Field(0).(*array.StringBuilder).Append(v)
				}
			}
		}
	}
	nullRow := write("null.parquet", strSchema, rows(good, good, "NULL"))
	badJSON := write("bad.parquet", strSchema, rows(good, `[{"role": "user", "content": "q"}`))
	devRow := write("dev.parquet", strSchema, rows(`[{"role": "developer", "content": "d"}, {"role": "assistant", "content": "a"}]`))
	intCol := write("int.parquet", arrow.NewSchema([]arrow.Field{{Name: "messages", Type: arrow.PrimitiveTypes.Int64}}, nil),
		func(rb *array.RecordBuilder) { rb.Field(0).(*array.Int64Builder).Append(1) })
	badTools := write("tools.parquet", arrow.NewSchema([]arrow.Field{{Name: "messages", Type: str}, {Name: "tools", Type: arrow.PrimitiveTypes.Int64}}, nil),
		func(rb *array.RecordBuilder) {
			rb.Field(0).(*array.StringBuilder).Append(good)
			rb.Field(1).(*array.Int64Builder).Append(1)
		})

	openErrs := []struct {
		name, path, column, want string
	}{
		{"missing column", nullRow, "conversation", fmt.Sprintf(`parquet %s: no column "conversation" (columns: messages)`, nullRow)},
		{"int column", intCol, "", fmt.Sprintf(`parquet %s: column "messages" has type int64`, intCol)},
		{"int tools column", badTools, "", fmt.Sprintf(`parquet %s: column "tools" has type int64`, badTools)},
	}
	for _, tc := range openErrs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenConversationCorpus(CorpusConfig{Source: "parquet", Path: tc.path, TextColumn: tc.column}, SplitTrain, nil, DefaultEncodeOptions(ModeChat))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	nextErrs := []struct {
		name, path string
		skip       int
		want       string
		is         error
	}{
		{"null row", nullRow, 2, fmt.Sprintf(`parquet %s: row 2: column "messages" is null`, nullRow), nil},
		{"bad JSON", badJSON, 1, fmt.Sprintf(`parquet %s: row 1: field "messages"`, badJSON), nil},
		{"developer", devRow, 0, fmt.Sprintf(`parquet %s: row 0: field "messages": message 0: chat: the developer role`, devRow), ErrDeveloperRole},
	}
	for _, tc := range nextErrs {
		t.Run(tc.name, func(t *testing.T) {
			c := openConv(t, CorpusConfig{Source: "parquet", Path: tc.path}, SplitTrain, DefaultEncodeOptions(ModeChat))
			for i := range tc.skip {
				if _, err := c.Next(); err != nil {
					t.Fatalf("row %d: %v", i, err)
				}
			}
			_, err := c.Next()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
}

func TestOpenConversationCorpusErrors(t *testing.T) {
	path := filepath.Join("testdata", "sft", "two_turn.jsonl")
	tests := []struct {
		name  string
		cfg   CorpusConfig
		split Split
		mode  string
		want  string
	}{
		{"synthetic", CorpusConfig{Source: "synthetic", Generator: "arithmetic"}, SplitTrain, ModeChat, `unknown data.source "synthetic"`},
		{"no path", CorpusConfig{Source: "jsonl"}, SplitTrain, ModeChat, "needs data.path"},
		{"held out empty", CorpusConfig{Source: "jsonl", Path: path}, SplitHeldOut, ModeChat, "held-out split is empty"},
		{"bad mode", CorpusConfig{Source: "jsonl", Path: path}, SplitTrain, "fast", `got "fast"`},
		{"no files", CorpusConfig{Source: "parquet", Path: filepath.Join("testdata", "sft")}, SplitTrain, ModeChat, "no .parquet files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenConversationCorpus(tc.cfg, tc.split, nil, DefaultEncodeOptions(tc.mode))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestConversationRestoreEveryRow restores the corpus at the cursor taken before every document of two
// epochs (every row of every file kind, row-group boundaries of the Parquet files included) and checks that
// the next document is the one an uninterrupted read returned.
func TestConversationRestoreEveryRow(t *testing.T) {
	opt := DefaultEncodeOptions(ModeChat)
	for name, cfg := range convKinds(t, fixtureConvs()) {
		t.Run(name, func(t *testing.T) {
			c := openConv(t, cfg, SplitTrain, opt)
			var states []CorpusState
			var docs []Doc
			for range 2*fixtureTrainable + 1 {
				states = append(states, c.State())
				d, err := c.Next()
				if err != nil {
					t.Fatal(err)
				}
				docs = append(docs, Doc{IDs: slices.Clone(d.IDs), Mask: slices.Clone(d.Mask)})
			}
			r := openConv(t, cfg, SplitTrain, opt)
			for i := len(states) - 1; i >= 0; i-- { // backwards, so every restore seeks
				if err := r.Restore(states[i]); err != nil {
					t.Fatalf("doc %d: restore %+v: %v", i, states[i], err)
				}
				d, err := r.Next()
				if err != nil {
					t.Fatalf("doc %d: %v", i, err)
				}
				if !slices.Equal(d.IDs, docs[i].IDs) || !slices.Equal(d.Mask, docs[i].Mask) {
					t.Fatalf("doc %d after restore to %+v differs", i, states[i])
				}
			}
		})
	}
}
