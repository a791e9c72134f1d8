// safetensors.go is a hand-written safetensors reader and writer. The format is an 8-byte little-endian
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end)}} with an optional
// "__metadata__" string map, padded with spaces to a multiple of 8, then the raw little-endian tensor bytes
// (offsets count from the end of the header). The writer lays tensors out sorted by name, as the Python
// library does for tensors of one dtype, and writes F32, F16 or BF16. The reader validates the header
// (lengths, offsets inside the data, no overlaps, offsets matching shape × dtype size) and streams the data
// once, converting F32, F16 and BF16 exactly to float32.

package checkpoints

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// DType is a safetensors element type name.
type DType string

// The element types Sparrow reads and writes.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
)

// dtypeSizes holds the byte size of every dtype the format defines (sub-byte F4/F6 types are not listed and
// are rejected as unknown). Only F32, F16 and BF16 can be decoded to float32.
var dtypeSizes = map[DType]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
	"I16": 2, "U16": 2, F16: 2, BF16: 2,
	"I32": 4, "U32": 4, F32: 4,
	"I64": 8, "U64": 8, "F64": 8,
}

func decodable(d DType) bool { return d == F32 || d == F16 || d == BF16 }

// maxHeaderLen bounds the JSON header (the Python library's limit is 100 MB).
const maxHeaderLen = 100 << 20

// TensorInfo is one header entry. Offsets are relative to the start of the data section.
type TensorInfo struct {
	Name   string
	DType  DType
	Shape  []int
	Begin  int64
	End    int64
	layout int // position in the header
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Header is a parsed and validated safetensors header.
type Header struct {
	Metadata map[string]string
	Tensors  []TensorInfo // in header order
	DataLen  int64        // bytes after the header
	byName   map[string]int
}

// Lookup returns the entry of a tensor.
func (h *Header) Lookup(name string) (TensorInfo, bool) {
	i, ok := h.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return h.Tensors[i], true
}

// Names returns the tensor names in header order.
func (h *Header) Names() []string {
	out := make([]string, len(h.Tensors))
	for i, t := range h.Tensors {
		out[i] = t.Name
	}
	return out
}

// WriteSafetensors writes tensors (any order; laid out sorted by name) encoded as dtype, with optional
// metadata. It returns the number of bytes written.
func WriteSafetensors(w io.Writer, tensors []Tensor, dtype DType, metadata map[string]string) (int64, error) {
	if !decodable(dtype) {
		return 0, fmt.Errorf("safetensors: cannot write dtype %s (want F32, F16 or BF16)", dtype)
	}
	es := int64(dtypeSizes[dtype])
	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(tensors[a].Name, tensors[b].Name) })
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata)
		if err != nil {
			return 0, fmt.Errorf("safetensors: metadata: %w", err)
		}
		hdr.WriteString(`"__metadata__":`)
		hdr.Write(m)
	}
	var off int64
	for k, i := range order {
		t := &tensors[i]
		switch {
		case t.Name == "" || t.Name == "__metadata__":
			return 0, fmt.Errorf("safetensors: invalid tensor name %q", t.Name)
		case k > 0 && tensors[order[k-1]].Name == t.Name:
			return 0, fmt.Errorf("safetensors: duplicate tensor %s", t.Name)
		}
		n := int64(1)
		for _, d := range t.Shape {
			if d < 0 {
				return 0, fmt.Errorf("safetensors: tensor %s: negative dimension in shape %v", t.Name, t.Shape)
			}
			n *= int64(d)
		}
		if n != int64(len(t.Data)) {
			return 0, fmt.Errorf("safetensors: tensor %s: shape %v holds %d elements, data has %d", t.Name, t.Shape, n, len(t.Data))
		}
		if hdr.Len() > 1 {
			hdr.WriteByte(',')
		}
		name, _ := json.Marshal(t.Name)
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		sh, _ := json.Marshal(shape)
		fmt.Fprintf(&hdr, `%s:{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}`, name, dtype, sh, off, off+n*es)
		off += n * es
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	var total int64
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(hdr.Len()))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return 0, fmt.Errorf("safetensors: write header: %w", err)
	}
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return 0, fmt.Errorf("safetensors: write header: %w", err)
	}
	total = 8 + int64(hdr.Len())
	buf := make([]byte, 0, 64<<10)
	for _, i := range order {
		for _, v := range tensors[i].Data {
			switch dtype {
			case F32:
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			case F16:
				buf = binary.LittleEndian.AppendUint16(buf, F32ToF16(v))
			case BF16:
				buf = binary.LittleEndian.AppendUint16(buf, F32ToBF16(v))
			}
			if len(buf) >= cap(buf)-8 {
				if _, err := w.Write(buf); err != nil {
					return total, fmt.Errorf("safetensors: write tensor %s: %w", tensors[i].Name, err)
				}
				total += int64(len(buf))
				buf = buf[:0]
			}
		}
	}
	if _, err := w.Write(buf); err != nil {
		return total, fmt.Errorf("safetensors: write data: %w", err)
	}
	return total + int64(len(buf)), nil
}

// ReadHeader reads and validates the header of a safetensors stream of fileSize bytes; r is left at the
// start of the data section. Errors name the file (what) and the tensor.
func ReadHeader(r io.Reader, fileSize int64, what string) (*Header, error) {
	var lenBuf [8]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, fmt.Errorf("%s: truncated file: cannot read the 8-byte header length: %w", what, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > uint64(fileSize-8) {
		return nil, fmt.Errorf("%s: header length %d is beyond the file size %d (truncated or not a safetensors file)", what, n, fileSize)
	}
	if n > maxHeaderLen {
		return nil, fmt.Errorf("%s: header length %d exceeds the %d-byte limit", what, n, maxHeaderLen)
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("%s: truncated file: reading the %d-byte header: %w", what, n, err)
	}
	h, err := parseHeader(raw, what)
	if err != nil {
		return nil, err
	}
	h.DataLen = fileSize - 8 - int64(n)
	if err := h.validate(what); err != nil {
		return nil, err
	}
	return h, nil
}

// parseHeader decodes the JSON header keeping the entry order and refusing duplicate names.
func parseHeader(raw []byte, what string) (*Header, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	bad := func(err error) error { return fmt.Errorf("%s: bad JSON header: %w", what, err) }
	if tok, err := dec.Token(); err != nil {
		return nil, bad(err)
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, bad(fmt.Errorf("want an object, got %v", tok))
	}
	h := &Header{byName: map[string]int{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad(err)
		}
		name := tok.(string) // object keys are always strings
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, bad(fmt.Errorf("entry %q: %w", name, err))
		}
		if name == "__metadata__" {
			if err := json.Unmarshal(val, &h.Metadata); err != nil {
				return nil, bad(fmt.Errorf("__metadata__ must map strings to strings: %w", err))
			}
			continue
		}
		if _, dup := h.byName[name]; dup {
			return nil, bad(fmt.Errorf("duplicate tensor %s", name))
		}
		var e struct {
			DType       *DType   `json:"dtype"`
			Shape       []int    `json:"shape"`
			DataOffsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(val, &e); err != nil { // unknown fields are ignored, as the Python library does
			return nil, bad(fmt.Errorf("tensor %s: %w", name, err))
		}
		if e.DType == nil || e.Shape == nil || len(e.DataOffsets) != 2 {
			return nil, bad(fmt.Errorf("tensor %s: needs dtype, shape and data_offsets [begin, end]", name))
		}
		if e.DataOffsets[0] > math.MaxInt64/2 || e.DataOffsets[1] > math.MaxInt64/2 {
			return nil, fmt.Errorf("%s: tensor %s: data_offsets %v out of range", what, name, e.DataOffsets)
		}
		h.byName[name] = len(h.Tensors)
		h.Tensors = append(h.Tensors, TensorInfo{Name: name, DType: *e.DType, Shape: e.Shape,
			Begin: int64(e.DataOffsets[0]), End: int64(e.DataOffsets[1]), layout: len(h.Tensors)})
	}
	if _, err := dec.Token(); err != nil {
		return nil, bad(err)
	}
	if rest := bytes.TrimRight(raw[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return nil, bad(fmt.Errorf("trailing bytes after the header object"))
	}
	return h, nil
}

// validate checks dtypes, shapes and offsets against the data section.
func (h *Header) validate(what string) error {
	for _, t := range h.Tensors {
		es, ok := dtypeSizes[t.DType]
		if !ok {
			return fmt.Errorf("%s: unsupported dtype %s for tensor %s", what, t.DType, t.Name)
		}
		n := int64(1)
		for _, d := range t.Shape {
			if d < 0 || (d > 0 && n > math.MaxInt64/8/int64(d)) {
				return fmt.Errorf("%s: tensor %s: invalid shape %v", what, t.Name, t.Shape)
			}
			n *= int64(d)
		}
		if t.End < t.Begin {
			return fmt.Errorf("%s: tensor %s: data_offsets [%d, %d] end before begin", what, t.Name, t.Begin, t.End)
		}
		if t.End-t.Begin != n*int64(es) {
			return fmt.Errorf("%s: tensor %s: data_offsets [%d, %d] span %d bytes, shape %v of %s needs %d",
				what, t.Name, t.Begin, t.End, t.End-t.Begin, t.Shape, t.DType, n*int64(es))
		}
		if t.End > h.DataLen {
			return fmt.Errorf("%s: truncated file: tensor %s ends at data byte %d, the file holds %d data bytes",
				what, t.Name, t.End, h.DataLen)
		}
	}
	byOff := h.dataOrder()
	for k := 1; k < len(byOff); k++ {
		a, b := h.Tensors[byOff[k-1]], h.Tensors[byOff[k]]
		if b.Begin < a.End {
			return fmt.Errorf("%s: tensors %s [%d, %d) and %s [%d, %d) overlap", what, a.Name, a.Begin, a.End, b.Name, b.Begin, b.End)
		}
	}
	return nil
}

// dataOrder returns tensor indices sorted by data offset.
func (h *Header) dataOrder() []int {
	idx := make([]int, len(h.Tensors))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ta, tb := h.Tensors[a], h.Tensors[b]
		if ta.Begin != tb.Begin {
			return int(min(max(ta.Begin-tb.Begin, -1), 1))
		}
		return int(min(max(ta.End-tb.End, -1), 1))
	})
	return idx
}

// DestFunc chooses where a tensor's values go: a slice of exactly NumElements() values, or nil to skip the
// tensor. It may return an error (e.g. an unexpected shape) to stop reading.
type DestFunc func(t TensorInfo) ([]float32, error)

// ReadData streams the data section of h from r (positioned just after the header), in offset order,
// decoding every tensor that dst asks for; it reads every byte once and stops at the end of the data
// section. A tensor dst asks for must have a decodable dtype.
func (h *Header) ReadData(r io.Reader, what string, dst DestFunc) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var pos int64
	chunk := make([]byte, 256<<10)
	for _, i := range h.dataOrder() {
		t := h.Tensors[i]
		out, err := dst(t)
		if err != nil {
			return err
		}
		if _, err := io.CopyN(io.Discard, br, t.Begin-pos); err != nil {
			return fmt.Errorf("%s: truncated file before tensor %s: %w", what, t.Name, err)
		}
		pos = t.Begin
		if out == nil {
			if _, err := io.CopyN(io.Discard, br, t.End-t.Begin); err != nil {
				return fmt.Errorf("%s: truncated file in tensor %s: %w", what, t.Name, err)
			}
			pos = t.End
			continue
		}
		if !decodable(t.DType) {
			return fmt.Errorf("%s: unsupported dtype %s for tensor %s (want F32, F16 or BF16)", what, t.DType, t.Name)
		}
		if int64(len(out)) != t.NumElements() {
			return fmt.Errorf("%s: tensor %s: destination holds %d values, tensor has %d", what, t.Name, len(out), t.NumElements())
		}
		es := dtypeSizes[t.DType]
		per := len(chunk) / es
		for k := 0; k < len(out); k += per {
			m := min(per, len(out)-k)
			b := chunk[:m*es]
			if _, err := io.ReadFull(br, b); err != nil {
				return fmt.Errorf("%s: truncated file in tensor %s: %w", what, t.Name, err)
			}
			decode(out[k:k+m], b, t.DType)
		}
		pos = t.End
	}
	return nil
}

func decode(out []float32, b []byte, d DType) {
	switch d {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = BF16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	}
}

// ReadSafetensorsFile reads a whole safetensors file into float32 tensors, in header order. Every tensor
// must have a decodable dtype.
func ReadSafetensorsFile(path string) ([]Tensor, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	h, err := ReadHeader(f, st.Size(), path)
	if err != nil {
		return nil, nil, err
	}
	out := make([]Tensor, len(h.Tensors))
	err = h.ReadData(f, path, func(t TensorInfo) ([]float32, error) {
		out[t.layout] = Tensor{Name: t.Name, Shape: slices.Clone(t.Shape), Data: make([]float32, t.NumElements())}
		return out[t.layout].Data, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, h.Metadata, nil
}

// F16ToF32 converts IEEE binary16 bits to float32 exactly (subnormals, infinities and NaN payloads kept).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	default:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	}
}

// BF16ToF32 converts bfloat16 bits to float32 (exact: bfloat16 is the top half of a float32).
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F32ToF16 rounds a float32 to IEEE binary16 bits, to nearest with ties to even; values beyond the range
// become ±Inf, tiny values become subnormals or ±0, NaN stays NaN (quiet).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint(14 - e)
		r := m >> shift
		rem, half := m&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // a carry into the exponent is right, up to Inf
	}
	return sign | uint16(r)
}

// F32ToBF16 rounds a float32 to bfloat16 bits, to nearest with ties to even (as PyTorch does); NaN stays
// NaN (quiet).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7f800000 == 0x7f800000 && b&0x7fffff != 0 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// errNotExist reports whether err is a missing-file error.
func errNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
