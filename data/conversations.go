// conversations.go implements the conversation corpora of chat SFT: JSONL or Parquet files of conversations
// in the usual HF/OpenAI message shape, rendered by the DeepSeek-V3.2 chat encoder (EncodeForTraining) to
// token documents with the SFT loss mask, as a DocSource for DocPacker.
//
// JSONL: one JSON object per line (blank lines skipped) whose messages field (cfg.TextColumn; "messages"
// when that is "" or "text") holds an array of {role, content, reasoning_content?, tool_calls?} objects, or
// a string of that JSON. Parquet: the messages column is either a string of JSON or a list<struct<role,
// content, ...>> as HF datasets store it (read with pqarrow; a row's list is turned into JSON with the Arrow
// array's GetOneForMarshal and read with the chat Message decoder, so struct fields may come in any order
// and missing ones are null).
//
// Tools: the encoder takes tool definitions on a system (or developer) message, as the official encoder
// does. A row may instead carry them in a top-level tools field/column (an array of OpenAI tool definitions,
// or a string of that JSON, as many HF datasets store it); they are then put on the leading system message,
// or on a new empty system message placed first when the conversation has none (chat-format.md example E3,
// "tools on empty system"). A bare function schema ({"name": ..., "parameters": ...}) is wrapped as
// {"type": "function", "function": ...}. Tools both in the field and on the leading system message are an error.
//
// The train/held-out split is InSplit on the canonical JSON of the conversation (each message re-serialised
// by Message.PyJSON, row-level tools included), so the same conversation lands on the same side whether it
// comes from JSONL or Parquet, whatever the key order or the null fields. Like TextCorpus, the corpus reads
// its files in name order, wraps around after the last one counting epochs, and keeps an exact cursor (file,
// row index, and for JSONL the byte offset and line number); its CorpusState.Source is "chat_jsonl" or
// "chat_parquet", so a text corpus state is never restored into it.
//
// Errors name the file and the line (JSONL, 1-based) or row (Parquet, 0-based) and the field: bad JSON, a
// missing or mistyped messages field, a message the decoder or the encoder refuses (e.g. the developer role
// when it is disabled, a thinking-mode assistant turn without reasoning). A conversation without an
// assistant turn has no trained token: it is skipped and counted (Skipped; the first one is logged with its
// place), not an error, since prompt-only rows are common in chat datasets; an epoch in which every
// conversation of the split is skipped is an error.

package data

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// DefaultMessagesColumn is the messages field read when CorpusConfig.TextColumn is "" or "text".
const DefaultMessagesColumn = "messages"

// ToolsColumn is the optional row-level field/column of tool definitions.
const ToolsColumn = "tools"

// convRow is one conversation read from a file.
type convRow struct {
	msgs []Message
	key  string  // canonical JSON, the split key
	pos  filePos // where the row starts
}

// convSource reads the conversations of one file in order.
type convSource interface {
	// next returns the next conversation; io.EOF when the file is exhausted.
	next() (convRow, error)
	// pos is the position of the next row.
	pos() filePos
	// where names a row position for error messages: "jsonl FILE: line N" or "parquet FILE: row N".
	where(p filePos) string
	// seek moves to p, a position taken from pos or a convRow.
	seek(p filePos) error
	// checkState validates a restored cursor against the file; fillState fills the file-specific fields.
	checkState(s CorpusState) error
	fillState(s *CorpusState)
	close() error
}

// ConversationCorpus streams the conversations of one or more JSONL or Parquet files that fall in one
// split, as token documents with the chat-SFT loss mask (see the file comment).
type ConversationCorpus struct {
	kind, name, column string // kind: jsonl or parquet; name: the path the corpus was opened with
	paths              []string
	open               func(path, column string) (convSource, error)
	tok                *Tokenizer
	opt                EncodeOptions
	heldOut            float64
	split              Split

	file int
	src  convSource

	epoch, epochDocs, docs int64
	skipped, epochSkipped  int64
}

// OpenConversationCorpus opens the conversation corpus of cfg (Source "jsonl" or "parquet", Path a file, a
// directory or a glob, TextColumn the messages field, HeldOut the held-out fraction) restricted to split,
// rendering conversations with tok (nil: the byte tokenizer) and opt.
func OpenConversationCorpus(cfg CorpusConfig, split Split, tok *Tokenizer, opt EncodeOptions) (DocSource, error) {
	c, err := openConversationCorpus(cfg, split, tok, opt)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func openConversationCorpus(cfg CorpusConfig, split Split, tok *Tokenizer, opt EncodeOptions) (*ConversationCorpus, error) {
	if split != SplitTrain && split != SplitHeldOut {
		return nil, fmt.Errorf("conversations: unknown split %d", int(split))
	}
	if opt.Mode != ModeThinking && opt.Mode != ModeChat {
		return nil, fmt.Errorf("conversations: %w, got %q", ErrBadMode, opt.Mode)
	}
	if tok == nil {
		tok = &Tokenizer{}
	}
	col := cfg.TextColumn
	if col == "" || col == DefaultTextColumn {
		col = DefaultMessagesColumn
	}
	var ext string
	var open func(path, column string) (convSource, error)
	switch cfg.Source {
	case "jsonl":
		ext = ".jsonl"
		open = func(p, col string) (convSource, error) {
			s, err := openConvJSONL(p, col)
			if err != nil {
				return nil, err
			}
			return s, nil
		}
	case "parquet":
		ext = ".parquet"
		open = func(p, col string) (convSource, error) {
			s, err := openConvParquet(p, col)
			if err != nil {
				return nil, err
			}
			return s, nil
		}
	default:
		return nil, fmt.Errorf("conversations: unknown data.source %q (want jsonl or parquet)", cfg.Source)
	}
	if cfg.Path == "" {
		return nil, fmt.Errorf("conversations: source %s needs data.path", cfg.Source)
	}
	if err := checkHeldOut(cfg.HeldOut, split); err != nil {
		return nil, fmt.Errorf("conversations %s %s: %w", cfg.Source, cfg.Path, err)
	}
	paths, err := resolveTextPaths(cfg.Source, ext, cfg.Path)
	if err != nil {
		return nil, err
	}
	c := &ConversationCorpus{kind: cfg.Source, name: cfg.Path, column: col, paths: paths, open: open, tok: tok,
		opt: opt, heldOut: cfg.HeldOut, split: split}
	// Open every file once, so a bad file or column is reported now rather than in the middle of training.
	for i := len(paths) - 1; i >= 0; i-- {
		src, err := open(paths[i], col)
		if err != nil {
			if c.src != nil {
				c.src.close()
			}
			return nil, err
		}
		if i > 0 {
			if err := src.close(); err != nil {
				return nil, fmt.Errorf("%s %s: %w", cfg.Source, paths[i], err)
			}
			continue
		}
		c.src = src
	}
	return c, nil
}

// switchFile makes paths[i] the open file, positioned at its start.
func (c *ConversationCorpus) switchFile(i int) error {
	if i == c.file {
		return c.src.seek(filePos{})
	}
	if err := c.src.close(); err != nil {
		return fmt.Errorf("%s %s: %w", c.kind, c.paths[c.file], err)
	}
	src, err := c.open(c.paths[i], c.column)
	if err != nil {
		return err
	}
	c.src, c.file = src, i
	return nil
}

// Next returns the next conversation of the split as a token document, wrapping around after the last file.
func (c *ConversationCorpus) Next() (Doc, error) {
	for {
		r, err := c.src.next()
		if errors.Is(err, io.EOF) {
			if c.file+1 < len(c.paths) {
				if err := c.switchFile(c.file + 1); err != nil {
					return Doc{}, err
				}
				continue
			}
			if c.epochDocs == 0 {
				return Doc{}, fmt.Errorf("conversations %s %s: no trainable conversation in the %s split (held_out %v; %d skipped this pass for having no assistant turn)",
					c.kind, c.name, c.split, c.heldOut, c.epochSkipped)
			}
			if err := c.switchFile(0); err != nil {
				return Doc{}, err
			}
			c.epoch++
			c.epochDocs, c.epochSkipped = 0, 0
			continue
		}
		if err != nil {
			return Doc{}, err
		}
		if InSplit(r.key, c.heldOut) != c.split {
			continue
		}
		ids, mask, err := EncodeForTraining(c.tok, r.msgs, c.opt)
		if err != nil {
			return Doc{}, fmt.Errorf("%s: field %q: %w", c.src.where(r.pos), c.column, err)
		}
		trained := false
		for _, m := range mask {
			if m != 0 {
				trained = true
				break
			}
		}
		if !trained {
			if c.skipped == 0 {
				slog.Warn("conversations: skipping a conversation without an assistant turn (nothing to train on); further ones are only counted",
					"at", c.src.where(r.pos))
			}
			c.skipped++
			c.epochSkipped++
			continue
		}
		c.docs++
		c.epochDocs++
		return Doc{IDs: ids, Mask: mask}, nil
	}
}

// Skipped returns the number of conversations of the split skipped for having no assistant turn since the
// corpus was opened (the counter is not part of the cursor: it restarts at zero in a resumed run).
func (c *ConversationCorpus) Skipped() int64 { return c.skipped }

// Epoch is the number of completed passes over the files.
func (c *ConversationCorpus) Epoch() int64 { return c.epoch }

// Files lists the files of the corpus, in reading order.
func (c *ConversationCorpus) Files() []string { return slices.Clone(c.paths) }

// State returns the cursor.
func (c *ConversationCorpus) State() CorpusState {
	p := c.src.pos()
	s := CorpusState{Source: "chat_" + c.kind, Split: c.split.String(), Docs: c.docs, Epoch: c.epoch, EpochDocs: c.epochDocs,
		File: int64(c.file), Files: int64(len(c.paths)), Row: p.row, Offset: p.offset, Line: p.line}
	c.src.fillState(&s)
	return s
}

// Restore moves the cursor to s, taken from a conversation corpus over the same files and split.
func (c *ConversationCorpus) Restore(s CorpusState) error {
	name := "conversations " + c.kind + " " + c.name
	switch {
	case s.Source != "chat_"+c.kind:
		return fmt.Errorf("%s: cannot restore a %q corpus state", name, s.Source)
	case s.Split != c.split.String():
		return fmt.Errorf("%s: state is for split %q, corpus is %s", name, s.Split, c.split)
	case s.Files != int64(len(c.paths)):
		return fmt.Errorf("%s: state is for %d files, the corpus has %d: the files changed", name, s.Files, len(c.paths))
	case s.File < 0 || s.File >= s.Files || s.Row < 0 || s.Offset < 0 || s.Line < 0 || s.Epoch < 0 || s.Docs < 0 ||
		s.EpochDocs < 0 || s.EpochDocs > s.Docs:
		return fmt.Errorf("%s: invalid cursor %+v", name, s)
	}
	if err := c.switchFile(int(s.File)); err != nil {
		return err
	}
	if err := c.src.checkState(s); err != nil {
		return err
	}
	if err := c.src.seek(filePos{row: s.Row, offset: s.Offset, line: s.Line}); err != nil {
		return err
	}
	c.epoch, c.epochDocs, c.docs = s.Epoch, s.EpochDocs, s.Docs
	c.epochSkipped = 0
	return nil
}

// Close closes the open file.
func (c *ConversationCorpus) Close() error { return c.src.close() }

// parseConversation decodes the messages JSON (an array, or a string holding one) and the optional tools
// JSON (null, an array, or a string holding one) of a row, attaches the tools to the leading system message,
// and returns the messages with their canonical JSON. Errors name the field.
func parseConversation(column string, msgsJSON, toolsJSON []byte) ([]Message, string, error) {
	raw, err := unquoteJSON(msgsJSON)
	if err != nil {
		return nil, "", fmt.Errorf("field %q: %w", column, err)
	}
	if len(raw) == 0 || raw[0] != '[' {
		return nil, "", fmt.Errorf("field %q must be an array of messages (or a string of one), got %.40s", column, raw)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, "", fmt.Errorf("field %q: %w", column, err)
	}
	msgs := make([]Message, len(items), len(items)+1)
	for i, it := range items {
		if err := json.Unmarshal(it, &msgs[i]); err != nil {
			return nil, "", fmt.Errorf("field %q: [%d]: %w", column, i, err)
		}
	}
	tools, err := parseRowTools(toolsJSON)
	if err != nil {
		return nil, "", fmt.Errorf("field %q: %w", ToolsColumn, err)
	}
	if len(tools) > 0 {
		if len(msgs) > 0 && msgs[0].Role == "system" {
			if len(msgs[0].Tools) > 0 {
				return nil, "", fmt.Errorf("field %q: tools are given both in the row and on the system message", ToolsColumn)
			}
			msgs[0].Tools = tools
		} else {
			msgs = append(msgs, Message{})
			copy(msgs[1:], msgs)
			msgs[0] = Message{Role: "system", Tools: tools}
		}
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.PyJSON())
	}
	b.WriteByte(']')
	return msgs, b.String(), nil
}

// unquoteJSON returns the JSON text itself, or the text of a JSON string (a field that stores JSON as a string).
func unquoteJSON(b []byte) ([]byte, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '"' {
		return b, nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return bytes.TrimSpace([]byte(s)), nil
}

// parseRowTools reads a row-level tools value: absent, null, "" or [] mean none.
func parseRowTools(b []byte) ([]json.RawMessage, error) {
	raw, err := unquoteJSON(b)
	if err != nil {
		return nil, err
	}
	if isJSONNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("must be an array of tool definitions (or a string of one): %w", err)
	}
	for k, it := range items {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(it, &obj); err != nil {
			return nil, fmt.Errorf("[%d] must be an object: %w", k, err)
		}
		if _, ok := obj["function"]; ok {
			continue
		}
		if _, ok := obj["name"]; !ok {
			return nil, fmt.Errorf("[%d] has neither \"function\" nor \"name\"", k)
		}
		w := make([]byte, 0, len(it)+40)
		w = append(w, `{"type": "function", "function": `...)
		w = append(w, bytes.TrimSpace(it)...)
		items[k] = append(w, '}')
	}
	return items, nil
}

// convJSONL reads conversations from a JSONL file.
type convJSONL struct {
	*jsonlFile
}

func openConvJSONL(path, column string) (*convJSONL, error) {
	jf, err := openJSONLFile(path, column)
	if err != nil {
		return nil, err
	}
	return &convJSONL{jf}, nil
}

func (s *convJSONL) where(p filePos) string {
	return fmt.Sprintf("jsonl %s: line %d", s.path, p.line+1)
}

func (s *convJSONL) next() (convRow, error) {
	for {
		start := s.p
		line, err := s.readLine()
		if err != nil {
			return convRow{}, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		at := s.where(start)
		if line[0] != '{' {
			return convRow{}, fmt.Errorf("%s: not a JSON object", at)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(line, &obj); err != nil {
			return convRow{}, fmt.Errorf("%s: bad JSON: %w", at, err)
		}
		msgs, ok := obj[s.column]
		if !ok || isJSONNull(msgs) {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return convRow{}, fmt.Errorf("%s: no field %q (fields: %s)", at, s.column, strings.Join(keys, ", "))
		}
		m, key, err := parseConversation(s.column, msgs, obj[ToolsColumn])
		if err != nil {
			return convRow{}, fmt.Errorf("%s: %w", at, err)
		}
		start.row = s.p.row
		s.p.row++
		return convRow{msgs: m, key: key, pos: start}, nil
	}
}

func (s *convJSONL) close() error { return s.f.Close() }

// convParquet reads conversations from a Parquet file: the messages column (string JSON or a list) and,
// when the file has one, the tools column.
type convParquet struct {
	path, column string
	pf           *file.Reader
	fr           *pqarrow.FileReader
	leaves       []int
	hasTools     bool
	rows         int64
	groupStarts  []int64 // first row of each row group
	rr           pqarrow.RecordReader
	msgs, tools  arrow.Array // columns of the current record batch (owned by rr)
	i            int         // next row in the current record batch
	skip         int64       // rows still to skip after a seek
	p            filePos
}

func openConvParquet(path, column string) (*convParquet, error) {
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, fmt.Errorf("parquet %s: %w", path, err)
	}
	s := &convParquet{path: path, column: column, pf: pf, rows: pf.NumRows()}
	if err := s.init(); err != nil {
		pf.Close()
		return nil, err
	}
	return s, nil
}

// conversationColumnType reports whether t can hold conversations or tools: a string of JSON or a list.
func conversationColumnType(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.LIST, arrow.LARGE_LIST:
		return true
	}
	return false
}

func appendLeaves(f *pqarrow.SchemaField, out []int) []int {
	if f.IsLeaf() {
		return append(out, f.ColIndex)
	}
	for i := range f.Children {
		out = appendLeaves(&f.Children[i], out)
	}
	return out
}

func (s *convParquet) init() error {
	fr, err := pqarrow.NewFileReader(s.pf, pqarrow.ArrowReadProperties{BatchSize: textChunkRows}, memory.NewGoAllocator())
	if err != nil {
		return fmt.Errorf("parquet %s: %w", s.path, err)
	}
	s.fr = fr
	schema, err := fr.Schema()
	if err != nil {
		return fmt.Errorf("parquet %s: schema: %w", s.path, err)
	}
	idx := schema.FieldIndices(s.column)
	if len(idx) == 0 {
		names := make([]string, 0, schema.NumFields())
		for _, f := range schema.Fields() {
			names = append(names, f.Name)
		}
		return fmt.Errorf("parquet %s: no column %q (columns: %s)", s.path, s.column, strings.Join(names, ", "))
	}
	if t := schema.Field(idx[0]).Type; !conversationColumnType(t) {
		return fmt.Errorf("parquet %s: column %q has type %s, want a string of JSON or a list of messages", s.path, s.column, t)
	}
	s.leaves = appendLeaves(&fr.Manifest.Fields[idx[0]], s.leaves[:0])
	if ti := schema.FieldIndices(ToolsColumn); len(ti) > 0 && s.column != ToolsColumn {
		if t := schema.Field(ti[0]).Type; !conversationColumnType(t) {
			return fmt.Errorf("parquet %s: column %q has type %s, want a string of JSON or a list of tool definitions", s.path, ToolsColumn, t)
		}
		s.leaves = appendLeaves(&fr.Manifest.Fields[ti[0]], s.leaves)
		s.hasTools = true
	}
	if len(s.leaves) == 0 {
		return fmt.Errorf("parquet %s: column %q has no leaf columns", s.path, s.column)
	}
	if s.rows == 0 {
		return fmt.Errorf("parquet %s: no rows", s.path)
	}
	start := int64(0)
	for g := range s.pf.NumRowGroups() {
		s.groupStarts = append(s.groupStarts, start)
		start += s.pf.MetaData().RowGroup(g).NumRows()
	}
	return s.seek(filePos{})
}

func (s *convParquet) pos() filePos { return s.p }

func (s *convParquet) where(p filePos) string {
	return fmt.Sprintf("parquet %s: row %d", s.path, p.row)
}

// cellJSON returns the JSON text of row i of a string or list column; nil for null.
func cellJSON(a arrow.Array, i int) ([]byte, error) {
	if a.IsNull(i) {
		return nil, nil
	}
	switch col := a.(type) {
	case *array.String:
		return []byte(col.Value(i)), nil
	case *array.LargeString:
		return []byte(col.Value(i)), nil
	case array.ListLike:
		v := a.GetOneForMarshal(i)
		switch v := v.(type) {
		case json.RawMessage:
			return v, nil
		case nil:
			return nil, nil
		default:
			return json.Marshal(v)
		}
	}
	return nil, fmt.Errorf("read %s values, want a string or a list", a.DataType())
}

func (s *convParquet) next() (convRow, error) {
	for s.msgs == nil || s.i >= s.msgs.Len() {
		s.msgs, s.tools = nil, nil
		if s.rr == nil {
			return convRow{}, io.EOF
		}
		if !s.rr.Next() {
			if err := s.rr.Err(); err != nil && !errors.Is(err, io.EOF) {
				return convRow{}, fmt.Errorf("parquet %s: column %q: read at row %d: %w", s.path, s.column, s.p.row, err)
			}
			return convRow{}, io.EOF
		}
		rec := s.rr.RecordBatch()
		if n := rec.NumRows(); s.skip >= n {
			s.skip -= n
			continue
		}
		sc := rec.Schema()
		mi := sc.FieldIndices(s.column)
		if len(mi) == 0 {
			return convRow{}, fmt.Errorf("parquet %s: column %q missing from the record batch at row %d", s.path, s.column, s.p.row)
		}
		s.msgs = rec.Column(mi[0])
		if s.hasTools {
			if ti := sc.FieldIndices(ToolsColumn); len(ti) > 0 {
				s.tools = rec.Column(ti[0])
			}
		}
		s.i, s.skip = int(s.skip), 0
	}
	at := s.where(s.p)
	mj, err := cellJSON(s.msgs, s.i)
	if err != nil {
		return convRow{}, fmt.Errorf("%s: column %q: %w", at, s.column, err)
	}
	if mj == nil {
		return convRow{}, fmt.Errorf("%s: column %q is null", at, s.column)
	}
	var tj []byte
	if s.tools != nil {
		if tj, err = cellJSON(s.tools, s.i); err != nil {
			return convRow{}, fmt.Errorf("%s: column %q: %w", at, ToolsColumn, err)
		}
	}
	msgs, key, err := parseConversation(s.column, mj, tj)
	if err != nil {
		return convRow{}, fmt.Errorf("%s: %w", at, err)
	}
	r := convRow{msgs: msgs, key: key, pos: filePos{row: s.p.row}}
	s.i++
	s.p.row++
	return r, nil
}

// seek moves to row p.row: it reads from the row group holding it and skips the rows before it in that
// group. (RecordReader.SeekToRow of arrow-go v18.8.0 is not used: on list columns it fails with
// "definition levels exceeded upper bound" or panics.)
func (s *convParquet) seek(p filePos) error {
	s.msgs, s.tools, s.i, s.skip = nil, nil, 0, 0
	if s.rr != nil {
		s.rr.Release()
		s.rr = nil
	}
	s.p = filePos{row: p.row}
	if p.row >= s.rows {
		return nil // at the end: the next read reports io.EOF
	}
	g := sort.Search(len(s.groupStarts), func(i int) bool { return s.groupStarts[i] > p.row }) - 1
	groups := make([]int, 0, len(s.groupStarts)-g)
	for i := g; i < len(s.groupStarts); i++ {
		groups = append(groups, i)
	}
	rr, err := s.fr.GetRecordReader(context.Background(), s.leaves, groups)
	if err != nil {
		return fmt.Errorf("parquet %s: column %q: %w", s.path, s.column, err)
	}
	s.rr = rr
	s.skip = p.row - s.groupStarts[g]
	return nil
}

func (s *convParquet) checkState(st CorpusState) error {
	if st.Rows != s.rows {
		return fmt.Errorf("parquet %s: state is for a file of %d rows, the file has %d: the file changed", s.path, st.Rows, s.rows)
	}
	if st.Row > s.rows {
		return fmt.Errorf("parquet %s: cursor row %d is past the %d rows of the file", s.path, st.Row, s.rows)
	}
	return nil
}

func (s *convParquet) fillState(st *CorpusState) { st.Rows = s.rows }

func (s *convParquet) close() error {
	s.msgs, s.tools = nil, nil
	if s.rr != nil {
		s.rr.Release()
		s.rr = nil
	}
	return s.pf.Close()
}
