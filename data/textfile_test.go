// textfile_test.go checks the JSONL and Parquet corpora: the documents read from the fixtures, the errors that
// name the file and line (JSONL) or the file and column (Parquet), the split by text hash, wrapping around at
// the end of the file, and exact resume from every cut point through a JSON round trip of the state.

package data

import (
	"encoding/json"
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

// smallTexts are the texts of testdata/corpus/small.jsonl, in order.
var smallTexts = []string{
	"The quick brown fox jumps over the lazy dog.",
	"Ünïcödé: 東京, emoji 🦊, and a tab\there.",
	"A literal <｜begin▁of▁sentence｜> and <think> stay plain bytes.",
	"Line one\nline two\nline three",
	"",
	`Escapes: "quoted", back\slash, é.`,
	"Seventh document.",
	"Eighth document, with trailing spaces.   ",
	"Ninth document.",
	"Tenth document.",
	"Eleventh document.",
	"Twelfth document, the last one.",
}

func nextDocs(t *testing.T, c Corpus, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		d, err := c.Next()
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		out[i] = d
	}
	return out
}

// writeSmallParquet writes smallTexts with row groups of 5 rows (3 row groups).
func writeSmallParquet(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "small.parquet")
	if err := writeTextParquet(path, "body", smallTexts, 5); err != nil {
		t.Fatal(err)
	}
	return path
}

type openFunc func(t *testing.T, heldOut float64, split Split) *TextCorpus

// writeSplitFiles writes smallTexts as several files in a new directory: Parquet files of 5, 4 and 3 rows
// and JSONL files of 7 and 5 lines, plus a file of another kind that the directory listing must skip.
func writeSplitFiles(t *testing.T) (pqDir, jsonlDir string) {
	t.Helper()
	pqDir, jsonlDir = t.TempDir(), t.TempDir()
	for i, part := range [][]string{smallTexts[:5], smallTexts[5:9], smallTexts[9:]} {
		if err := writeTextParquet(filepath.Join(pqDir, fmt.Sprintf("part-%d.parquet", i)), "text", part, 2); err != nil {
			t.Fatal(err)
		}
	}
	for i, part := range [][]string{smallTexts[:7], smallTexts[7:]} {
		var b strings.Builder
		for _, s := range part {
			js, err := json.Marshal(map[string]string{"text": s})
			if err != nil {
				t.Fatal(err)
			}
			b.Write(js)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(filepath.Join(jsonlDir, fmt.Sprintf("shard-%d.jsonl", i)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{pqDir, jsonlDir} {
		if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return pqDir, jsonlDir
}

// corpusKinds opens smallTexts as a JSONL file, a Parquet file, a directory of Parquet files and a glob of
// JSONL files.
func corpusKinds(t *testing.T) map[string]openFunc {
	pq := writeSmallParquet(t)
	pqDir, jsonlDir := writeSplitFiles(t)
	opener := func(path, column string, f func(string, string, float64, Split) (*TextCorpus, error)) openFunc {
		return func(t *testing.T, heldOut float64, split Split) *TextCorpus {
			c, err := f(path, column, heldOut, split)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
	}
	return map[string]openFunc{
		"jsonl":       opener("testdata/corpus/small.jsonl", "text", OpenJSONLCorpus),
		"parquet":     opener(pq, "body", OpenParquetCorpus),
		"parquet-dir": opener(pqDir, "text", OpenParquetCorpus),
		"jsonl-glob":  opener(filepath.Join(jsonlDir, "shard-*.jsonl"), "text", OpenJSONLCorpus),
	}
}

func TestTextCorpusReadsAndWraps(t *testing.T) {
	for kind, open := range corpusKinds(t) {
		t.Run(kind, func(t *testing.T) {
			c := open(t, 0, SplitTrain)
			n := len(smallTexts)
			got := nextDocs(t, c, 2*n+3)
			for i, d := range got {
				if want := smallTexts[i%n]; d != want {
					t.Errorf("doc %d = %q, want %q", i, d, want)
				}
			}
			if st := c.State(); st.Epoch != 2 || st.Docs != int64(2*n+3) || st.EpochDocs != 3 || st.Row != 3 || st.File != 0 {
				t.Errorf("state after %d docs: %+v", 2*n+3, st)
			}
		})
	}
}

func TestTextCorpusSplit(t *testing.T) {
	const heldOut = 0.4
	wantHeld := map[string]bool{}
	for _, s := range smallTexts {
		wantHeld[s] = InSplit(s, heldOut) == SplitHeldOut
	}
	nHeld := 0
	for _, h := range wantHeld {
		if h {
			nHeld++
		}
	}
	if nHeld == 0 || nHeld == len(smallTexts) {
		t.Fatalf("fixture puts %d of %d texts in the held-out split; the test needs both splits non-empty", nHeld, len(smallTexts))
	}
	for kind, open := range corpusKinds(t) {
		t.Run(kind, func(t *testing.T) {
			for _, split := range []Split{SplitTrain, SplitHeldOut} {
				c := open(t, heldOut, split)
				var want []string
				for _, s := range smallTexts {
					if wantHeld[s] == (split == SplitHeldOut) {
						want = append(want, s)
					}
				}
				got := nextDocs(t, c, len(want)+1)
				for i, d := range got[:len(want)] {
					if d != want[i] {
						t.Errorf("%s doc %d = %q, want %q", split, i, d, want[i])
					}
				}
				if got[len(want)] != want[0] || c.Epoch() != 1 {
					t.Errorf("%s: after one epoch got %q (epoch %d), want %q (epoch 1)", split, got[len(want)], c.Epoch(), want[0])
				}
			}
		})
	}
}

func TestTextCorpusResume(t *testing.T) {
	for kind, open := range corpusKinds(t) {
		t.Run(kind, func(t *testing.T) {
			for _, split := range []Split{SplitTrain, SplitHeldOut} {
				const total = 30
				want := nextDocs(t, open(t, 0.4, split), total)
				for cut := range total {
					c := open(t, 0.4, split)
					nextDocs(t, c, cut)
					js, err := json.Marshal(c.State())
					if err != nil {
						t.Fatal(err)
					}
					var st CorpusState
					if err := json.Unmarshal(js, &st); err != nil {
						t.Fatal(err)
					}
					fresh := open(t, 0.4, split)
					if err := fresh.Restore(st); err != nil {
						t.Fatalf("cut %d: restore %s: %v", cut, js, err)
					}
					for i, d := range nextDocs(t, fresh, total-cut) {
						if d != want[cut+i] {
							t.Fatalf("%s cut %d (state %s): doc %d = %q, want %q", split, cut, js, cut+i, d, want[cut+i])
						}
					}
				}
			}
		})
	}
}

func TestJSONLErrors(t *testing.T) {
	tests := []struct {
		file string
		ok   int      // documents read before the error
		want []string // substrings of the error
	}{
		{"bad_json.jsonl", 0, []string{"bad_json.jsonl", "line 3", "not a JSON object"}},
		{"bad_type.jsonl", 0, []string{"bad_type.jsonl", "line 2", `"text"`}},
		{"missing_text.jsonl", 0, []string{"missing_text.jsonl", "line 4", `no string field "text"`}},
		{"not_object.jsonl", 0, []string{"not_object.jsonl", "line 2", "not a JSON object"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			c, err := OpenJSONLCorpus(filepath.Join("testdata/corpus", tc.file), "text", 0, SplitTrain)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Next()
			if err == nil {
				t.Fatal("Next succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestJSONLCRLFAndNoFinalNewline(t *testing.T) {
	c, err := OpenJSONLCorpus("testdata/corpus/crlf_no_final_newline.jsonl", "text", 0, SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := nextDocs(t, c, 5)
	want := []string{"one", "two", "one", "two", "one"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("doc %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestTextCorpusEmptySplit(t *testing.T) {
	// crlf_no_final_newline.jsonl holds "one" and "two"; hold out less than either hash.
	c, err := OpenJSONLCorpus("testdata/corpus/crlf_no_final_newline.jsonl", "text", min(SplitHash("one"), SplitHash("two"))/2, SplitHeldOut)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Next(); err == nil || !strings.Contains(err.Error(), "no document falls in the held_out split") {
		t.Errorf("Next on an empty split: %v", err)
	}
}

func TestTextCorpusRestoreErrors(t *testing.T) {
	jc, err := OpenJSONLCorpus("testdata/corpus/small.jsonl", "text", 0, SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	pc, err := OpenParquetCorpus(writeSmallParquet(t), "body", 0, SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	nextDocs(t, jc, 2)
	nextDocs(t, pc, 2)
	js, ps := jc.State(), pc.State()
	tests := []struct {
		name   string
		c      *TextCorpus
		modify func(CorpusState) CorpusState
		want   string
	}{
		{"source", jc, func(CorpusState) CorpusState { return ps }, `"parquet" corpus state`},
		{"split", jc, func(s CorpusState) CorpusState { s.Split = "held_out"; return s }, "split"},
		{"mid-line", jc, func(s CorpusState) CorpusState { s.Offset += 3; return s }, "not at the start of a line"},
		{"past end", jc, func(s CorpusState) CorpusState { s.Offset = 1 << 30; return s }, "past the end"},
		{"negative", jc, func(s CorpusState) CorpusState { s.Row = -1; return s }, "invalid cursor"},
		{"files changed", jc, func(s CorpusState) CorpusState { s.Files = 2; return s }, "2 files"},
		{"file index", jc, func(s CorpusState) CorpusState { s.File = 1; return s }, "invalid cursor"},
		{"rows changed", pc, func(s CorpusState) CorpusState { s.Rows = 99; return s }, "99 rows"},
		{"row past end", pc, func(s CorpusState) CorpusState { s.Row = 13; return s }, "row 13"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := js
			if tc.c == pc {
				base = ps
			}
			err := tc.c.Restore(tc.modify(base))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Restore: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestWriteTextParquet(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "texts.parquet")
	texts := []string{"a", "", "ünï", strings.Repeat("long ", 1000)}
	if err := WriteTextParquet(path, "content", texts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	c, err := OpenParquetCorpus(path, "content", 0, SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, d := range nextDocs(t, c, len(texts)) {
		if d != texts[i] {
			t.Errorf("doc %d = %q, want %q", i, d, texts[i])
		}
	}
	// The small file is written with row groups of 5, so resume crosses row groups.
	pf, err := file.OpenParquetFile(writeSmallParquet(t), false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	if pf.NumRowGroups() != 3 || pf.NumRows() != int64(len(smallTexts)) {
		t.Errorf("small.parquet: %d row groups, %d rows; want 3, %d", pf.NumRowGroups(), pf.NumRows(), len(smallTexts))
	}
	if err := WriteTextParquet(filepath.Join(dir, "x.parquet"), "", texts); err == nil {
		t.Error("empty column name accepted")
	}
}

// writeInt64Parquet writes a file with an int64 column "text" and a string column "body".
func writeInt64Parquet(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ints.parquet")
	schema := arrow.NewSchema([]arrow.Field{{Name: "text", Type: arrow.PrimitiveTypes.Int64}, {Name: "body", Type: arrow.BinaryTypes.String}}, nil)
	mem := memory.NewGoAllocator()
	ib := array.NewInt64Builder(mem)
	ib.AppendValues([]int64{1, 2}, nil)
	sb := array.NewStringBuilder(mem)
	sb.AppendValues([]string{"x", "y"}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{ib.NewArray(), sb.NewArray()}, 2)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pqarrow.NewFileWriter(schema, f, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParquetColumnErrors(t *testing.T) {
	path := writeInt64Parquet(t)
	tests := []struct {
		column string
		want   []string
	}{
		{"text", []string{"ints.parquet", `column "text"`, "int64", "want string"}},
		{"missing", []string{"ints.parquet", `no column "missing"`, "text, body"}},
	}
	for _, tc := range tests {
		t.Run(tc.column, func(t *testing.T) {
			_, err := OpenParquetCorpus(path, tc.column, 0, SplitTrain)
			if err == nil {
				t.Fatal("open succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	c, err := OpenParquetCorpus(path, "body", 0, SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := nextDocs(t, c, 3); got[0] != "x" || got[1] != "y" || got[2] != "x" {
		t.Errorf("body column: %q", got)
	}
}

func TestTextCorpusPaths(t *testing.T) {
	pqDir, jsonlDir := writeSplitFiles(t)
	c, err := OpenParquetCorpus(pqDir, "text", 0, SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []string{filepath.Join(pqDir, "part-0.parquet"), filepath.Join(pqDir, "part-1.parquet"), filepath.Join(pqDir, "part-2.parquet")}
	if got := c.Files(); !slices.Equal(got, want) {
		t.Errorf("Files() = %q, want %q", got, want)
	}
	// A file without the column among good ones is reported when the corpus is opened.
	if err := WriteTextParquet(filepath.Join(pqDir, "part-3.parquet"), "body", []string{"x"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		open func() (*TextCorpus, error)
		want string
	}{
		{"bad file in dir", func() (*TextCorpus, error) { return OpenParquetCorpus(pqDir, "text", 0, SplitTrain) }, `part-3.parquet: no column "text"`},
		{"empty dir", func() (*TextCorpus, error) { return OpenJSONLCorpus(t.TempDir(), "text", 0, SplitTrain) }, "no .jsonl files"},
		{"no glob match", func() (*TextCorpus, error) {
			return OpenJSONLCorpus(filepath.Join(jsonlDir, "*.json"), "text", 0, SplitTrain)
		}, "no .jsonl files"},
		{"bad glob", func() (*TextCorpus, error) { return OpenJSONLCorpus("[", "text", 0, SplitTrain) }, "syntax error in pattern"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.open()
			if err == nil {
				c.Close()
				t.Fatal("open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}
