// TensorBoard event files, written by hand with protowire (no TensorFlow or
// TensorBoard dependency). A file `events.out.tfevents.<unix>.<hostname>` is a
// sequence of TFRecords:
//
//	uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
//
// with masked_crc32c(x) = ((c>>15)|(c<<17)) + 0xa282ead8 where c is the CRC-32C
// (Castagnoli) of x. Each data block is a tensorflow.Event protobuf:
//
//	Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//	Summary { repeated Value value = 1; }
//	Value   { string tag = 1; float simple_value = 2; }
//
// The first event carries file_version "brain.Event:2"; every later event holds
// the scalars of one (stage, step) with tags "<stage>/<metric>" (e.g.
// "pretrain/loss"). Values are stored as float32 as TensorBoard expects; NaN and
// ±Inf are written as such (TensorBoard shows them), unlike metrics.jsonl.
// Each event is written with one write call, so a reader never sees half a
// record unless the process dies inside the write. ReadTFEvents parses such
// files back, checking every CRC. Every start of a run writes a new file; a
// resume first removes the events of the steps after its checkpoint from the
// older files (TrimTFEvents), so TensorBoard shows each step once.

package trainer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// tfFileVersion is the file_version of the first event of every event file.
const tfFileVersion = "brain.Event:2"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC32C is the TFRecord checksum of b.
func maskedCRC32C(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + 0xa282ead8
}

// TBWriter appends scalar events to one TensorBoard event file.
type TBWriter struct {
	f    *os.File
	path string
	ev   []byte // event protobuf, reused
	rec  []byte // framed record, reused
}

// NewTBWriter creates a new event file named events.out.tfevents.<unix>.<hostname>
// in dir (created if needed) and writes the file_version event. When a file of
// that name already exists (two writers in one second) a suffix ".1", ".2", ...
// is added: TensorBoard reads every file whose name contains "tfevents".
func NewTBWriter(dir string, now time.Time) (*TBWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tensorboard: create directory %s: %w", dir, err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.ReplaceAll(host, string(filepath.Separator), "_")
	base := filepath.Join(dir, fmt.Sprintf("events.out.tfevents.%d.%s", now.Unix(), host))
	var f *os.File
	path := base
	for i := 1; ; i++ {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i > 1000 {
			return nil, fmt.Errorf("tensorboard: create event file %s: %w", path, err)
		}
		path = fmt.Sprintf("%s.%d", base, i)
	}
	w := &TBWriter{f: f, path: path}
	w.ev = appendEventHeader(w.ev[:0], now, 0)
	w.ev = protowire.AppendTag(w.ev, 3, protowire.BytesType)
	w.ev = protowire.AppendString(w.ev, tfFileVersion)
	if err := w.writeRecord(); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Path returns the event file's path.
func (w *TBWriter) Path() string { return w.path }

func appendEventHeader(b []byte, wall time.Time, step int64) []byte {
	b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(float64(wall.UnixNano())/1e9))
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(step))
}

// WriteScalars writes one event at step holding one simple_value per name, with
// tag prefix+"/"+name (just name when prefix is empty).
func (w *TBWriter) WriteScalars(wall time.Time, step int64, prefix string, names []string, values []float64) error {
	if len(names) != len(values) {
		return fmt.Errorf("tensorboard: %d names for %d values", len(names), len(values))
	}
	tagLen := func(name string) int {
		if prefix == "" {
			return len(name)
		}
		return len(prefix) + 1 + len(name)
	}
	valueSize := func(name string) int {
		return protowire.SizeTag(1) + protowire.SizeBytes(tagLen(name)) + protowire.SizeTag(2) + protowire.SizeFixed32()
	}
	summarySize := 0
	for _, n := range names {
		summarySize += protowire.SizeTag(1) + protowire.SizeBytes(valueSize(n))
	}
	b := appendEventHeader(w.ev[:0], wall, step)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(summarySize))
	for i, n := range names {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(valueSize(n)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(tagLen(n)))
		if prefix != "" {
			b = append(b, prefix...)
			b = append(b, '/')
		}
		b = append(b, n...)
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(float32(values[i])))
	}
	w.ev = b
	return w.writeRecord()
}

// writeRecord frames w.ev as a TFRecord and writes it with one call.
func (w *TBWriter) writeRecord() error {
	r := w.rec[:0]
	r = binary.LittleEndian.AppendUint64(r, uint64(len(w.ev)))
	r = binary.LittleEndian.AppendUint32(r, maskedCRC32C(r[:8]))
	r = append(r, w.ev...)
	r = binary.LittleEndian.AppendUint32(r, maskedCRC32C(w.ev))
	w.rec = r
	if _, err := w.f.Write(r); err != nil {
		return fmt.Errorf("tensorboard: write %s: %w", w.path, err)
	}
	return nil
}

// Close closes the event file.
func (w *TBWriter) Close() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("tensorboard: close %s: %w", w.path, err)
	}
	return nil
}

// TFScalar is one summary value of an event.
type TFScalar struct {
	Tag   string
	Value float32
}

// TFEvent is one decoded event: the file_version event or a scalar summary.
type TFEvent struct {
	WallTime    float64
	Step        int64
	FileVersion string
	Scalars     []TFScalar
}

// ReadTFEvents parses an event file, verifying both CRCs of every record. Fields
// other than those TBWriter writes are skipped. Errors name the file and the
// byte offset of the bad record.
func ReadTFEvents(path string) ([]TFEvent, error) {
	recs, err := readTFRecords(path)
	if err != nil {
		return nil, err
	}
	out := make([]TFEvent, len(recs))
	for i, r := range recs {
		out[i] = r.ev
	}
	return out, nil
}

// tfRecord is one framed record of an event file and its decoded event.
type tfRecord struct {
	raw []byte
	ev  TFEvent
}

func readTFRecords(path string) ([]tfRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	var out []tfRecord
	for off := 0; off < len(data); {
		if len(data)-off < 12 {
			return nil, fmt.Errorf("tensorboard: %s: offset %d: truncated record header", path, off)
		}
		n := binary.LittleEndian.Uint64(data[off:])
		if got, want := maskedCRC32C(data[off:off+8]), binary.LittleEndian.Uint32(data[off+8:]); got != want {
			return nil, fmt.Errorf("tensorboard: %s: offset %d: length CRC %#x, stored %#x", path, off, got, want)
		}
		if n > uint64(len(data)-off-16) {
			return nil, fmt.Errorf("tensorboard: %s: offset %d: record of %d bytes runs past the end of the file", path, off, n)
		}
		body := data[off+12 : off+12+int(n)]
		if got, want := maskedCRC32C(body), binary.LittleEndian.Uint32(data[off+12+int(n):]); got != want {
			return nil, fmt.Errorf("tensorboard: %s: offset %d: data CRC %#x, stored %#x", path, off, got, want)
		}
		ev, err := parseEvent(body)
		if err != nil {
			return nil, fmt.Errorf("tensorboard: %s: offset %d: %w", path, off, err)
		}
		out = append(out, tfRecord{raw: data[off : off+16+int(n)], ev: ev})
		off += 16 + int(n)
	}
	return out, nil
}

// TrimTFEvents removes from every event file of runDir the events that drop reports true for (a resume from
// an older checkpoint: the steps after it are trained again, and written again to the run's new event file),
// so that TensorBoard shows each step once. An event's stage is its tags' prefix before the first "/". A file
// is rewritten atomically (a temporary file renamed over it) only when it loses an event; a file that does
// not parse (a write cut short by a crash) is left as it is, with a warning. It returns the events removed.
func TrimTFEvents(runDir string, drop func(stage string, step int) bool) (int, error) {
	paths, err := filepath.Glob(filepath.Join(runDir, "events.out.tfevents.*"))
	if err != nil {
		return 0, fmt.Errorf("tensorboard: %w", err)
	}
	removed := 0
	for _, path := range paths {
		if strings.HasPrefix(filepath.Base(path), ".") || strings.Contains(filepath.Base(path), ".tmp") {
			continue
		}
		recs, err := readTFRecords(path)
		if err != nil {
			slog.Warn("tensorboard: leaving an event file that does not parse as it is; it may show steps twice", "file", path, "err", err)
			continue
		}
		var keep []byte
		n := 0
		for _, r := range recs {
			if len(r.ev.Scalars) > 0 {
				stage, _, _ := strings.Cut(r.ev.Scalars[0].Tag, "/")
				if drop(stage, int(r.ev.Step)) {
					n++
					continue
				}
			}
			keep = append(keep, r.raw...)
		}
		if n == 0 {
			continue
		}
		if err := writeFileAtomic(path, keep); err != nil {
			return removed, fmt.Errorf("tensorboard: %w", err)
		}
		removed += n
	}
	return removed, nil
}

// writeFileAtomic replaces path with data: a temporary file in the same directory, synced, renamed over it.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	return nil
}

// protoFields calls fn for each field of the protobuf message b.
func protoFields(b []byte, fn func(num protowire.Number, typ protowire.Type, field []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(m))
		}
		if err := fn(num, typ, b[:m]); err != nil {
			return err
		}
		b = b[m:]
	}
	return nil
}

func parseEvent(b []byte) (TFEvent, error) {
	var ev TFEvent
	err := protoFields(b, func(num protowire.Number, typ protowire.Type, f []byte) error {
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			v, _ := protowire.ConsumeFixed64(f)
			ev.WallTime = math.Float64frombits(v)
		case num == 2 && typ == protowire.VarintType:
			v, _ := protowire.ConsumeVarint(f)
			ev.Step = int64(v)
		case num == 3 && typ == protowire.BytesType:
			s, _ := protowire.ConsumeString(f)
			ev.FileVersion = s
		case num == 5 && typ == protowire.BytesType:
			summary, _ := protowire.ConsumeBytes(f)
			return protoFields(summary, func(num protowire.Number, typ protowire.Type, f []byte) error {
				if num != 1 || typ != protowire.BytesType {
					return nil
				}
				value, _ := protowire.ConsumeBytes(f)
				var s TFScalar
				err := protoFields(value, func(num protowire.Number, typ protowire.Type, f []byte) error {
					switch {
					case num == 1 && typ == protowire.BytesType:
						s.Tag, _ = protowire.ConsumeString(f)
					case num == 2 && typ == protowire.Fixed32Type:
						v, _ := protowire.ConsumeFixed32(f)
						s.Value = math.Float32frombits(v)
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("summary value: %w", err)
				}
				ev.Scalars = append(ev.Scalars, s)
				return nil
			})
		}
		return nil
	})
	return ev, err
}
