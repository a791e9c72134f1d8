// trajcodec.go: the trajectory record's wire format (architecture.md, "Trajectory record"). One group is one
// Arrow IPC stream holding exactly one record batch (one row per completion), its buffers compressed with
// zstd. The kept set (the sampling mask) of each completion is stored either as CSR ids (kept_offsets +
// kept_ids) or, when that is smaller, as one bitmap over the vocabulary per token (kept_bitmap, ceil(V/8)
// bytes per token, bit i of byte i/8 = id i, LSB first); the whole vocabulary (an empty CSR range) is a full
// bitmap. The DeepSeek Sparse Attention selections (dsa_topk, Keep Selection) are one int32 list per
// completion, empty when not recorded, with their strides dsa_layers and dsa_k. Decoding never trusts the
// bytes: the schema must match field by field, every column must hold one value per row and every list
// its own values (the codec's checks, about the encoding), and the decoded group must pass Group.Validate
// (every check of the record itself: one group id, lengths, ranges, kept sets; the codec repeats none of
// them). Because the Arrow reader sizes allocations from counts inside the message, hostile bytes could
// exhaust memory (a fatal error, not a panic): the schema message must equal, byte for byte, the one this
// package writes for the vocabulary, every allocation goes through a capped allocator, and any panic inside
// the reader becomes an error.

package data

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TrajSchemaVersion names the trajectory schema in the stream's metadata ("sparrow.schema").
const TrajSchemaVersion = "trajectory/4" // 2: dsa_topk, dsa_layers, dsa_k; 3: teacher_logp; 4: teacher_kept_offsets, teacher_kept_logp

// Metadata keys of an encoded group.
const (
	metaSchema = "sparrow.schema"
	metaVocab  = "sparrow.vocab_size"
)

// Decoding limits: rows per group and bytes allocated while decoding one group.
const (
	MaxGroupRows = 1 << 14
	// a group may decode to at most 32× its encoded size plus 4 MiB (zstd on token ids and bitmaps gains
	// about 3-10×), and never more than 512 MiB
	decodeMemoryRatio = 32
	decodeMemorySlack = 4 << 20
	decodeMemoryMax   = 512 << 20
)

var (
	listI32  = arrow.ListOf(arrow.PrimitiveTypes.Int32)
	listU8   = arrow.ListOf(arrow.PrimitiveTypes.Uint8)
	listF32  = arrow.ListOf(arrow.PrimitiveTypes.Float32)
	listU16  = arrow.ListOf(arrow.PrimitiveTypes.Uint16)
	mapStrF  = arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Float32)
	trajCols = []arrow.Field{
		{Name: "group_id", Type: arrow.BinaryTypes.String},
		{Name: "prompt_id", Type: arrow.BinaryTypes.String},
		{Name: "env", Type: arrow.BinaryTypes.String},
		{Name: "policy_version", Type: arrow.PrimitiveTypes.Int64},
		{Name: "worker_id", Type: arrow.BinaryTypes.String},
		{Name: "prompt_tokens", Type: listI32},
		{Name: "completion_tokens", Type: listI32},
		{Name: "loss_mask", Type: listU8},
		{Name: "logp_old", Type: listF32},
		{Name: "kept_offsets", Type: listI32, Nullable: true},
		{Name: "kept_ids", Type: listI32, Nullable: true},
		{Name: "kept_bitmap", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "expert_ids", Type: listU16},
		{Name: "moe_layers", Type: arrow.PrimitiveTypes.Int32},
		{Name: "top_k", Type: arrow.PrimitiveTypes.Int32},
		{Name: "dsa_topk", Type: listI32},
		{Name: "dsa_layers", Type: arrow.PrimitiveTypes.Int32},
		{Name: "dsa_k", Type: arrow.PrimitiveTypes.Int32},
		{Name: "reward", Type: arrow.PrimitiveTypes.Float32},
		{Name: "reward_parts", Type: mapStrF},
		{Name: "finish_reason", Type: arrow.BinaryTypes.String},
		{Name: "timings", Type: mapStrF},
		{Name: "teacher_logp", Type: listF32}, // distillation: the family's teacher's log-probabilities (empty: not scored)
		// exact-KL distillation: the teacher's log-probabilities renormalised over each token's kept set (CSR;
		// both empty: not scored)
		{Name: "teacher_kept_offsets", Type: listI32},
		{Name: "teacher_kept_logp", Type: listF32},
	}
)

// column indexes
const (
	cGroup = iota
	cPrompt
	cEnv
	cVersion
	cWorker
	cPromptTok
	cCompl
	cLossMask
	cLogp
	cKeptOff
	cKeptIDs
	cKeptBitmap
	cExperts
	cMoELayers
	cTopK
	cDSATopK
	cDSALayers
	cDSAK
	cReward
	cParts
	cFinish
	cTimings
	cTeacherLogp
	cTeacherKeptOff
	cTeacherKeptLogp
	nCols
)

// TrajSchema returns the Arrow schema of an encoded group (without its per-message metadata).
func TrajSchema() *arrow.Schema { return arrow.NewSchema(trajCols, nil) }

// bitmapBytes is the size of one token's kept-set bitmap.
func bitmapBytes(vocab int) int { return (vocab + 7) / 8 }

// useBitmap reports whether the bitmap encoding of a trajectory's kept sets is smaller than CSR.
func useBitmap(t *Trajectory, vocab int) bool {
	n := len(t.CompletionTokens)
	csr := 4 * (n + 1 + len(t.KeptIDs))
	return n > 0 && n*bitmapBytes(vocab) < csr
}

// EncodeGroup encodes a group as an Arrow IPC stream (one record batch, zstd). vocab is the vocabulary size
// the token ids and kept sets refer to; the group must pass Group.Validate(vocab) and hold 1..MaxGroupRows
// trajectories.
func EncodeGroup(g *Group, vocab int) ([]byte, error) { return encodeGroup(g, vocab, true) }

// encodeGroup is EncodeGroup, its buffers compressed with zstd or not (an uncompressed stream, byte for byte
// deterministic whatever the compressor's version, is what the golden test compares).
func encodeGroup(g *Group, vocab int, compress bool) ([]byte, error) {
	if err := g.Validate(vocab); err != nil {
		return nil, fmt.Errorf("trajcodec: encode: %w", err)
	}
	if len(g.Trajectories) == 0 || len(g.Trajectories) > MaxGroupRows {
		return nil, fmt.Errorf("trajcodec: encode group %s: %d trajectories, want 1..%d", g.GroupID, len(g.Trajectories), MaxGroupRows)
	}
	schema := schemaFor(vocab)
	mem := memory.DefaultAllocator
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for i := range g.Trajectories {
		appendRow(b, &g.Trajectories[i], vocab)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	opts := []ipc.Option{ipc.WithSchema(schema), ipc.WithAllocator(mem)}
	if compress {
		opts = append(opts, ipc.WithZstd())
	}
	w := ipc.NewWriter(&buf, opts...)
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("trajcodec: encode group %s: %w", g.GroupID, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("trajcodec: encode group %s: %w", g.GroupID, err)
	}
	return buf.Bytes(), nil
}

func appendI32List(b array.Builder, v []int32) {
	lb := b.(*array.ListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Int32Builder).AppendValues(v, nil)
}

func appendMap(b array.Builder, m map[string]float32) {
	mb := b.(*array.MapBuilder)
	mb.Append(true)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	kb, ib := mb.KeyBuilder().(*array.StringBuilder), mb.ItemBuilder().(*array.Float32Builder)
	for _, k := range keys {
		kb.Append(k)
		ib.Append(m[k])
	}
}

func appendRow(b *array.RecordBuilder, t *Trajectory, vocab int) {
	b.Field(cGroup).(*array.StringBuilder).Append(t.GroupID)
	b.Field(cPrompt).(*array.StringBuilder).Append(t.PromptID)
	b.Field(cEnv).(*array.StringBuilder).Append(t.Env)
	b.Field(cVersion).(*array.Int64Builder).Append(t.PolicyVersion)
	b.Field(cWorker).(*array.StringBuilder).Append(t.WorkerID)
	appendI32List(b.Field(cPromptTok), t.PromptTokens)
	appendI32List(b.Field(cCompl), t.CompletionTokens)
	lm := b.Field(cLossMask).(*array.ListBuilder)
	lm.Append(true)
	lm.ValueBuilder().(*array.Uint8Builder).AppendValues(t.LossMask, nil)
	lp := b.Field(cLogp).(*array.ListBuilder)
	lp.Append(true)
	lp.ValueBuilder().(*array.Float32Builder).AppendValues(t.LogpOld, nil)
	if useBitmap(t, vocab) {
		b.Field(cKeptOff).AppendNull()
		b.Field(cKeptIDs).AppendNull()
		n, w := len(t.CompletionTokens), bitmapBytes(vocab)
		bm := make([]byte, n*w)
		for i := 0; i < n; i++ {
			row := bm[i*w : (i+1)*w]
			ids := t.KeptIDs[t.KeptOffsets[i]:t.KeptOffsets[i+1]]
			if len(ids) == 0 { // the whole vocabulary
				for v := 0; v < vocab; v++ {
					row[v/8] |= 1 << (v % 8)
				}
				continue
			}
			for _, id := range ids {
				row[id/8] |= 1 << (id % 8)
			}
		}
		b.Field(cKeptBitmap).(*array.BinaryBuilder).Append(bm)
	} else {
		appendI32List(b.Field(cKeptOff), t.KeptOffsets)
		appendI32List(b.Field(cKeptIDs), t.KeptIDs)
		b.Field(cKeptBitmap).AppendNull()
	}
	ex := b.Field(cExperts).(*array.ListBuilder)
	ex.Append(true)
	ex.ValueBuilder().(*array.Uint16Builder).AppendValues(t.ExpertIDs, nil)
	b.Field(cMoELayers).(*array.Int32Builder).Append(int32(t.MoELayers))
	b.Field(cTopK).(*array.Int32Builder).Append(int32(t.TopK))
	appendI32List(b.Field(cDSATopK), t.DSATopK)
	b.Field(cDSALayers).(*array.Int32Builder).Append(int32(t.DSALayers))
	b.Field(cDSAK).(*array.Int32Builder).Append(int32(t.DSAK))
	b.Field(cReward).(*array.Float32Builder).Append(t.Reward)
	appendMap(b.Field(cParts), t.RewardParts)
	b.Field(cFinish).(*array.StringBuilder).Append(t.FinishReason)
	appendMap(b.Field(cTimings), t.Timings)
	tl := b.Field(cTeacherLogp).(*array.ListBuilder)
	tl.Append(true)
	tl.ValueBuilder().(*array.Float32Builder).AppendValues(t.TeacherLogp, nil)
	appendI32List(b.Field(cTeacherKeptOff), t.TeacherKeptOffsets)
	tk := b.Field(cTeacherKeptLogp).(*array.ListBuilder)
	tk.Append(true)
	tk.ValueBuilder().(*array.Float32Builder).AppendValues(t.TeacherKeptLogp, nil)
}

func schemaFor(vocab int) *arrow.Schema {
	md := arrow.NewMetadata([]string{metaSchema, metaVocab}, []string{TrajSchemaVersion, strconv.Itoa(vocab)})
	return arrow.NewSchema(trajCols, &md)
}

var schemaPrefixes sync.Map // vocab → []byte

// schemaPrefix returns the bytes of the schema message that starts every encoded group of a vocabulary.
func schemaPrefix(vocab int) []byte {
	if p, ok := schemaPrefixes.Load(vocab); ok {
		return p.([]byte)
	}
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schemaFor(vocab)), ipc.WithZstd())
	if err := w.Close(); err != nil { // an empty stream: the schema message and the end-of-stream marker
		panic(fmt.Sprintf("trajcodec: writing the schema: %v", err))
	}
	p := bytes.TrimSuffix(buf.Bytes(), []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	schemaPrefixes.Store(vocab, p)
	return p
}

// cappedAllocator refuses (by panicking, which DecodeGroup recovers) to allocate more than limit bytes in all.
type cappedAllocator struct {
	mem         memory.Allocator
	used, limit int
}

func (a *cappedAllocator) take(n int) {
	if n < 0 || a.used+n > a.limit {
		panic(fmt.Sprintf("allocation of %d bytes exceeds the decode limit (%d of %d used)", n, a.used, a.limit))
	}
	a.used += n
}

func (a *cappedAllocator) Allocate(size int) []byte { a.take(size); return a.mem.Allocate(size) }
func (a *cappedAllocator) Reallocate(size int, b []byte) []byte {
	a.take(size - len(b))
	return a.mem.Reallocate(size, b)
}
func (a *cappedAllocator) Free(b []byte) { a.used -= len(b); a.mem.Free(b) }

// DecodeGroup decodes an encoded group and checks it against the learner's vocabulary size: the encoding
// here, the record with Group.Validate.
func DecodeGroup(b []byte, vocab int) (g *Group, err error) {
	defer func() {
		if r := recover(); r != nil {
			g, err = nil, fmt.Errorf("trajcodec: malformed stream: %v", r)
		}
	}()
	if vocab <= 0 {
		return nil, fmt.Errorf("trajcodec: decode: vocabulary size %d", vocab)
	}
	if !bytes.HasPrefix(b, schemaPrefix(vocab)) {
		return nil, fmt.Errorf("trajcodec: not a trajectory stream of schema %s for vocabulary size %d (the schema message differs)", TrajSchemaVersion, vocab)
	}
	mem := &cappedAllocator{mem: memory.NewGoAllocator(), limit: min(decodeMemoryRatio*len(b)+decodeMemorySlack, decodeMemoryMax)}
	r, err := ipc.NewReader(bytes.NewReader(b), ipc.WithAllocator(mem),
		ipc.WithBodySizeLimit(int64(len(b))), ipc.WithMetadataSizeLimit(int64(len(b))))
	if err != nil {
		return nil, fmt.Errorf("trajcodec: not an Arrow IPC stream: %w", err)
	}
	defer r.Release()
	if !r.Next() {
		if err := r.Err(); err != nil {
			return nil, fmt.Errorf("trajcodec: %w", err)
		}
		return nil, errors.New("trajcodec: no record batch")
	}
	rec := r.RecordBatch()
	rows := rec.NumRows()
	if rows < 1 || rows > MaxGroupRows {
		return nil, fmt.Errorf("trajcodec: %d rows, want 1..%d", rows, MaxGroupRows)
	}
	for c := 0; c < nCols; c++ {
		if int64(rec.Column(c).Len()) != rows {
			return nil, fmt.Errorf("trajcodec: column %s has %d values for %d rows", trajCols[c].Name, rec.Column(c).Len(), rows)
		}
	}
	// the group is the first row's; Group.Validate holds every row to it (and refuses an empty one)
	gid := rec.Column(cGroup).(*array.String).Value(0)
	g = &Group{GroupID: gid, Trajectories: make([]Trajectory, int(rows))}
	for i := range g.Trajectories {
		if err := readRow(rec, i, &g.Trajectories[i], vocab); err != nil {
			return nil, fmt.Errorf("trajcodec: group %q trajectory %d: %w", gid, i, err)
		}
	}
	if r.Next() {
		return nil, fmt.Errorf("trajcodec: group %q: more than one record batch", gid)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("trajcodec: group %q: %w", gid, err)
	}
	if err := g.Validate(vocab); err != nil {
		return nil, fmt.Errorf("trajcodec: decode: %w", err)
	}
	return g, nil
}

func listRange(a arrow.Array, i int) (int, int, error) {
	l := a.(*array.List)
	if l.IsNull(i) {
		return 0, 0, fmt.Errorf("null list")
	}
	s, e := l.ValueOffsets(i)
	if s < 0 || e < s || int(e) > l.ListValues().Len() {
		return 0, 0, fmt.Errorf("list offsets [%d, %d) outside %d values", s, e, l.ListValues().Len())
	}
	return int(s), int(e), nil
}

func readI32(rec arrow.RecordBatch, col, i int) ([]int32, error) {
	s, e, err := listRange(rec.Column(col), i)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", trajCols[col].Name, err)
	}
	v := rec.Column(col).(*array.List).ListValues().(*array.Int32).Int32Values()
	return slices.Clone(v[s:e]), nil
}

func readMap(rec arrow.RecordBatch, col, i int) (map[string]float32, error) {
	m := rec.Column(col).(*array.Map)
	if m.IsNull(i) {
		return nil, fmt.Errorf("%s: null", trajCols[col].Name)
	}
	s, e := m.ValueOffsets(i)
	keys, items := m.Keys().(*array.String), m.Items().(*array.Float32)
	if s < 0 || e < s || int(e) > keys.Len() || int(e) > items.Len() {
		return nil, fmt.Errorf("%s: offsets [%d, %d) outside %d entries", trajCols[col].Name, s, e, keys.Len())
	}
	out := make(map[string]float32, e-s)
	for j := int(s); j < int(e); j++ {
		out[keys.Value(j)] = items.Value(j)
	}
	return out, nil
}

// readRow reads row i into t, checking only the encoding (null lists, list offsets, the bitmap's size);
// DecodeGroup checks the record itself with Group.Validate.
func readRow(rec arrow.RecordBatch, i int, t *Trajectory, vocab int) error {
	str := func(c int) string { return rec.Column(c).(*array.String).Value(i) }
	t.GroupID, t.PromptID, t.Env, t.WorkerID = str(cGroup), str(cPrompt), str(cEnv), str(cWorker)
	t.PolicyVersion = rec.Column(cVersion).(*array.Int64).Value(i)
	var err error
	if t.PromptTokens, err = readI32(rec, cPromptTok, i); err != nil {
		return err
	}
	if t.CompletionTokens, err = readI32(rec, cCompl, i); err != nil {
		return err
	}
	s, e, err := listRange(rec.Column(cLossMask), i)
	if err != nil {
		return fmt.Errorf("loss_mask: %w", err)
	}
	t.LossMask = slices.Clone(rec.Column(cLossMask).(*array.List).ListValues().(*array.Uint8).Uint8Values()[s:e])
	if s, e, err = listRange(rec.Column(cLogp), i); err != nil {
		return fmt.Errorf("logp_old: %w", err)
	}
	t.LogpOld = slices.Clone(rec.Column(cLogp).(*array.List).ListValues().(*array.Float32).Float32Values()[s:e])
	if s, e, err = listRange(rec.Column(cTeacherLogp), i); err != nil {
		return fmt.Errorf("teacher_logp: %w", err)
	}
	if e > s {
		t.TeacherLogp = slices.Clone(rec.Column(cTeacherLogp).(*array.List).ListValues().(*array.Float32).Float32Values()[s:e])
	}
	if t.TeacherKeptOffsets, err = readI32(rec, cTeacherKeptOff, i); err != nil {
		return err
	}
	if len(t.TeacherKeptOffsets) == 0 {
		t.TeacherKeptOffsets = nil
	}
	if s, e, err = listRange(rec.Column(cTeacherKeptLogp), i); err != nil {
		return fmt.Errorf("teacher_kept_logp: %w", err)
	}
	if e > s {
		t.TeacherKeptLogp = slices.Clone(rec.Column(cTeacherKeptLogp).(*array.List).ListValues().(*array.Float32).Float32Values()[s:e])
	}
	n := len(t.CompletionTokens)
	if bmCol := rec.Column(cKeptBitmap).(*array.Binary); !bmCol.IsNull(i) {
		bm, w := bmCol.Value(i), bitmapBytes(vocab)
		if len(bm) != n*w {
			return fmt.Errorf("kept_bitmap: %d bytes, want %d tokens × %d", len(bm), n, w)
		}
		t.KeptOffsets = make([]int32, 1, n+1)
		for k := 0; k < n; k++ {
			row := bm[k*w : (k+1)*w]
			start := len(t.KeptIDs)
			for j, by := range row {
				for ; by != 0; by &= by - 1 {
					if v := j*8 + bits.TrailingZeros8(by); v < vocab {
						t.KeptIDs = append(t.KeptIDs, int32(v))
					}
				}
			}
			if len(t.KeptIDs)-start == vocab { // a full bitmap is the whole vocabulary: an empty range
				t.KeptIDs = t.KeptIDs[:start]
			}
			t.KeptOffsets = append(t.KeptOffsets, int32(len(t.KeptIDs)))
		}
	} else {
		if t.KeptOffsets, err = readI32(rec, cKeptOff, i); err != nil {
			return err
		}
		if t.KeptIDs, err = readI32(rec, cKeptIDs, i); err != nil {
			return err
		}
	}
	if s, e, err = listRange(rec.Column(cExperts), i); err != nil {
		return fmt.Errorf("expert_ids: %w", err)
	}
	if e > s {
		t.ExpertIDs = slices.Clone(rec.Column(cExperts).(*array.List).ListValues().(*array.Uint16).Uint16Values()[s:e])
	}
	t.MoELayers = int(rec.Column(cMoELayers).(*array.Int32).Value(i))
	t.TopK = int(rec.Column(cTopK).(*array.Int32).Value(i))
	if t.DSATopK, err = readI32(rec, cDSATopK, i); err != nil {
		return err
	}
	if len(t.DSATopK) == 0 {
		t.DSATopK = nil
	}
	t.DSALayers = int(rec.Column(cDSALayers).(*array.Int32).Value(i))
	t.DSAK = int(rec.Column(cDSAK).(*array.Int32).Value(i))
	t.Reward = rec.Column(cReward).(*array.Float32).Value(i)
	if t.RewardParts, err = readMap(rec, cParts, i); err != nil {
		return err
	}
	t.FinishReason = str(cFinish)
	if t.Timings, err = readMap(rec, cTimings, i); err != nil {
		return err
	}
	return nil
}
