// json_py.go implements the JSON that Python's json module reads and writes, as the DeepSeek-V3.2 chat
// encoder uses it (chat-format.md §3.2): ParsePyJSON mirrors json.loads (objects keep their key order, a
// repeated key keeps its first position and takes its last value, integers keep their digits, NaN and
// ±Infinity are accepted), and PyValue.String mirrors json.dumps(x, ensure_ascii=False) with the default
// separators ", " and ": ", Python's float repr and Python's string escapes. Go's encoding/json cannot be
// used for this: it sorts map keys, escapes <>& and U+2028/9, and formats floats differently.
//
// Where Go strings cannot hold what Python holds, the nearest value is used: a lone UTF-16 surrogate
// escape (\ud800) decodes to U+FFFD, and invalid UTF-8 bytes in a Go string are written as U+FFFD.

package data

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// PyKind is the type of a PyValue.
type PyKind uint8

// The JSON value kinds, as Python holds them after json.loads.
const (
	PyNull PyKind = iota
	PyBool
	PyInt   // Python int: the decimal digits are kept verbatim (arbitrary precision)
	PyFloat // Python float (float64)
	PyString
	PyArray
	PyObject
)

// PyValue is one JSON value with Python's semantics. Only the fields of its Kind are used.
type PyValue struct {
	Kind    PyKind
	Bool    bool
	Int     string // PyInt: canonical decimal text, e.g. "-12"
	Float   float64
	Str     string
	Items   []*PyValue
	Members []PyMember // PyObject, in insertion order, keys unique
}

// PyMember is one key/value pair of a JSON object.
type PyMember struct {
	Key   string
	Value *PyValue
}

// PyStr returns a string value.
func PyStr(s string) *PyValue { return &PyValue{Kind: PyString, Str: s} }

// Get returns the value of key in an object.
func (v *PyValue) Get(key string) (*PyValue, bool) {
	if v == nil || v.Kind != PyObject {
		return nil, false
	}
	for _, m := range v.Members {
		if m.Key == key {
			return m.Value, true
		}
	}
	return nil, false
}

// Set sets key to val, keeping the key's first position if it exists (Python dict assignment).
func (v *PyValue) Set(key string, val *PyValue) {
	for i := range v.Members {
		if v.Members[i].Key == key {
			v.Members[i].Value = val
			return
		}
	}
	v.Members = append(v.Members, PyMember{Key: key, Value: val})
}

// Truthy reports Python truthiness: null, false, 0, 0.0, "", [] and {} are false.
func (v *PyValue) Truthy() bool {
	if v == nil {
		return false
	}
	switch v.Kind {
	case PyNull:
		return false
	case PyBool:
		return v.Bool
	case PyInt:
		return v.Int != "0"
	case PyFloat:
		return v.Float != 0
	case PyString:
		return v.Str != ""
	case PyArray:
		return len(v.Items) > 0
	default:
		return len(v.Members) > 0
	}
}

// KindName names the Python type of v, for error messages.
func (v *PyValue) KindName() string {
	if v == nil {
		return "nothing"
	}
	return [...]string{"null", "bool", "int", "float", "string", "array", "object"}[v.Kind]
}

// String returns json.dumps(v, ensure_ascii=False).
func (v *PyValue) String() string { return string(v.AppendPy(nil)) }

// AppendPy appends json.dumps(v, ensure_ascii=False) to dst.
func (v *PyValue) AppendPy(dst []byte) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	switch v.Kind {
	case PyNull:
		return append(dst, "null"...)
	case PyBool:
		if v.Bool {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case PyInt:
		return append(dst, v.Int...)
	case PyFloat:
		return append(dst, PyFloatRepr(v.Float)...)
	case PyString:
		return AppendPyQuote(dst, v.Str)
	case PyArray:
		dst = append(dst, '[')
		for i, it := range v.Items {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = it.AppendPy(dst)
		}
		return append(dst, ']')
	default:
		dst = append(dst, '{')
		for i, m := range v.Members {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = AppendPyQuote(dst, m.Key)
			dst = append(dst, ": "...)
			dst = m.Value.AppendPy(dst)
		}
		return append(dst, '}')
	}
}

// PyQuote returns json.dumps(s, ensure_ascii=False) for a string.
func PyQuote(s string) string { return string(AppendPyQuote(nil, s)) }

// AppendPyQuote appends the Python JSON string literal of s: `"` `\` and \b \f \n \r \t get their short
// escapes, other control characters below U+0020 become \u00xx (lowercase hex), everything else is raw
// (non-ASCII, DEL, U+2028/9, / < > &). Invalid UTF-8 bytes are written as U+FFFD.
func AppendPyQuote(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				dst = append(dst, '\\', '"')
			case '\\':
				dst = append(dst, '\\', '\\')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				if c < 0x20 {
					dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
				} else {
					dst = append(dst, c)
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// PyFloatRepr returns Python's repr of a float as json.dumps writes it: the shortest digits that round-trip,
// fixed notation with at least one fractional digit ("2.0") when the decimal exponent e satisfies
// -4 <= e < 16, else exponent notation with a sign and at least two exponent digits ("1e-05", "1.5e+16");
// NaN, Infinity and -Infinity for the non-finite values.
func PyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	// Go's shortest 'e' form: [-]d[.ddd]e±XX.
	s := strconv.FormatFloat(f, 'e', -1, 64)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	ePos := strings.IndexByte(s, 'e')
	mant, expText := s[:ePos], s[ePos+1:]
	exp, _ := strconv.Atoi(expText) // Go always writes a valid exponent here
	digits := strings.Replace(mant, ".", "", 1)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	if exp < -4 || exp >= 16 {
		b.WriteByte(digits[0])
		if len(digits) > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		if exp < 0 {
			b.WriteByte('-')
			exp = -exp
		} else {
			b.WriteByte('+')
		}
		if exp < 10 {
			b.WriteByte('0')
		}
		b.WriteString(strconv.Itoa(exp))
		return b.String()
	}
	point := exp + 1 // digits before the decimal point
	switch {
	case point <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -point))
		b.WriteString(digits)
	case point >= len(digits):
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", point-len(digits)))
		b.WriteString(".0")
	default:
		b.WriteString(digits[:point])
		b.WriteByte('.')
		b.WriteString(digits[point:])
	}
	return b.String()
}

// maxPyJSONDepth bounds nesting like CPython's recursion limit does, so hostile input cannot exhaust the stack.
const maxPyJSONDepth = 1000

// ParsePyJSON parses text as Python's json.loads does (strict mode): whitespace is space, tab, CR and LF;
// raw control characters inside strings are errors; NaN, Infinity and -Infinity are numbers; a number with
// a fraction or exponent is a float (overflow gives ±Infinity), any other number an int kept verbatim.
func ParsePyJSON(text string) (*PyValue, error) {
	p := pyParser{s: text}
	p.ws()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, p.errf("extra data")
	}
	return v, nil
}

type pyParser struct {
	s string
	i int
}

func (p *pyParser) errf(format string, args ...any) error {
	line, col := 1, 1
	for _, c := range []byte(p.s[:min(p.i, len(p.s))]) {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("json: %s at line %d column %d (byte %d)", fmt.Sprintf(format, args...), line, col, p.i)
}

func (p *pyParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *pyParser) value(depth int) (*PyValue, error) {
	if depth > maxPyJSONDepth {
		return nil, p.errf("nesting deeper than %d", maxPyJSONDepth)
	}
	if p.i >= len(p.s) {
		return nil, p.errf("expecting value")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return PyStr(s), nil
	case strings.HasPrefix(p.s[p.i:], "null"):
		p.i += 4
		return &PyValue{Kind: PyNull}, nil
	case strings.HasPrefix(p.s[p.i:], "true"):
		p.i += 4
		return &PyValue{Kind: PyBool, Bool: true}, nil
	case strings.HasPrefix(p.s[p.i:], "false"):
		p.i += 5
		return &PyValue{Kind: PyBool}, nil
	case strings.HasPrefix(p.s[p.i:], "NaN"):
		p.i += 3
		return &PyValue{Kind: PyFloat, Float: math.NaN()}, nil
	case strings.HasPrefix(p.s[p.i:], "Infinity"):
		p.i += 8
		return &PyValue{Kind: PyFloat, Float: math.Inf(1)}, nil
	case strings.HasPrefix(p.s[p.i:], "-Infinity"):
		p.i += 9
		return &PyValue{Kind: PyFloat, Float: math.Inf(-1)}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return nil, p.errf("expecting value")
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number scans -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)? like Python's NUMBER_RE.
func (p *pyParser) number() (*PyValue, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.s) && p.s[p.i] == '0':
		p.i++
	case p.i < len(p.s) && isDigit(p.s[p.i]):
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
	default:
		p.i = start
		return nil, p.errf("expecting value")
	}
	intEnd := p.i
	isFloat := false
	if p.i+1 < len(p.s) && p.s[p.i] == '.' && isDigit(p.s[p.i+1]) {
		p.i += 2
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
		isFloat = true
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		j := p.i + 1
		if j < len(p.s) && (p.s[j] == '+' || p.s[j] == '-') {
			j++
		}
		if j < len(p.s) && isDigit(p.s[j]) {
			for j < len(p.s) && isDigit(p.s[j]) {
				j++
			}
			p.i = j
			isFloat = true
		}
	}
	text := p.s[start:p.i]
	if !isFloat {
		if strings.Trim(text[:intEnd-start], "-0") == "" {
			text = "0" // Python int("-0") == 0
		}
		return &PyValue{Kind: PyInt, Int: text}, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			return nil, p.errf("bad number %q", text)
		}
		// Out of range: ParseFloat already returned ±Inf (or ±0 on underflow), as Python's float() does.
	}
	return &PyValue{Kind: PyFloat, Float: f}, nil
}

func hexVal(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for i := 0; i < 4; i++ {
		c := s[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

func (p *pyParser) str() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for {
		if p.i >= len(p.s) {
			return "", p.errf("unterminated string")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c < 0x20:
			return "", p.errf("invalid control character")
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return "", p.errf("unterminated string")
			}
			e := p.s[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r, ok := hexVal(p.s[p.i:])
				if !ok {
					return "", p.errf("invalid \\uXXXX escape")
				}
				p.i += 4
				if utf16.IsSurrogate(r) {
					if r < 0xdc00 && strings.HasPrefix(p.s[p.i:], "\\u") {
						if r2, ok := hexVal(p.s[p.i+2:]); ok && r2 >= 0xdc00 && r2 <= 0xdfff {
							p.i += 6
							b.WriteRune(utf16.DecodeRune(r, r2))
							continue
						}
					}
					r = utf8.RuneError // a lone surrogate has no UTF-8 form
				}
				b.WriteRune(r)
			default:
				p.i -= 2
				return "", p.errf("invalid \\escape")
			}
		default:
			r, size := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && size == 1 {
				b.WriteRune(utf8.RuneError)
			} else {
				b.WriteString(p.s[p.i : p.i+size])
			}
			p.i += size
		}
	}
}

func (p *pyParser) array(depth int) (*PyValue, error) {
	p.i++
	v := &PyValue{Kind: PyArray}
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return v, nil
	}
	for {
		p.ws()
		it, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v.Items = append(v.Items, it)
		p.ws()
		if p.i >= len(p.s) {
			return nil, p.errf("expecting ',' delimiter")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return v, nil
		default:
			return nil, p.errf("expecting ',' delimiter")
		}
	}
}

func (p *pyParser) object(depth int) (*PyValue, error) {
	p.i++
	v := &PyValue{Kind: PyObject}
	index := map[string]int{}
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return v, nil
	}
	for {
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return nil, p.errf("expecting property name enclosed in double quotes")
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, p.errf("expecting ':' delimiter")
		}
		p.i++
		p.ws()
		val, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if k, ok := index[key]; ok {
			v.Members[k].Value = val // a repeated key keeps its first position, takes the last value
		} else {
			index[key] = len(v.Members)
			v.Members = append(v.Members, PyMember{Key: key, Value: val})
		}
		p.ws()
		if p.i >= len(p.s) {
			return nil, p.errf("expecting ',' delimiter")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return v, nil
		default:
			return nil, p.errf("expecting ',' delimiter")
		}
	}
}
