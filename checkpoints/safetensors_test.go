// Tests of the safetensors codec: golden bit-level conversions (normals, subnormals, ±0, ±Inf, NaN,
// ties to even), exhaustive round trips of all 16-bit patterns, golden file bytes, and every header error.
package checkpoints

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestF16ToF32Golden(t *testing.T) {
	for _, tc := range []struct {
		h    uint16
		want uint32
		what string
	}{
		{0x0000, 0x00000000, "+0"},
		{0x8000, 0x80000000, "-0"},
		{0x3C00, 0x3F800000, "1"},
		{0xC000, 0xC0000000, "-2"},
		{0x3555, 0x3EAAA000, "0.333251953125"},
		{0x7BFF, 0x477FE000, "65504, largest finite"},
		{0x0400, 0x38800000, "2^-14, smallest normal"},
		{0x0001, 0x33800000, "2^-24, smallest subnormal"},
		{0x03FF, 0x387FC000, "1023·2^-24, largest subnormal"},
		{0x8200, 0xB8000000, "-2^-15, negative subnormal"},
		{0x7C00, 0x7F800000, "+Inf"},
		{0xFC00, 0xFF800000, "-Inf"},
		{0x7E00, 0x7FC00000, "quiet NaN"},
		{0x7C01, 0x7F802000, "signalling NaN, payload kept"},
		{0xFE00, 0xFFC00000, "negative quiet NaN"},
	} {
		if got := math.Float32bits(F16ToF32(tc.h)); got != tc.want {
			t.Errorf("F16ToF32(%#04x) [%s] = %#08x, want %#08x", tc.h, tc.what, got, tc.want)
		}
	}
}

func TestF32ToF16Golden(t *testing.T) {
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	for _, tc := range []struct {
		f    float32
		want uint16
		what string
	}{
		{0, 0x0000, "+0"},
		{float32(math.Copysign(0, -1)), 0x8000, "-0"},
		{1, 0x3C00, "1"},
		{-2, 0xC000, "-2"},
		{65504, 0x7BFF, "largest finite"},
		{65519, 0x7BFF, "just below the halfway point to 65536"},
		{65520, 0x7C00, "halfway to 65536: ties to even (odd mantissa) rounds to Inf"},
		{1e10, 0x7C00, "overflow"},
		{-1e10, 0xFC00, "negative overflow"},
		{1 + p(-11), 0x3C00, "tie between 1 and 1+2^-10 → even (1)"},
		{1 + 3*p(-11), 0x3C02, "tie between 1+2^-10 and 1+2^-9 → even (1+2^-9)"},
		{1 + p(-11) + p(-20), 0x3C01, "just above the tie → up"},
		{p(-14), 0x0400, "smallest normal"},
		{p(-24), 0x0001, "smallest subnormal"},
		{p(-25), 0x0000, "half the smallest subnormal: tie → even (0)"},
		{1.5 * p(-25), 0x0001, "above the tie → 2^-24"},
		{3 * p(-25), 0x0002, "1.5·2^-24: tie between 1 and 2 → even (2)"},
		{1023 * p(-24), 0x03FF, "largest subnormal"},
		{p(-14) - p(-26), 0x0400, "rounds up from the subnormals into the smallest normal"},
		{1e-8, 0x0000, "underflow"},
		{-1e-8, 0x8000, "negative underflow"},
		{float32(math.Inf(1)), 0x7C00, "+Inf"},
		{float32(math.Inf(-1)), 0xFC00, "-Inf"},
		{math.Float32frombits(0x7FC00000), 0x7E00, "quiet NaN"},
		{math.Float32frombits(0x7F800001), 0x7E00, "signalling NaN with a low payload stays NaN"},
	} {
		if got := F32ToF16(tc.f); got != tc.want {
			t.Errorf("F32ToF16(%g) [%s] = %#04x, want %#04x", tc.f, tc.what, got, tc.want)
		}
	}
}

func TestBF16Golden(t *testing.T) {
	for _, tc := range []struct {
		f    uint32
		want uint16
		what string
	}{
		{0x3F800000, 0x3F80, "1"},
		{0x3F808000, 0x3F80, "tie, even below"},
		{0x3F818000, 0x3F82, "tie, odd below → up"},
		{0x3F808001, 0x3F81, "above the tie"},
		{0x3F807FFF, 0x3F80, "below the tie"},
		{0x7F7FFFFF, 0x7F80, "largest float32 rounds to Inf"},
		{0x00000001, 0x0000, "tiny subnormal → 0"},
		{0x00018000, 0x0002, "subnormal tie, odd below → up"},
		{0x80000000, 0x8000, "-0"},
		{0xFF800000, 0xFF80, "-Inf"},
		{0x7FC00000, 0x7FC0, "quiet NaN"},
		{0x7F800001, 0x7FC0, "signalling NaN must not become Inf"},
	} {
		if got := F32ToBF16(math.Float32frombits(tc.f)); got != tc.want {
			t.Errorf("F32ToBF16(%#08x) [%s] = %#04x, want %#04x", tc.f, tc.what, got, tc.want)
		}
	}
	if got := math.Float32bits(BF16ToF32(0xC049)); got != 0xC0490000 { // -3.140625
		t.Errorf("BF16ToF32(0xC049) = %#08x, want 0xC0490000", got)
	}
	if got := math.Float32bits(BF16ToF32(0x0001)); got != 0x00010000 {
		t.Errorf("BF16ToF32(0x0001) = %#08x, want the subnormal 0x00010000", got)
	}
}

// TestHalfRoundTripAll checks every 16-bit pattern: decoding then encoding gives it back (NaNs: a quiet NaN
// with the same sign and payload bits above the quiet bit).
func TestHalfRoundTripAll(t *testing.T) {
	for b := 0; b < 1<<16; b++ {
		h := uint16(b)
		isNaN16 := h&0x7C00 == 0x7C00 && h&0x3FF != 0
		if got := F32ToF16(F16ToF32(h)); got != h && !(isNaN16 && got == h|0x0200) {
			t.Fatalf("F16 %#04x → %#04x", h, got)
		}
		isNaNbf := h&0x7F80 == 0x7F80 && h&0x7F != 0
		if got := F32ToBF16(BF16ToF32(h)); got != h && !(isNaNbf && got == h|0x0040) {
			t.Fatalf("BF16 %#04x → %#04x", h, got)
		}
	}
}

// TestF32ToF16Nearest compares the rounding with a float64 reference on random float32 values of the F16 range.
func TestF32ToF16Nearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		f := float32(math.Ldexp(rng.Float64()*2-1, rng.IntN(42)-26)) // |f| < 2^15: no overflow
		got := F32ToF16(f)
		// Reference: the F16 values next to the result (exact in float64), nearest, ties to even mantissa.
		best, bestErr := uint16(0), math.Inf(1)
		for d := -2; d <= 2; d++ {
			c := uint16(int(got) + d)
			if c&0x7C00 == 0x7C00 {
				continue
			}
			v := float64(F16ToF32(c))
			if math.Signbit(v) != math.Signbit(float64(f)) && v != 0 {
				continue
			}
			e := math.Abs(v - float64(f))
			if e < bestErr || (e == bestErr && c&1 == 0) {
				best, bestErr = c, e
			}
		}
		if got != best && F16ToF32(got) != F16ToF32(best) {
			t.Fatalf("F32ToF16(%g) = %#04x, nearest is %#04x", f, got, best)
		}
	}
}

func TestWriteSafetensorsGoldenBytes(t *testing.T) {
	var buf bytes.Buffer
	tensors := []Tensor{{Name: "b", Shape: []int{1}, Data: []float32{0.5}}, {Name: "a", Shape: []int{2}, Data: []float32{1, -2}}}
	n, err := WriteSafetensors(&buf, tensors, F32, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	hdr := `{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`
	for len(hdr)%8 != 0 {
		hdr += " "
	}
	var want bytes.Buffer
	binary.Write(&want, binary.LittleEndian, uint64(len(hdr)))
	want.WriteString(hdr)
	want.Write([]byte{0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0, 0, 0, 0, 0x3F}) // 1, -2, 0.5
	if !bytes.Equal(buf.Bytes(), want.Bytes()) || n != int64(want.Len()) {
		t.Fatalf("got (%d bytes)\n%q\nwant (%d)\n%q", n, buf.Bytes(), want.Len(), want.Bytes())
	}
	// F16 and BF16 encodings of the same values.
	for _, tc := range []struct {
		d    DType
		data []byte
	}{{F16, []byte{0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38}}, {BF16, []byte{0x80, 0x3F, 0x00, 0xC0, 0x00, 0x3F}}} {
		buf.Reset()
		if _, err := WriteSafetensors(&buf, tensors, tc.d, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(buf.Bytes(), tc.data) || !bytes.Contains(buf.Bytes(), []byte(`"dtype":"`+string(tc.d)+`"`)) {
			t.Errorf("%s: got %q", tc.d, buf.Bytes())
		}
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	mk := func(name string, shape ...int) Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64())
		}
		return Tensor{Name: name, Shape: shape, Data: d}
	}
	in := []Tensor{mk("z.weight", 3, 5), mk("a.bias", 7), mk("m.big", 300, 400), mk("step")}
	in[3].Shape = []int{} // a scalar
	for _, d := range []DType{F32, F16, BF16} {
		path := filepath.Join(t.TempDir(), "x.safetensors")
		f, _ := os.Create(path)
		if _, err := WriteSafetensors(f, in, d, map[string]string{"k": "v"}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		out, meta, err := ReadSafetensorsFile(path)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if meta["k"] != "v" {
			t.Errorf("%s: metadata %v", d, meta)
		}
		names := []string{"a.bias", "m.big", "step", "z.weight"}
		for i, o := range out {
			if o.Name != names[i] {
				t.Fatalf("%s: header order %d = %s, want %s", d, i, o.Name, names[i])
			}
		}
		byName := map[string]Tensor{}
		for _, o := range out {
			byName[o.Name] = o
		}
		for _, x := range in {
			o := byName[x.Name]
			if len(o.Shape) != len(x.Shape) || len(o.Data) != len(x.Data) {
				t.Fatalf("%s: %s shape %v, want %v", d, x.Name, o.Shape, x.Shape)
			}
			for k, v := range x.Data {
				want := v
				switch d {
				case F16:
					want = F16ToF32(F32ToF16(v))
				case BF16:
					want = BF16ToF32(F32ToBF16(v))
				}
				if math.Float32bits(o.Data[k]) != math.Float32bits(want) {
					t.Fatalf("%s: %s[%d] = %g, want %g", d, x.Name, k, o.Data[k], want)
				}
			}
		}
	}
}

func TestWriteSafetensorsErrors(t *testing.T) {
	for _, tc := range []struct {
		what    string
		tensors []Tensor
		dtype   DType
		want    string
	}{
		{"shape vs data", []Tensor{{Name: "a", Shape: []int{3}, Data: []float32{1, 2}}}, F32, "shape [3] holds 3 elements, data has 2"},
		{"duplicate", []Tensor{{Name: "a", Shape: []int{1}, Data: []float32{1}}, {Name: "a", Shape: []int{1}, Data: []float32{1}}}, F32, "duplicate tensor a"},
		{"reserved name", []Tensor{{Name: "__metadata__", Shape: []int{1}, Data: []float32{1}}}, F32, "invalid tensor name"},
		{"dtype", []Tensor{{Name: "a", Shape: []int{1}, Data: []float32{1}}}, "I64", "cannot write dtype I64"},
	} {
		_, err := WriteSafetensors(&bytes.Buffer{}, tc.tensors, tc.dtype, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.what, err, tc.want)
		}
	}
}

// rawSafetensors builds a file from a literal header (padded) and data.
func rawSafetensors(header string, data []byte) []byte {
	for len(header)%8 != 0 {
		header += " "
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestReadSafetensorsErrors(t *testing.T) {
	good := rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))
	hugeLen := append([]byte{}, good...)
	binary.LittleEndian.PutUint64(hugeLen, 1<<40)
	for _, tc := range []struct {
		what string
		file []byte
		want string
	}{
		{"shorter than the length prefix", good[:5], "truncated file"},
		{"header length beyond the file", hugeLen, "header length 1099511627776 is beyond the file size"},
		{"truncated data", good[:len(good)-3], "truncated file: tensor a ends at data byte 8, the file holds 5 data bytes"},
		{"bad JSON", rawSafetensors(`{"a":{"dtype":"F32",`, nil), "bad JSON header"},
		{"not an object", rawSafetensors(`[1,2]`, nil), "bad JSON header"},
		{"missing offsets", rawSafetensors(`{"a":{"dtype":"F32","shape":[2]}}`, make([]byte, 8)), "needs dtype, shape and data_offsets"},
		{"offsets not numbers", rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}}`, make([]byte, 8)), "bad JSON header: tensor a"},
		{"duplicate", rawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "duplicate tensor a"},
		{"overlap", rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "overlap"},
		{"out of range", rawSafetensors(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}`, make([]byte, 16)), "ends at data byte 24, the file holds 16"},
		{"end before begin", rawSafetensors(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}`, make([]byte, 8)), "end before begin"},
		{"offsets vs shape", rawSafetensors(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), "span 8 bytes, shape [3] of F32 needs 12"},
		{"offsets vs dtype", rawSafetensors(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), "span 8 bytes, shape [2] of F16 needs 4"},
		{"negative dim", rawSafetensors(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, nil), "invalid shape"},
		{"unknown dtype", rawSafetensors(`{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, make([]byte, 8)), "unsupported dtype F4 for tensor a"},
		{"I64", rawSafetensors(`{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, make([]byte, 8)), "unsupported dtype I64 for tensor a"},
		{"F8_E4M3", rawSafetensors(`{"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}`, make([]byte, 8)), "unsupported dtype F8_E4M3 for tensor w"},
		{"metadata not strings", rawSafetensors(`{"__metadata__":{"a":1}}`, nil), "__metadata__ must map strings to strings"},
	} {
		path := filepath.Join(t.TempDir(), "x.safetensors")
		if err := os.WriteFile(path, tc.file, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := ReadSafetensorsFile(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want %q naming the file", tc.what, err, tc.want)
		}
	}
	// Holes between tensors are tolerated and skipped.
	path := filepath.Join(t.TempDir(), "hole.safetensors")
	data := []byte{0, 0, 0, 0, 0, 0, 0x80, 0x3F}
	os.WriteFile(path, rawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data), 0o644)
	out, _, err := ReadSafetensorsFile(path)
	if err != nil || len(out) != 1 || out[0].Data[0] != 1 {
		t.Errorf("hole: %v %v", out, err)
	}
}
