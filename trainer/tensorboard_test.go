// Tests of the TensorBoard event writer: the checksum against the CRC-32C check
// value, a byte-exact event, a write/read round trip with CRC verification,
// corruption detection, and an independent parse by a Python (stdlib only)
// reader when python3 is available.
package trainer

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMaskedCRC32C(t *testing.T) {
	// CRC-32C("123456789") = 0xe3069283 (the standard check value);
	// masked: ((c>>15)|(c<<17)) + 0xa282ead8 mod 2^32 = 0xc78ab0e5.
	if got := maskedCRC32C([]byte("123456789")); got != 0xc78ab0e5 {
		t.Errorf("maskedCRC32C = %#x, want 0xc78ab0e5", got)
	}
}

// TestTBEventBytes checks the exact protobuf bytes of a scalar event.
func TestTBEventBytes(t *testing.T) {
	dir := t.TempDir()
	w, err := NewTBWriter(dir, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteScalars(time.Unix(1, 5e8), 3, "", []string{"a"}, []float64{2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	// First record: Event{wall_time=1 (field 1, fixed64), step=0 (field 2),
	// file_version="brain.Event:2" (field 3)}.
	first := append([]byte{0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x00, 0x1a, 13}, "brain.Event:2"...)
	// Second: Event{wall_time=1.5, step=3, summary (field 5){value (field 1){tag "a" (field 1), simple_value 2.0f (field 2)}}}.
	second := []byte{0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x10, 0x03, 0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, 'a', 0x15, 0, 0, 0, 0x40}
	var want []byte
	for _, body := range [][]byte{first, second} {
		hdr := []byte{byte(len(body)), 0, 0, 0, 0, 0, 0, 0}
		c := maskedCRC32C(hdr)
		want = append(want, hdr...)
		want = append(want, byte(c), byte(c>>8), byte(c>>16), byte(c>>24))
		want = append(want, body...)
		c = maskedCRC32C(body)
		want = append(want, byte(c), byte(c>>8), byte(c>>16), byte(c>>24))
	}
	if !bytes.Equal(data, want) {
		t.Errorf("event file bytes\n got %x\nwant %x", data, want)
	}
	name := filepath.Base(w.Path())
	host, _ := os.Hostname()
	if !strings.HasPrefix(name, "events.out.tfevents.1.") || (host != "" && !strings.HasSuffix(name, host)) {
		t.Errorf("event file name %q, want events.out.tfevents.1.<hostname>", name)
	}
}

// writeTestRun logs a few records through Metrics with TensorBoard on.
func writeTestRun(t *testing.T, dir string) *Metrics {
	t.Helper()
	m, err := OpenMetrics(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m.Now = func() time.Time { clock = clock.Add(time.Second); return clock }
	logs := []struct {
		stage string
		step  int
		v     map[string]float64
	}{
		{"pretrain", 0, map[string]float64{"loss": 5.5, "lr": 3e-4, "grad_norm": 1.25}},
		{"pretrain", 1, map[string]float64{"loss": 5.25, "lr": 6e-4, "grad_norm": math.Inf(1)}},
		{"rl_math", 7, map[string]float64{"reward/mean": 0.5}},
	}
	for _, l := range logs {
		if err := m.Log(l.stage, l.step, l.v); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestTBRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := writeTestRun(t, dir)
	path := m.TensorBoardPath()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err := ReadTFEvents(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 || evs[0].FileVersion != "brain.Event:2" {
		t.Fatalf("got %d events, first %+v; want 4 starting with the file version", len(evs), evs)
	}
	want := []struct {
		step    int64
		wall    float64
		scalars []TFScalar
	}{
		{0, 1767323046, []TFScalar{{"pretrain/grad_norm", 1.25}, {"pretrain/loss", 5.5}, {"pretrain/lr", 3e-4}}},
		{1, 1767323047, []TFScalar{{"pretrain/grad_norm", float32(math.Inf(1))}, {"pretrain/loss", 5.25}, {"pretrain/lr", 6e-4}}},
		{7, 1767323048, []TFScalar{{"rl_math/reward/mean", 0.5}}},
	}
	for i, w := range want {
		ev := evs[i+1]
		if ev.Step != w.step || ev.WallTime != w.wall || len(ev.Scalars) != len(w.scalars) {
			t.Errorf("event %d = %+v, want step %d wall %v scalars %v", i+1, ev, w.step, w.wall, w.scalars)
			continue
		}
		for j, s := range w.scalars {
			if ev.Scalars[j] != s {
				t.Errorf("event %d scalar %d = %+v, want %+v", i+1, j, ev.Scalars[j], s)
			}
		}
	}

	// Any flipped byte is caught by one of the two CRCs.
	data, _ := os.ReadFile(path)
	for _, off := range []int{3, 10, 30, len(data) - 2} {
		bad := append([]byte(nil), data...)
		bad[off] ^= 0x40
		p := filepath.Join(t.TempDir(), "bad.tfevents")
		if err := os.WriteFile(p, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadTFEvents(p); err == nil || !strings.Contains(err.Error(), "offset") {
			t.Errorf("flipped byte %d: error %v, want a CRC or length error with the offset", off, err)
		}
	}
	// A truncated file is refused.
	p := filepath.Join(t.TempDir(), "short.tfevents")
	os.WriteFile(p, data[:len(data)-3], 0o644)
	if _, err := ReadTFEvents(p); err == nil {
		t.Error("truncated event file accepted")
	}
}

// TestTBFileNameCollision checks that two writers opened in the same second get
// distinct files.
func TestTBFileNameCollision(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(100, 0)
	a, err := NewTBWriter(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewTBWriter(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Path() == b.Path() || b.Path() != a.Path()+".1" {
		t.Errorf("paths %q and %q, want the second with suffix .1", a.Path(), b.Path())
	}
}

// pyTFReader parses an event file with the Python standard library only: its
// own CRC-32C, TFRecord framing and protobuf wire decoding. It prints the
// events as JSON.
const pyTFReader = `
import json, struct, sys
def crc32c(b):
    c = 0xffffffff
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xffffffff
def masked(b):
    c = crc32c(b)
    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xffffffff
def varint(b, i):
    v = s = 0
    while True:
        x = b[i]; i += 1
        v |= (x & 0x7f) << s; s += 7
        if x < 0x80: return v, i
def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        num, typ = key >> 3, key & 7
        if typ == 0: v, i = varint(b, i)
        elif typ == 1: v = b[i:i+8]; i += 8
        elif typ == 5: v = b[i:i+4]; i += 4
        elif typ == 2:
            n, i = varint(b, i); v = b[i:i+n]; i += n
        else: raise ValueError("wire type %d" % typ)
        yield num, v
data = open(sys.argv[1], "rb").read()
out, off = [], 0
while off < len(data):
    n, = struct.unpack_from("<Q", data, off)
    assert struct.unpack_from("<I", data, off + 8)[0] == masked(data[off:off+8]), "length crc"
    body = data[off+12:off+12+n]
    assert struct.unpack_from("<I", data, off + 12 + n)[0] == masked(body), "data crc"
    off += 16 + n
    ev = {"scalars": []}
    for num, v in fields(body):
        if num == 1: ev["wall_time"] = struct.unpack("<d", v)[0]
        elif num == 2: ev["step"] = v
        elif num == 3: ev["file_version"] = v.decode()
        elif num == 5:
            for _, val in fields(v):
                d = dict(fields(val))
                ev["scalars"].append([d[1].decode(), repr(struct.unpack("<f", d[2])[0])])
    out.append(ev)
print(json.dumps(out))
`

func TestTBPythonReader(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	dir := t.TempDir()
	m := writeTestRun(t, dir)
	path := m.TensorBoardPath()
	m.Close()
	out, err := exec.Command(py, "-c", pyTFReader, path).CombinedOutput()
	if err != nil {
		t.Fatalf("python reader: %v\n%s", err, out)
	}
	var evs []struct {
		WallTime    float64     `json:"wall_time"`
		Step        int64       `json:"step"`
		FileVersion string      `json:"file_version"`
		Scalars     [][2]string `json:"scalars"`
	}
	if err := json.Unmarshal(out, &evs); err != nil {
		t.Fatalf("python output %s: %v", out, err)
	}
	if len(evs) != 4 || evs[0].FileVersion != "brain.Event:2" {
		t.Fatalf("python read %s", out)
	}
	// Python prints float32 values widened to double: 3e-4f is 0.0003000000142492354.
	want := [][2]string{{"pretrain/grad_norm", "inf"}, {"pretrain/loss", "5.25"}, {"pretrain/lr", "0.0006000000284984708"}}
	if evs[2].Step != 1 || evs[2].WallTime != 1767323047 || len(evs[2].Scalars) != 3 {
		t.Fatalf("python event 2: %+v", evs[2])
	}
	for i, w := range want {
		if evs[2].Scalars[i] != w {
			t.Errorf("python scalar %d = %v, want %v", i, evs[2].Scalars[i], w)
		}
	}
	if evs[3].Step != 7 || len(evs[3].Scalars) != 1 || evs[3].Scalars[0] != [2]string{"rl_math/reward/mean", "0.5"} {
		t.Errorf("python event 3: %+v", evs[3])
	}
}
