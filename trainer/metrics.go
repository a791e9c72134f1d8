// Metrics sinks: <runDir>/metrics.jsonl and, optionally, a TensorBoard event
// file in the same directory.
//
// metrics.jsonl holds one JSON object per Log call and line:
//
//	{"time":"2026-01-02T03:04:05.123456789Z","stage":"pretrain","step":12,"grad_norm":0.8,"loss":2.31,"lr":0.0003}
//
// "time" (RFC 3339 with nanoseconds, UTC), "stage" and "step" come first, then
// the metrics in byte order of their names, so equal inputs give equal lines.
// Numbers are written in the shortest form that parses back to the same
// float64. JSON has no NaN or infinity: a non-finite value is written as null,
// and ReadMetrics reads null back as NaN. Each line is written with a single
// write call and no buffering, so the file is complete after every Log. Opening
// an existing file appends (a resumed run continues its file); a partial last
// line left by a crash is cut off first, with a warning. A resume first removes
// the records of the steps after its checkpoint (TrimMetrics), which it trains
// and logs again, so the file holds each step once.

package trainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// MetricsFile is the name of the JSONL metrics file inside a run directory.
const MetricsFile = "metrics.jsonl"

// Observer receives every metric record after it is written (the Prometheus
// endpoint, internal/telemetry.Learner). ObserveStep must not keep values.
type Observer interface {
	ObserveStep(stage string, step int, values map[string]float64)
}

// QueueWatcher is an Observer that also reads the rollout queue's depth live:
// an rl stage on a NATS transport hands it the learner's count of groups
// dispatched and not yet collected while the stage runs, and nil after.
type QueueWatcher interface {
	WatchQueue(depth func() int)
}

// Metrics writes metric records to metrics.jsonl and optionally TensorBoard.
// It is safe for concurrent use.
type Metrics struct {
	// Now returns the time stamped on each record; time.Now by default
	// (tests set a fixed clock).
	Now func() time.Time
	// Observer, when set, gets each record after the sinks took it.
	Observer Observer

	mu   sync.Mutex
	path string
	f    *os.File
	tb   *TBWriter
	buf  []byte
	keys []string
	vals []float64
}

// OpenMetrics opens (creating or appending to) runDir/metrics.jsonl and, when
// tensorboard is set, creates a new TensorBoard event file in runDir.
func OpenMetrics(runDir string, tensorboard bool) (*Metrics, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("metrics: create run directory %s: %w", runDir, err)
	}
	path := filepath.Join(runDir, MetricsFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: open %s: %w", path, err)
	}
	if err := cutPartialLine(f, path); err != nil {
		f.Close()
		return nil, err
	}
	m := &Metrics{Now: time.Now, path: path, f: f}
	if tensorboard {
		if m.tb, err = NewTBWriter(runDir, time.Now()); err != nil {
			f.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return m, nil
}

// cutPartialLine truncates f after its last newline when it does not end with
// one (a crash in the middle of a write).
func cutPartialLine(f *os.File, path string) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("metrics: stat %s: %w", path, err)
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return fmt.Errorf("metrics: read %s: %w", path, err)
	}
	if last[0] == '\n' {
		return nil
	}
	// Scan backwards for the last newline.
	keep := int64(0)
	chunk := make([]byte, 64<<10)
	for end := size; end > 0 && keep == 0; {
		start := max(end-int64(len(chunk)), 0)
		c := chunk[:end-start]
		if _, err := f.ReadAt(c, start); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("metrics: read %s: %w", path, err)
		}
		if i := bytes.LastIndexByte(c, '\n'); i >= 0 {
			keep = start + int64(i) + 1
		}
		end = start
	}
	slog.Warn("metrics: cutting a partial last line left by an interrupted write", "file", path, "bytes", size-keep)
	if err := f.Truncate(keep); err != nil {
		return fmt.Errorf("metrics: truncate %s: %w", path, err)
	}
	return nil
}

// Path returns the path of metrics.jsonl.
func (m *Metrics) Path() string { return m.path }

// TensorBoardPath returns the event file's path, or "" without TensorBoard.
func (m *Metrics) TensorBoardPath() string {
	if m.tb == nil {
		return ""
	}
	return m.tb.Path()
}

// Log writes one record for stage and step with the given metrics to every
// sink. Metric names must be non-empty and must not be "time", "stage" or
// "step"; stage must be non-empty.
func (m *Metrics) Log(stage string, step int, values map[string]float64) error {
	if stage == "" {
		return errors.New("metrics: empty stage name")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return fmt.Errorf("metrics: Log after Close (%s)", m.path)
	}
	m.keys = m.keys[:0]
	for k := range values {
		switch k {
		case "", "time", "stage", "step":
			return fmt.Errorf("metrics: stage %s step %d: reserved or empty metric name %q", stage, step, k)
		}
		m.keys = append(m.keys, k)
	}
	sort.Strings(m.keys)
	m.vals = m.vals[:0]
	for _, k := range m.keys {
		m.vals = append(m.vals, values[k])
	}
	now := m.Now()

	b := append(m.buf[:0], `{"time":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","stage":`...)
	b = appendJSONString(b, stage)
	b = append(b, `,"step":`...)
	b = strconv.AppendInt(b, int64(step), 10)
	for i, k := range m.keys {
		b = append(b, ',')
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONNumber(b, m.vals[i])
	}
	b = append(b, '}', '\n')
	m.buf = b
	if _, err := m.f.Write(b); err != nil {
		return fmt.Errorf("metrics: write %s: %w", m.path, err)
	}
	if m.tb != nil {
		if err := m.tb.WriteScalars(now, int64(step), stage, m.keys, m.vals); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if m.Observer != nil {
		m.Observer.ObserveStep(stage, step, values)
	}
	return nil
}

// Close closes all sinks. Further Log calls fail.
func (m *Metrics) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	if m.f != nil {
		if err := m.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("metrics: close %s: %w", m.path, err))
		}
		m.f = nil
	}
	if m.tb != nil {
		if err := m.tb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("metrics: %w", err))
		}
		m.tb = nil
	}
	return errors.Join(errs...)
}

// appendJSONNumber writes v as a JSON number in the shortest round-tripping
// form (exponent notation outside [1e-6, 1e21), as encoding/json does), or
// null when v is NaN or infinite.
func appendJSONNumber(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	format := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, v, format, -1, 64)
}

// appendJSONString writes s as a JSON string, escaping quotes, backslashes and
// control characters and replacing invalid UTF-8 with U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// TrimMetrics removes from runDir/metrics.jsonl the records that drop reports true for (a resume from an
// older checkpoint: the steps after it are trained and logged again), so that the file holds each step once.
// The file is rewritten atomically (a temporary file renamed over it) only when it loses a line; kept lines
// are copied byte for byte, and so is a line that does not parse (ReadMetrics reports it). A missing file is
// nothing to trim. It returns the records removed.
func TrimMetrics(runDir string, drop func(stage string, step int) bool) (int, error) {
	path := filepath.Join(runDir, MetricsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	keep := make([]byte, 0, len(data))
	removed := 0
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil // an unterminated last line: OpenMetrics cuts it off
		}
		if rec, err := parseRecord(bytes.TrimSpace(line)); err == nil && drop(rec.Stage, rec.Step) {
			removed++
			continue
		}
		keep = append(keep, line...)
	}
	if removed == 0 {
		return 0, nil
	}
	if err := writeFileAtomic(path, keep); err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	return removed, nil
}

// Record is one line of metrics.jsonl. Values holds every metric of the line;
// a null (non-finite) value reads as NaN.
type Record struct {
	Time   time.Time
	Stage  string
	Step   int
	Values map[string]float64
}

// ReadMetrics reads a metrics.jsonl file. Every line must be a JSON object with
// a string "time" in RFC 3339, a string "stage", an integer "step" and numeric
// or null metrics; the error names the file, line and key. Blank lines are
// skipped, and so is an unterminated last line that does not parse (a write cut
// short by a crash, possibly while the file is read during a run).
func ReadMetrics(path string) ([]Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var out []Record
	err = EachJSONLine(data, func(lineNo int, line []byte, terminated bool) error {
		rec, err := parseRecord(line)
		if err != nil {
			if !terminated {
				slog.Warn("metrics: skipping an unterminated last line that does not parse", "file", path, "line", lineNo, "err", err)
				return nil
			}
			return fmt.Errorf("metrics: %s:%d: %w", path, lineNo, err)
		}
		out = append(out, rec)
		return nil
	})
	return out, err
}

// EachJSONLine calls f with each non-blank line of a JSON-lines file's content, its line number, and whether
// it ends with a newline: an unterminated last line may be a write cut short (a crash, or a file read while
// it is written), which callers skip rather than refuse.
func EachJSONLine(data []byte, f func(lineNo int, line []byte, terminated bool) error) error {
	for lineNo := 1; len(data) > 0; lineNo++ {
		line, terminated := data, false
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data, terminated = data[:i], data[i+1:], true
		} else {
			data = nil
		}
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		if err := f(lineNo, line, terminated); err != nil {
			return err
		}
	}
	return nil
}

// parseRecord decodes one metrics.jsonl line.
func parseRecord(line []byte) (Record, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		return Record{}, fmt.Errorf("not a JSON object: %w", err)
	}
	rec := Record{Values: make(map[string]float64, len(fields))}
	var ts string
	for _, k := range []string{"time", "stage", "step"} {
		raw, ok := fields[k]
		if !ok {
			return Record{}, fmt.Errorf("missing key %q", k)
		}
		var err error
		switch k {
		case "time":
			if err = json.Unmarshal(raw, &ts); err == nil {
				rec.Time, err = time.Parse(time.RFC3339Nano, ts)
			}
		case "stage":
			err = json.Unmarshal(raw, &rec.Stage)
		case "step":
			err = json.Unmarshal(raw, &rec.Step)
		}
		if err != nil {
			return Record{}, fmt.Errorf("key %q: %w", k, err)
		}
		delete(fields, k)
	}
	for k, raw := range fields {
		if string(raw) == "null" {
			rec.Values[k] = math.NaN()
			continue
		}
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return Record{}, fmt.Errorf("key %q: value %s is not a number or null", k, raw)
		}
		rec.Values[k] = v
	}
	return rec, nil
}
