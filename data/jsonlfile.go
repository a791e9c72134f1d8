// jsonlfile.go: one JSONL file read line by line with an exact cursor (row, byte offset, line number), shared
// by the text corpora (textfile.go) and the conversation corpora (conversations.go).

package data

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

type jsonlFile struct {
	path, column string
	f            *os.File
	r            *bufio.Reader
	size         int64
	p            filePos
	line         []byte
}

// openJSONLFile opens a non-empty JSONL file; column is the field its reader takes.
func openJSONLFile(path, column string) (*jsonlFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	if st.Size() == 0 {
		f.Close()
		return nil, fmt.Errorf("jsonl %s: empty file", path)
	}
	return &jsonlFile{path: path, column: column, f: f, r: bufio.NewReaderSize(f, 1<<16), size: st.Size()}, nil
}

func (s *jsonlFile) pos() filePos { return s.p }

// readLine returns the next line without its newline and advances the position; io.EOF at the end.
func (s *jsonlFile) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		frag, err := s.r.ReadSlice('\n')
		s.line = append(s.line, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("jsonl %s: line %d: %w", s.path, s.p.line+1, err)
		}
		if len(s.line) == 0 {
			return nil, io.EOF
		}
		s.p.offset += int64(len(s.line))
		s.p.line++
		return bytes.TrimSuffix(s.line, []byte("\n")), nil
	}
}

func (s *jsonlFile) seek(p filePos) error {
	if _, err := s.f.Seek(p.offset, io.SeekStart); err != nil {
		return fmt.Errorf("jsonl %s: seek to byte %d: %w", s.path, p.offset, err)
	}
	s.r.Reset(s.f)
	s.p = p
	return nil
}

// checkState refuses a cursor that does not fit the file (it changed since the cursor was taken).
func (s *jsonlFile) checkState(st CorpusState) error {
	if st.Offset > s.size {
		return fmt.Errorf("jsonl %s: cursor at byte %d is past the end of the file (%d bytes): the file changed", s.path, st.Offset, s.size)
	}
	if st.Offset > 0 {
		var b [1]byte
		if _, err := s.f.ReadAt(b[:], st.Offset-1); err != nil {
			return fmt.Errorf("jsonl %s: check cursor at byte %d: %w", s.path, st.Offset, err)
		}
		if b[0] != '\n' {
			return fmt.Errorf("jsonl %s: cursor at byte %d is not at the start of a line: the file changed", s.path, st.Offset)
		}
	}
	if st.Row > st.Line {
		return fmt.Errorf("jsonl %s: invalid cursor: row %d after only %d lines", s.path, st.Row, st.Line)
	}
	return nil
}

func (s *jsonlFile) fillState(*CorpusState) {}
