// Tests of the metrics.jsonl sink and reader: exact line format, null for
// non-finite values, exact float round trips, appending on reopen, repair of a
// partial last line, and error messages naming file, line and key.
package trainer

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMetricsGoldenLines(t *testing.T) {
	dir := t.TempDir()
	m, err := OpenMetrics(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600)) }
	if m.TensorBoardPath() != "" {
		t.Error("TensorBoard file created with tensorboard=false")
	}
	logs := []struct {
		stage string
		step  int
		v     map[string]float64
	}{
		{"pretrain", 12, map[string]float64{"lr": 3e-4, "loss": 2.5, "grad_norm": math.NaN(), "tokens_per_s": 12345, "eval/loss": 1e-7, "big": 1e21, "neg": -0.125, "zero": 0, "inf": math.Inf(-1)}},
		{`we"ird`, 0, map[string]float64{"a\\b\n": 1}},
		{"empty", 3, nil},
	}
	for _, l := range logs {
		if err := m.Log(l.stage, l.step, l.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-01-02T02:04:05.123456789Z","stage":"pretrain","step":12,"big":1e+21,"eval/loss":1e-07,"grad_norm":null,"inf":null,"loss":2.5,"lr":0.0003,"neg":-0.125,"tokens_per_s":12345,"zero":0}
{"time":"2026-01-02T02:04:05.123456789Z","stage":"we\"ird","step":0,"a\\b\n":1}
{"time":"2026-01-02T02:04:05.123456789Z","stage":"empty","step":3}
`
	if string(got) != want {
		t.Errorf("metrics.jsonl\n got %s\nwant %s", got, want)
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Stage != "pretrain" || recs[0].Step != 12 || recs[1].Stage != `we"ird` || recs[1].Values["a\\b\n"] != 1 {
		t.Fatalf("records %+v", recs)
	}
	if !recs[0].Time.Equal(time.Date(2026, 1, 2, 2, 4, 5, 123456789, time.UTC)) {
		t.Errorf("time %v", recs[0].Time)
	}
	if !math.IsNaN(recs[0].Values["grad_norm"]) || !math.IsNaN(recs[0].Values["inf"]) || recs[0].Values["eval/loss"] != 1e-7 || len(recs[0].Values) != 9 {
		t.Errorf("values %v", recs[0].Values)
	}
}

// TestMetricsExactRoundTrip checks that random float64 values read back bit for bit.
func TestMetricsExactRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m, err := OpenMetrics(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var want []float64
	for i := 0; i < 200; i++ {
		v := math.Float64frombits(rng.Uint64())
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		want = append(want, v)
		if err := m.Log("s", i, map[string]float64{"x": v}); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	recs, err := ReadMetrics(m.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if math.Float64bits(r.Values["x"]) != math.Float64bits(want[i]) {
			t.Errorf("record %d: %v, want %v", i, r.Values["x"], want[i])
		}
	}
}

// TestMetricsAppendAndRepair: reopening appends; a partial last line left by a
// crash is cut before appending.
func TestMetricsAppendAndRepair(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 2; i++ {
		m, err := OpenMetrics(dir, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Log("pretrain", i, map[string]float64{"loss": float64(i)}); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	path := filepath.Join(dir, MetricsFile)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-01-02T02:04:05Z","stage":"pretrain","st`)
	f.Close()
	// The reader skips the unterminated partial line.
	recs, err := ReadMetrics(path)
	if err != nil || len(recs) != 2 {
		t.Fatalf("reading with a partial last line: %d records, %v", len(recs), err)
	}
	m, err := OpenMetrics(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Log("pretrain", 2, map[string]float64{"loss": 2}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	recs, err = ReadMetrics(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records after resume, want 3", len(recs))
	}
	for i, r := range recs {
		if r.Step != i || r.Values["loss"] != float64(i) {
			t.Errorf("record %d: %+v", i, r)
		}
	}
}

func TestMetricsLogErrors(t *testing.T) {
	m, err := OpenMetrics(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		stage string
		v     map[string]float64
		want  string
	}{
		{"", map[string]float64{"loss": 1}, "empty stage"},
		{"s", map[string]float64{"step": 1}, `metric name "step"`},
		{"s", map[string]float64{"time": 1}, `metric name "time"`},
		{"s", map[string]float64{"": 1}, `metric name ""`},
	}
	for _, c := range cases {
		if err := m.Log(c.stage, 1, c.v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Log(%q, %v) error %v, want %q", c.stage, c.v, err, c.want)
		}
	}
	m.Close()
	if err := m.Log("s", 1, nil); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Errorf("Log after Close: %v", err)
	}
	if data, _ := os.ReadFile(m.Path()); len(data) != 0 {
		t.Errorf("refused records were written: %q", data)
	}
}

func TestReadMetricsErrors(t *testing.T) {
	good := `{"time":"2026-01-02T02:04:05Z","stage":"s","step":1,"loss":1}` + "\n"
	cases := []struct {
		name, line, want string
	}{
		{"not json", "{oops}", ":2: not a JSON object"},
		{"missing step", `{"time":"2026-01-02T02:04:05Z","stage":"s"}`, `:2: missing key "step"`},
		{"fractional step", `{"time":"2026-01-02T02:04:05Z","stage":"s","step":1.5}`, `:2: key "step"`},
		{"bad time", `{"time":"yesterday","stage":"s","step":1}`, `:2: key "time"`},
		{"string metric", `{"time":"2026-01-02T02:04:05Z","stage":"s","step":1,"loss":"low"}`, `:2: key "loss": value "low" is not a number or null`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), MetricsFile)
			os.WriteFile(path, []byte(good+c.line+"\n"+good), 0o644)
			_, err := ReadMetrics(path)
			if err == nil || !strings.Contains(err.Error(), path+c.want) {
				t.Errorf("error %v, want %q", err, path+c.want)
			}
		})
	}
	if _, err := ReadMetrics(filepath.Join(t.TempDir(), "none.jsonl")); err == nil {
		t.Error("missing file accepted")
	}
}

// TestMetricsLogAllocs checks that a steady-state Log (JSONL and TensorBoard)
// allocates nothing: its buffers are reused.
func TestMetricsLogAllocs(t *testing.T) {
	m, err := OpenMetrics(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	v := map[string]float64{"loss": 1, "lr": 2, "grad_norm": 3, "tokens_per_s": 4}
	m.Log("pretrain", 0, v)
	if a := testing.AllocsPerRun(20, func() { m.Log("pretrain", 1, v) }); a > 0 {
		t.Errorf("Log allocates %v times", a)
	}
}
