// dataset.go implements the dataset family: prompts and reference answers read from a JSONL file (one JSON
// object per line, blank lines skipped) or a Parquet file (read whole through Arrow's pqarrow), with string
// columns for the prompt, the answer and optionally a worked reasoning. The split is by hash of the prompt
// (the task ID is "ds-" and 16 hex digits of SHA-256(prompt), and data.InSplit of the ID decides), so equal
// prompts share a split whatever the file order. The verifier is exact match after normalisation: trimmed,
// white space runs collapsed to one space, optionally case-insensitive.
//
// Params:
//
//	path              the file (required)
//	format            jsonl or parquet (default: from the extension, .parquet or else jsonl)
//	prompt_column     default "prompt"
//	answer_column     default "answer"
//	reasoning_column  optional; when set, Solution's reasoning comes from it (else it is empty)
//	case_insensitive  true or false (default false)
//
// The whole file is loaded at construction; rows with an empty prompt or answer, or a reasoning that
// contains "</think>", are errors naming the file and row.

package envs

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sparrow-rl/sparrow/data"
)

// Dataset is the dataset family. Build it with NewDataset or New("dataset", ...).
type Dataset struct {
	path    string
	fold    bool
	rows    []Task
	splits  [2][]int // row indices per split
	heldOut float64
	reward  RewardOptions
}

var _ interface {
	Family
	Drawer
} = (*Dataset)(nil)

// datasetRow is one row as read.
type datasetRow struct{ prompt, answer, reasoning string }

// NewDataset loads the dataset family.
func NewDataset(opts Options) (*Dataset, error) {
	h, r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := newParams("dataset", opts.Params)
	path := p.str("path", "")
	format := p.str("format", "")
	promptCol := p.str("prompt_column", "prompt")
	answerCol := p.str("answer_column", "answer")
	reasonCol := p.str("reasoning_column", "")
	fold := p.bool("case_insensitive", false)
	if err := p.done(); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, fmt.Errorf("params.path: required (a .jsonl or .parquet file)")
	}
	if format == "" {
		format = "jsonl"
		if strings.EqualFold(filepath.Ext(path), ".parquet") {
			format = "parquet"
		}
	}
	var rows []datasetRow
	switch format {
	case "jsonl":
		rows, err = readDatasetJSONL(path, promptCol, answerCol, reasonCol)
	case "parquet":
		rows, err = readDatasetParquet(path, promptCol, answerCol, reasonCol)
	default:
		return nil, fmt.Errorf("params.format: %q is not jsonl or parquet", format)
	}
	if err != nil {
		return nil, err
	}
	d := &Dataset{path: path, fold: fold, heldOut: h, reward: r}
	for i, row := range rows {
		where := fmt.Sprintf("%s: row %d", path, i+1)
		switch {
		case strings.TrimSpace(row.prompt) == "":
			return nil, fmt.Errorf("%s: empty %s", where, promptCol)
		case strings.TrimSpace(row.answer) == "":
			return nil, fmt.Errorf("%s: empty %s", where, answerCol)
		case strings.Contains(row.reasoning, litThinkEnd):
			return nil, fmt.Errorf("%s: %s contains %q", where, reasonCol, litThinkEnd)
		}
		t := Task{
			ID: "ds-" + hash16(row.prompt), Family: "dataset", Prompt: row.prompt, Answer: row.answer,
			Meta: map[string]string{"row": fmt.Sprint(i)},
		}
		if reasonCol != "" {
			t.Meta["reasoning"] = row.reasoning
		}
		d.splits[data.InSplit(t.ID, h)] = append(d.splits[data.InSplit(t.ID, h)], len(d.rows))
		d.rows = append(d.rows, t)
	}
	for s, idx := range d.splits {
		if len(idx) == 0 {
			return nil, fmt.Errorf("%s: none of the %d rows falls in the %s split (held_out %v)", path, len(rows), data.Split(s), h)
		}
	}
	return d, nil
}

// Name returns "dataset".
func (d *Dataset) Name() string { return "dataset" }

// Len returns the number of rows of split.
func (d *Dataset) Len(split data.Split) int {
	if split != data.SplitTrain && split != data.SplitHeldOut {
		return 0
	}
	return len(d.splits[split])
}

// Draw returns a uniformly drawn row.
func (d *Dataset) Draw(rng *rand.Rand) Task { return d.copyTask(rng.IntN(len(d.rows))) }

// Sample returns a uniformly drawn row of split (equivalent to rejection on the split hash).
func (d *Dataset) Sample(rng *rand.Rand, split data.Split) Task {
	idx := d.splits[split]
	return d.copyTask(idx[rng.IntN(len(idx))])
}

// copyTask returns row i with its own Meta map, so that callers cannot alter the dataset.
func (d *Dataset) copyTask(i int) Task {
	t := d.rows[i]
	m := make(map[string]string, len(t.Meta))
	for k, v := range t.Meta {
		m[k] = v
	}
	t.Meta = m
	return t
}

// Solution returns the row's reasoning (if the dataset has a reasoning column) and its answer.
func (d *Dataset) Solution(t Task) (reasoning, answer string) { return t.Meta["reasoning"], t.Answer }

// Verify is exact match after normalisation.
func (d *Dataset) Verify(t Task, completion, finishReason string) Reward {
	return score(d.reward, completion, finishReason, func(ans string) bool {
		if len(ans) > 4*len(t.Answer)+1024 {
			return false
		}
		a, b := normSpaces(ans), normSpaces(t.Answer)
		if d.fold {
			return strings.EqualFold(a, b)
		}
		return a == b
	})
}

func readDatasetJSONL(path, promptCol, answerCol, reasonCol string) ([]datasetRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	var rows []datasetRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		field := func(col string, required bool) (string, error) {
			raw, ok := obj[col]
			if !ok {
				if required {
					return "", fmt.Errorf("%s:%d: no field %q", path, line, col)
				}
				return "", nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", fmt.Errorf("%s:%d: field %q must be a string, got %.40s", path, line, col, raw)
			}
			return s, nil
		}
		var row datasetRow
		if row.prompt, err = field(promptCol, true); err != nil {
			return nil, err
		}
		if row.answer, err = field(answerCol, true); err != nil {
			return nil, err
		}
		if reasonCol != "" {
			if row.reasoning, err = field(reasonCol, false); err != nil {
				return nil, err
			}
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", path, line+1, err)
	}
	return rows, nil
}

func readDatasetParquet(path, promptCol, answerCol, reasonCol string) ([]datasetRow, error) {
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, fmt.Errorf("dataset: parquet %s: %w", path, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.NewGoAllocator())
	if err != nil {
		return nil, fmt.Errorf("dataset: parquet %s: %w", path, err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		return nil, fmt.Errorf("dataset: parquet %s: %w", path, err)
	}
	defer tbl.Release()
	column := func(name string) ([]string, error) {
		idx := tbl.Schema().FieldIndices(name)
		if len(idx) == 0 {
			names := make([]string, 0, tbl.Schema().NumFields())
			for _, f := range tbl.Schema().Fields() {
				names = append(names, f.Name)
			}
			return nil, fmt.Errorf("dataset: parquet %s: no column %q (columns: %s)", path, name, strings.Join(names, ", "))
		}
		col := tbl.Column(idx[0])
		switch col.DataType().ID() {
		case arrow.STRING, arrow.LARGE_STRING:
		default:
			return nil, fmt.Errorf("dataset: parquet %s: column %q has type %s, want string", path, name, col.DataType())
		}
		out := make([]string, 0, tbl.NumRows())
		for _, chunk := range col.Data().Chunks() {
			sc, ok := chunk.(interface {
				arrow.Array
				Value(int) string
			})
			if !ok {
				return nil, fmt.Errorf("dataset: parquet %s: column %q: unexpected array %T", path, name, chunk)
			}
			for i := range sc.Len() {
				if sc.IsNull(i) {
					return nil, fmt.Errorf("dataset: parquet %s: column %q: row %d is null", path, name, len(out)+1)
				}
				out = append(out, strings.Clone(sc.Value(i)))
			}
		}
		return out, nil
	}
	prompts, err := column(promptCol)
	if err != nil {
		return nil, err
	}
	answers, err := column(answerCol)
	if err != nil {
		return nil, err
	}
	var reasons []string
	if reasonCol != "" {
		if reasons, err = column(reasonCol); err != nil {
			return nil, err
		}
	}
	rows := make([]datasetRow, len(prompts))
	for i := range rows {
		rows[i] = datasetRow{prompt: prompts[i], answer: answers[i]}
		if reasons != nil {
			rows[i].reasoning = reasons[i]
		}
	}
	return rows, nil
}

// WriteDatasetParquet writes rows as a Parquet file with string columns prompt, answer (and reasoning when
// reasoning is not nil), for tests and for converting JSONL.
func WriteDatasetParquet(path string, prompts, answers, reasoning []string) error {
	if len(prompts) != len(answers) || (reasoning != nil && len(reasoning) != len(prompts)) {
		return fmt.Errorf("write dataset %s: columns of different lengths", path)
	}
	fields := []arrow.Field{{Name: "prompt", Type: arrow.BinaryTypes.String}, {Name: "answer", Type: arrow.BinaryTypes.String}}
	cols := [][]string{prompts, answers}
	if reasoning != nil {
		fields = append(fields, arrow.Field{Name: "reasoning", Type: arrow.BinaryTypes.String})
		cols = append(cols, reasoning)
	}
	schema := arrow.NewSchema(fields, nil)
	mem := memory.NewGoAllocator()
	arrs := make([]arrow.Array, len(cols))
	for i, c := range cols {
		b := array.NewStringBuilder(mem)
		b.AppendValues(c, nil)
		arrs[i] = b.NewArray()
		b.Release()
		defer arrs[i].Release()
	}
	rec := array.NewRecordBatch(schema, arrs, int64(len(prompts)))
	defer rec.Release()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write dataset %s: %w", path, err)
	}
	w, err := pqarrow.NewFileWriter(schema, f, nil, pqarrow.DefaultWriterProps())
	if err != nil {
		f.Close()
		return fmt.Errorf("write dataset %s: %w", path, err)
	}
	if err := w.Write(rec); err != nil {
		w.Close()
		return fmt.Errorf("write dataset %s: %w", path, err)
	}
	if err := w.Close(); err != nil { // closes f too
		return fmt.Errorf("write dataset %s: %w", path, err)
	}
	return nil
}
