// textfile.go implements the user text corpora, read through Arrow: JSONL (one JSON object per line, decoded
// by Arrow's JSON record builder; the text field must be a string, other fields are ignored, blank lines are
// skipped) and Parquet (one string column, read with pqarrow's record reader). The path is a file, a
// directory or a glob; the files are read in name order. A TextCorpus streams them in order, keeps the
// documents whose text hashes into its split (InSplit on the text, so equal texts share a split and the split
// does not depend on the order), and wraps around after the last file, counting epochs. Its cursor is the
// file index and the position of the next row in it (row index; for JSONL also the byte offset and line
// number), so a restore seeks straight there.
//
// WriteTextParquet writes a Parquet file with one text column, for tests and for converting JSONL.

package data

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// textChunkRows is the number of rows decoded at a time.
const textChunkRows = 512

// filePos is a position in a text file: the row index, and for JSONL the byte offset and the lines before it.
type filePos struct {
	row, offset, line int64
}

type textRow struct {
	text string
	pos  filePos // where the row starts
}

// textSource reads the rows of one file in order.
type textSource interface {
	kind() string // jsonl or parquet
	fileName() string
	// read appends the next rows (at most about textChunkRows) to dst; io.EOF when the file is exhausted.
	read(dst []textRow) ([]textRow, error)
	// pos is the position after the rows read so far.
	pos() filePos
	// seek moves to p, a position taken from pos or a textRow.
	seek(p filePos) error
	// checkState validates a restored cursor against the file and fills the file-specific state fields.
	checkState(s CorpusState) error
	fillState(s *CorpusState)
	close() error
}

// TextCorpus streams the documents of one or more JSONL or Parquet files that fall in one split. The files
// are read in order (a directory or glob is expanded and sorted by name), and the stream wraps around to the
// first file after the last.
type TextCorpus struct {
	kind, name, column string // name is the path the corpus was opened with
	paths              []string
	open               func(path, column string) (textSource, error)
	heldOut            float64
	split              Split

	file int        // index in paths of the open file
	src  textSource // the open file
	buf  []textRow
	i    int

	epoch, epochDocs, docs int64
}

// OpenJSONLCorpus opens a JSONL corpus reading the string field column of each line. path is a file, a
// directory (its *.jsonl files) or a glob.
func OpenJSONLCorpus(path, column string, heldOut float64, split Split) (*TextCorpus, error) {
	return openTextCorpus("jsonl", ".jsonl", path, column, heldOut, split, func(p, col string) (textSource, error) {
		s, err := openJSONL(p, col)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// OpenParquetCorpus opens a Parquet corpus reading the string column column. path is a file, a directory
// (its *.parquet files) or a glob.
func OpenParquetCorpus(path, column string, heldOut float64, split Split) (*TextCorpus, error) {
	return openTextCorpus("parquet", ".parquet", path, column, heldOut, split, func(p, col string) (textSource, error) {
		s, err := openParquet(p, col)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

func openTextCorpus(kind, ext, path, column string, heldOut float64, split Split,
	open func(path, column string) (textSource, error)) (*TextCorpus, error) {
	if err := checkHeldOut(heldOut, split); err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, path, err)
	}
	paths, err := resolveTextPaths(kind, ext, path)
	if err != nil {
		return nil, err
	}
	c := &TextCorpus{kind: kind, name: path, column: column, paths: paths, open: open, heldOut: heldOut, split: split}
	// Open every file once, so a bad file or column is reported now rather than in the middle of training.
	for i := len(paths) - 1; i >= 0; i-- {
		src, err := open(paths[i], column)
		if err != nil {
			if c.src != nil {
				c.src.close()
			}
			return nil, err
		}
		if i > 0 {
			if err := src.close(); err != nil {
				return nil, fmt.Errorf("%s %s: %w", kind, paths[i], err)
			}
			continue
		}
		c.src = src
	}
	return c, nil
}

// resolveTextPaths expands a file, a directory (its files ending in ext) or a glob, sorted by name.
func resolveTextPaths(kind, ext, path string) ([]string, error) {
	var paths []string
	if strings.ContainsAny(path, "*?[") {
		matches, err := filepath.Glob(path)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, path, err)
		}
		for _, m := range matches {
			if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() {
				paths = append(paths, m)
			}
		}
	} else {
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		if !st.IsDir() {
			return []string{path}, nil
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ext) {
				paths = append(paths, filepath.Join(path, e.Name()))
			}
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s %s: no %s files", kind, path, ext)
	}
	sort.Strings(paths)
	return paths, nil
}

// switchFile makes paths[i] the open file, positioned at its start.
func (c *TextCorpus) switchFile(i int) error {
	c.buf, c.i = c.buf[:0], 0
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

// Next returns the next document of the split, wrapping around after the last file.
func (c *TextCorpus) Next() (string, error) {
	for {
		if c.i == len(c.buf) {
			var err error
			c.buf, err = c.src.read(c.buf[:0])
			c.i = 0
			if errors.Is(err, io.EOF) {
				if c.file+1 < len(c.paths) {
					if err := c.switchFile(c.file + 1); err != nil {
						return "", err
					}
					continue
				}
				if c.epochDocs == 0 {
					return "", fmt.Errorf("%s %s: no document falls in the %s split (held_out %v)",
						c.kind, c.name, c.split, c.heldOut)
				}
				if err := c.switchFile(0); err != nil {
					return "", err
				}
				c.epoch++
				c.epochDocs = 0
				continue
			}
			if err != nil {
				c.buf = c.buf[:0]
				return "", err
			}
		}
		r := c.buf[c.i]
		c.i++
		if InSplit(r.text, c.heldOut) != c.split {
			continue
		}
		c.docs++
		c.epochDocs++
		return r.text, nil
	}
}

// Epoch is the number of completed passes over the files.
func (c *TextCorpus) Epoch() int64 { return c.epoch }

// Files lists the files of the corpus, in reading order.
func (c *TextCorpus) Files() []string { return slices.Clone(c.paths) }

// State returns the cursor.
func (c *TextCorpus) State() CorpusState {
	p := c.src.pos()
	if c.i < len(c.buf) {
		p = c.buf[c.i].pos
	}
	s := CorpusState{Source: c.kind, Split: c.split.String(), Docs: c.docs, Epoch: c.epoch, EpochDocs: c.epochDocs,
		File: int64(c.file), Files: int64(len(c.paths)), Row: p.row, Offset: p.offset, Line: p.line}
	c.src.fillState(&s)
	return s
}

// Restore moves the cursor to s, taken from a corpus over the same files and split.
func (c *TextCorpus) Restore(s CorpusState) error {
	name := c.kind + " " + c.name
	switch {
	case s.Source != c.kind:
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
	return nil
}

// Close closes the open file.
func (c *TextCorpus) Close() error { return c.src.close() }

// jsonlSource reads a JSONL file through Arrow's JSON record builder.
type jsonlSource struct {
	*jsonlFile
	bldr   *array.RecordBuilder
	starts []filePos
}

func openJSONL(path, column string) (*jsonlSource, error) {
	jf, err := openJSONLFile(path, column)
	if err != nil {
		return nil, err
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: column, Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	return &jsonlSource{jsonlFile: jf, bldr: array.NewRecordBuilder(memory.NewGoAllocator(), schema)}, nil
}

func (s *jsonlSource) kind() string     { return "jsonl" }
func (s *jsonlSource) fileName() string { return s.path }

func (s *jsonlSource) read(dst []textRow) ([]textRow, error) {
	dst, err := s.readChunk(dst)
	if err != nil && !errors.Is(err, io.EOF) {
		s.bldr.NewRecordBatch().Release() // drop the rows decoded before the error
	}
	return dst, err
}

func (s *jsonlSource) readChunk(dst []textRow) ([]textRow, error) {
	s.starts = s.starts[:0]
	for len(s.starts) < textChunkRows {
		start := s.p
		line, err := s.readLine()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return dst, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		lineNo := start.line + 1
		if line[0] != '{' || !json.Valid(line) {
			return dst, fmt.Errorf("jsonl %s: line %d: not a JSON object", s.path, lineNo)
		}
		if err := s.bldr.UnmarshalJSON(line); err != nil {
			return dst, fmt.Errorf("jsonl %s: line %d: field %q: %w", s.path, lineNo, s.column, err)
		}
		start.row = s.p.row
		s.p.row++
		s.starts = append(s.starts, start)
	}
	if len(s.starts) == 0 {
		return dst, io.EOF
	}
	rec := s.bldr.NewRecordBatch()
	defer rec.Release()
	col := rec.Column(0).(*array.String)
	for i, start := range s.starts {
		if col.IsNull(i) {
			return dst, fmt.Errorf("jsonl %s: line %d: no string field %q", s.path, start.line+1, s.column)
		}
		dst = append(dst, textRow{text: strings.Clone(col.Value(i)), pos: start})
	}
	return dst, nil
}

func (s *jsonlSource) close() error {
	s.bldr.Release()
	return s.f.Close()
}

// parquetSource reads one string column of a Parquet file through pqarrow.
type parquetSource struct {
	path, column string
	pf           *file.Reader
	fr           *pqarrow.FileReader
	leaf         int
	rows         int64
	rr           pqarrow.RecordReader
	p            filePos
}

func openParquet(path, column string) (*parquetSource, error) {
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, fmt.Errorf("parquet %s: %w", path, err)
	}
	s := &parquetSource{path: path, column: column, pf: pf, rows: pf.NumRows()}
	if err := s.init(); err != nil {
		pf.Close()
		return nil, err
	}
	return s, nil
}

func (s *parquetSource) init() error {
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
	field := schema.Field(idx[0])
	switch field.Type.ID() {
	case arrow.STRING, arrow.LARGE_STRING:
	default:
		return fmt.Errorf("parquet %s: column %q has type %s, want string", s.path, s.column, field.Type)
	}
	s.leaf = fr.Manifest.Fields[idx[0]].ColIndex
	if s.leaf < 0 {
		return fmt.Errorf("parquet %s: column %q is not a leaf column", s.path, s.column)
	}
	if s.rows == 0 {
		return fmt.Errorf("parquet %s: no rows", s.path)
	}
	return s.seek(filePos{})
}

func (s *parquetSource) kind() string     { return "parquet" }
func (s *parquetSource) fileName() string { return s.path }
func (s *parquetSource) pos() filePos     { return s.p }

type stringColumn interface {
	Len() int
	IsNull(int) bool
	Value(int) string
}

func (s *parquetSource) read(dst []textRow) ([]textRow, error) {
	if s.rr == nil {
		return dst, io.EOF
	}
	if !s.rr.Next() {
		if err := s.rr.Err(); err != nil && !errors.Is(err, io.EOF) {
			return dst, fmt.Errorf("parquet %s: column %q: read at row %d: %w", s.path, s.column, s.p.row, err)
		}
		return dst, io.EOF
	}
	rec := s.rr.RecordBatch()
	col, ok := rec.Column(0).(stringColumn)
	if !ok {
		return dst, fmt.Errorf("parquet %s: column %q: read %s values, want string", s.path, s.column, rec.Column(0).DataType())
	}
	for i := range col.Len() {
		if col.IsNull(i) {
			return dst, fmt.Errorf("parquet %s: column %q: row %d is null", s.path, s.column, s.p.row)
		}
		dst = append(dst, textRow{text: strings.Clone(col.Value(i)), pos: filePos{row: s.p.row}})
		s.p.row++
	}
	return dst, nil
}

func (s *parquetSource) seek(p filePos) error {
	if s.rr != nil {
		s.rr.Release()
		s.rr = nil
	}
	s.p = filePos{row: p.row}
	if p.row >= s.rows {
		return nil // at the end: the next read reports io.EOF
	}
	rr, err := s.fr.GetRecordReader(context.Background(), []int{s.leaf}, nil)
	if err != nil {
		return fmt.Errorf("parquet %s: column %q: %w", s.path, s.column, err)
	}
	s.rr = rr
	if p.row > 0 {
		if err := rr.SeekToRow(p.row); err != nil {
			return fmt.Errorf("parquet %s: seek to row %d: %w", s.path, p.row, err)
		}
	}
	return nil
}

func (s *parquetSource) checkState(st CorpusState) error {
	if st.Rows != s.rows {
		return fmt.Errorf("parquet %s: state is for a file of %d rows, the file has %d: the file changed", s.path, st.Rows, s.rows)
	}
	if st.Row > s.rows {
		return fmt.Errorf("parquet %s: cursor row %d is past the %d rows of the file", s.path, st.Row, s.rows)
	}
	return nil
}

func (s *parquetSource) fillState(st *CorpusState) { st.Rows = s.rows }

func (s *parquetSource) close() error {
	if s.rr != nil {
		s.rr.Release()
		s.rr = nil
	}
	return s.pf.Close()
}

// WriteTextParquet writes texts as a Parquet file with one non-null string column (zstd, row groups of at
// most 65536 rows). It writes path+".tmp" and renames it, so a reader never sees a partial file.
func WriteTextParquet(path, column string, texts []string) error {
	return writeTextParquet(path, column, texts, 1<<16)
}

func writeTextParquet(path, column string, texts []string, rowGroupRows int) error {
	if column == "" {
		return fmt.Errorf("write parquet %s: empty column name", path)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write parquet %s: %w", path, err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write parquet %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 1<<20) // not an io.Closer: the Parquet writer leaves f to us
	schema := arrow.NewSchema([]arrow.Field{{Name: column, Type: arrow.BinaryTypes.String}}, nil)
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithMaxRowGroupLength(int64(rowGroupRows)))
	w, err := pqarrow.NewFileWriter(schema, bw, props, pqarrow.DefaultWriterProps())
	if err != nil {
		return fail(err)
	}
	mem := memory.NewGoAllocator()
	b := array.NewStringBuilder(mem)
	defer b.Release()
	for start := 0; start < len(texts); start += rowGroupRows {
		end := min(start+rowGroupRows, len(texts))
		b.AppendValues(texts[start:end], nil)
		arr := b.NewArray()
		rec := array.NewRecordBatch(schema, []arrow.Array{arr}, int64(end-start))
		err := w.Write(rec)
		rec.Release()
		arr.Release()
		if err != nil {
			return fail(err)
		}
	}
	if err := w.Close(); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write parquet %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write parquet %s: %w", path, err)
	}
	return nil
}
