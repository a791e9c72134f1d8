// json_py_test.go checks the Python-compatible JSON reader and writer against values worked out from
// CPython 3.11's json.loads / json.dumps(ensure_ascii=False) and float.__repr__ rules.
package data

import (
	"math"
	"testing"
)

func TestPyFloatRepr(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{2.0, "2.0"},
		{1.5, "1.5"},
		{0.1, "0.1"},
		{100, "100.0"},
		{-0.0 * -1, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{1.0 / 3, "0.3333333333333333"},
		{12345.678, "12345.678"},
		{0.0001, "0.0001"},  // exponent -4: fixed
		{0.00001, "1e-05"},  // exponent -5: exponent form, two digits
		{1.5e-7, "1.5e-07"}, // mantissa keeps its point
		{1e15, "1000000000000000.0"},
		{9999999999999998, "9999999999999998.0"}, // exponent 15: fixed
		{1e16, "1e+16"},                          // exponent 16: exponent form
		{1.2345678901234568e17, "1.2345678901234568e+17"},
		{1e22, "1e+22"},
		{5e-324, "5e-324"},
		{1.7976931348623157e308, "1.7976931348623157e+308"},
		{-2.5, "-2.5"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "Infinity"},
		{math.Inf(-1), "-Infinity"},
	}
	for _, tc := range tests {
		if got := PyFloatRepr(tc.in); got != tc.want {
			t.Errorf("PyFloatRepr(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPyQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"\x1b", `"\u001b"`},
		{"\x7f", "\"\x7f\""},                       // DEL stays raw
		{"</script>&'", `"</script>&'"`},           // no HTML escaping
		{"Bodø 東京 😀", `"Bodø 東京 😀"`},               // non-ASCII raw
		{"a\u2028b\u2029c", "\"a\u2028b\u2029c\""}, // unlike Go's encoding/json
		{"bad\xffbyte", "\"bad\uFFFDbyte\""},
		{"<｜User｜>", `"<｜User｜>"`},
	}
	for _, tc := range tests {
		if got := PyQuote(tc.in); got != tc.want {
			t.Errorf("PyQuote(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestParsePyJSONRoundTrip parses text and writes it back as json.dumps would.
func TestParsePyJSONRoundTrip(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"type":"object","properties":{"b":{"type":"string"},"a":{}}}`, `{"type": "object", "properties": {"b": {"type": "string"}, "a": {}}}`},
		{`{"b": 1, "a": 2, "b": 3}`, `{"b": 3, "a": 2}`}, // duplicate: first position, last value
		{` [1, 2.0 ,1.50, 1e2, 1E-5, -0, -0.0, 0]`, `[1, 2.0, 1.5, 100.0, 1e-05, 0, -0.0, 0]`},
		{`12345678901234567890123`, `12345678901234567890123`}, // Python int: verbatim
		{`1e400`, `Infinity`},
		{`-1e400`, `-Infinity`},
		{`1e-400`, `0.0`},
		{`[NaN, Infinity, -Infinity]`, `[NaN, Infinity, -Infinity]`},
		{`{"max": 2.0, "late": true, "n": null, "f": false}`, `{"max": 2.0, "late": true, "n": null, "f": false}`},
		{`"\u00e9\/\ud83d\ude00\u2028"`, "\"é/😀\u2028\""},
		{`"\ud800x"`, "\"\uFFFDx\""}, // lone surrogate
		{`"tab\there"`, `"tab\there"`},
		{`[]`, `[]`},
		{`{}`, `{}`},
		{"\t{\r\n\"k\" :[ ] }\n", `{"k": []}`},
	}
	for _, tc := range tests {
		v, err := ParsePyJSON(tc.in)
		if err != nil {
			t.Errorf("ParsePyJSON(%q): %v", tc.in, err)
			continue
		}
		if got := v.String(); got != tc.want {
			t.Errorf("ParsePyJSON(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParsePyJSONKinds(t *testing.T) {
	tests := []struct {
		in     string
		kind   PyKind
		truthy bool
	}{
		{`1e2`, PyFloat, true},
		{`0.0`, PyFloat, false},
		{`3`, PyInt, true},
		{`-0`, PyInt, false},
		{`""`, PyString, false},
		{`"x"`, PyString, true},
		{`[]`, PyArray, false},
		{`{}`, PyObject, false},
		{`{"a":1}`, PyObject, true},
		{`null`, PyNull, false},
		{`false`, PyBool, false},
	}
	for _, tc := range tests {
		v, err := ParsePyJSON(tc.in)
		if err != nil {
			t.Fatalf("ParsePyJSON(%q): %v", tc.in, err)
		}
		if v.Kind != tc.kind || v.Truthy() != tc.truthy {
			t.Errorf("ParsePyJSON(%q): kind %s truthy %v, want kind %d truthy %v", tc.in, v.KindName(), v.Truthy(), tc.kind, tc.truthy)
		}
	}
}

func TestParsePyJSONErrors(t *testing.T) {
	for _, in := range []string{
		``, ` `, `01`, `1.`, `1e`, `-`, `.5`, `+1`, `[1,]`, `{"a":1,}`, `{'a':1}`, `{"a" 1}`, `[1 2]`,
		"\"a\nb\"", `"\x"`, `"\u12"`, `"abc`, `nan`, `-NaN`, `tru`, `[1]x`, `{"a":1}}`,
	} {
		if v, err := ParsePyJSON(in); err == nil {
			t.Errorf("ParsePyJSON(%q) = %s, want an error", in, v)
		}
	}
	deep := ""
	for i := 0; i < 2000; i++ {
		deep += "["
	}
	if _, err := ParsePyJSON(deep); err == nil {
		t.Errorf("ParsePyJSON of 2000 nested arrays: want a depth error")
	}
}
