package data

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// sampleGroup builds a group of g completions of n tokens each over a vocabulary of vocab ids; kept sets
// hold keep ids per token and the sampled token (keep 0 = the whole vocabulary, stored as an empty range)
// and every third token keeps the whole vocabulary.
func sampleGroup(id string, g, n, vocab, keep, moeLayers, topK int) *Group {
	grp := &Group{GroupID: id}
	prompt := []int32{1, 7, 9, 11}
	for i := 0; i < g; i++ {
		t := Trajectory{GroupID: id, PromptID: "12+7", Env: "math", PolicyVersion: 3, WorkerID: "w1",
			PromptTokens: prompt, KeptOffsets: []int32{0}, MoELayers: moeLayers, TopK: topK,
			Reward: float32(i) * 0.5, RewardParts: map[string]float32{"correct": float32(i % 2), "format": 0.1},
			FinishReason: "stop", Timings: map[string]float32{"decode_s": 0.25}}
		for k := 0; k < n; k++ {
			t.CompletionTokens = append(t.CompletionTokens, int32((k*7+i)%vocab))
			mask := uint8(1)
			if k%5 == 4 { // an inserted (tool) token
				mask = 0
			}
			t.LossMask = append(t.LossMask, mask)
			t.LogpOld = append(t.LogpOld, -float32(k)*0.01-float32(i))
			if keep > 0 && k%3 != 2 {
				for j := 0; j < keep; j++ {
					t.KeptIDs = append(t.KeptIDs, int32((j*5+k)%vocab))
				}
				t.KeptIDs = append(t.KeptIDs, t.CompletionTokens[k]) // the sampled token is in its kept set
				s := t.KeptIDs[t.KeptOffsets[k]:]
				sortUnique(&s)
				t.KeptIDs = append(t.KeptIDs[:t.KeptOffsets[k]], s...)
			}
			t.KeptOffsets = append(t.KeptOffsets, int32(len(t.KeptIDs)))
		}
		for p := 0; p < (len(prompt)+n)*moeLayers*topK; p++ {
			t.ExpertIDs = append(t.ExpertIDs, uint16(p%8))
		}
		grp.Trajectories = append(grp.Trajectories, t)
	}
	return grp
}

// scoreKept gives every trajectory of g teacher log-probabilities and, at each loss token, a renormalised
// teacher distribution over its kept set (the whole vocabulary where the set is empty): p_j ∝ j+1.
func scoreKept(g *Group, vocab int) {
	for i := range g.Trajectories {
		tr := &g.Trajectories[i]
		tr.TeacherKeptOffsets = []int32{0}
		for k := range tr.CompletionTokens {
			tr.TeacherLogp = append(tr.TeacherLogp, -0.5-float32(k%7)*0.25)
			size := int(tr.KeptOffsets[k+1] - tr.KeptOffsets[k])
			if size == 0 {
				size = vocab
			}
			if tr.LossMask[k] == 0 {
				size = 0
			}
			z := float64(size*(size+1)) / 2
			for j := range size {
				tr.TeacherKeptLogp = append(tr.TeacherKeptLogp, float32(math.Log(float64(j+1)/z)))
			}
			tr.TeacherKeptOffsets = append(tr.TeacherKeptOffsets, int32(len(tr.TeacherKeptLogp)))
		}
	}
}

func sortUnique(s *[]int32) {
	m := map[int32]bool{}
	var out []int32
	for _, v := range *s {
		if !m[v] {
			m[v] = true
			out = append(out, v)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	*s = out
}

func TestTrajCodecRoundTrip(t *testing.T) {
	cases := []struct {
		name              string
		g, n, vocab, keep int
		moe, k            int
		wantBitmap        bool
		teacher           bool // scored for the exact KL: teacher_kept_* over each set (scoreKept)
	}{
		{"whole-vocabulary sets (CSR)", 8, 100, 272, 0, 3, 2, false, false},
		{"top-k 50 sets (bitmap smaller)", 8, 100, 272, 50, 3, 2, true, false},
		{"top-k 3 sets (CSR smaller)", 4, 30, 272, 3, 3, 2, false, false},
		{"dense model, no experts", 2, 10, 300, 20, 0, 0, true, false},
		{"empty completions", 2, 0, 272, 0, 1, 2, false, false},
		{"teacher over top-k 50 sets and the whole vocabulary", 4, 40, 272, 50, 3, 2, true, true},
		{"teacher over the whole vocabulary", 2, 20, 300, 0, 0, 0, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := sampleGroup("rl-000001-003", c.g, c.n, c.vocab, c.keep, c.moe, c.k)
			if c.teacher {
				scoreKept(g, c.vocab)
			}
			if got := useBitmap(&g.Trajectories[0], c.vocab); got != c.wantBitmap {
				t.Fatalf("bitmap chosen = %v, want %v", got, c.wantBitmap)
			}
			b, err := EncodeGroup(g, c.vocab)
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeGroup(b, c.vocab)
			if err != nil {
				t.Fatal(err)
			}
			if len(back.Trajectories) != len(g.Trajectories) || back.GroupID != g.GroupID {
				t.Fatalf("decoded %d rows of %s, want %d of %s", len(back.Trajectories), back.GroupID, len(g.Trajectories), g.GroupID)
			}
			for i := range g.Trajectories {
				want, got := g.Trajectories[i], back.Trajectories[i]
				normalize(&want)
				normalize(&got)
				if !reflect.DeepEqual(want, got) {
					t.Errorf("row %d differs after the round trip:\n got %+v\nwant %+v", i, got, want)
				}
			}
		})
	}
}

// normalize maps nil and empty slices to nil so that DeepEqual compares contents.
func normalize(t *Trajectory) {
	if len(t.KeptIDs) == 0 {
		t.KeptIDs = nil
	}
	if len(t.ExpertIDs) == 0 {
		t.ExpertIDs = nil
	}
	if len(t.CompletionTokens) == 0 {
		t.CompletionTokens, t.LossMask, t.LogpOld = nil, nil, nil
	}
}

// TestTrajCodecSize: a realistic group (G=8, 100-token completions, 3 MoE layers × top-2, top-k 50 kept
// sets) compresses well below the 1 MiB default payload, and the bitmap beats CSR for it.
func TestTrajCodecSize(t *testing.T) {
	g := sampleGroup("g", 8, 100, 272, 50, 3, 2)
	b, err := EncodeGroup(g, 272)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 64<<10 {
		t.Errorf("encoded group is %d bytes, want < 64 KiB", len(b))
	}
	raw := 0
	for _, tr := range g.Trajectories {
		raw += 4*len(tr.KeptIDs) + 4*len(tr.KeptOffsets)
	}
	if len(b) >= raw {
		t.Errorf("encoded group %d bytes is not smaller than its raw CSR kept sets %d bytes", len(b), raw)
	}
}

func TestTrajCodecEncodeErrors(t *testing.T) {
	good := sampleGroup("g", 2, 5, 272, 3, 1, 2)
	mismatch := sampleGroup("g", 2, 5, 272, 3, 1, 2)
	mismatch.Trajectories[1].GroupID = "other"
	badTok := sampleGroup("g", 2, 5, 272, 3, 1, 2)
	badTok.Trajectories[0].CompletionTokens[2] = 999
	badKept := sampleGroup("g", 2, 5, 272, 3, 1, 2)
	badKept.Trajectories[0].KeptIDs[0] = 300
	cases := []struct {
		name  string
		g     *Group
		vocab int
		want  string
	}{
		{"no id", &Group{}, 272, "without an id"},
		{"no trajectories", &Group{GroupID: "g"}, 272, "0 trajectories"},
		{"zero vocabulary", good, 0, "vocabulary size 0"},
		{"row of another group", mismatch, 272, `group id "other"`},
		{"token outside the vocabulary", badTok, 272, "outside vocabulary"},
		{"kept id outside the vocabulary", badKept, 272, "kept id 300"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := EncodeGroup(c.g, c.vocab)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// otherStream writes an Arrow stream with the given schema metadata and a single int32 column.
func otherStream(t *testing.T, md map[string]string, batches int) []byte {
	t.Helper()
	m := arrow.MetadataFrom(md)
	sc := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int32}}, &m)
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(sc))
	for i := 0; i < batches; i++ {
		b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
		b.Field(0).(*array.Int32Builder).Append(1)
		rec := b.NewRecordBatch()
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		b.Release()
	}
	w.Close()
	return buf.Bytes()
}

// twoBatches encodes a valid group stream with its record batch written twice.
func twoBatches(t *testing.T) []byte {
	t.Helper()
	g := sampleGroup("g2", 2, 5, 272, 0, 1, 2)
	sc := schemaFor(272)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for i := range g.Trajectories {
		appendRow(b, &g.Trajectories[i], 272)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(sc), ipc.WithZstd())
	w.Write(rec)
	w.Write(rec)
	w.Close()
	return buf.Bytes()
}

func TestTrajCodecMalformed(t *testing.T) {
	good, err := EncodeGroup(sampleGroup("g1", 2, 5, 272, 3, 1, 2), 272)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		b     []byte
		vocab int
		want  string
	}{
		{"empty", nil, 272, "not a trajectory stream"},
		{"JSON", []byte(`{"group_id":"g1"}`), 272, ""},
		{"truncated", good[:len(good)/2], 272, ""},
		{"other schema", otherStream(t, map[string]string{"a": "b"}, 1), 272, "schema message differs"},
		{"other columns", otherStream(t, map[string]string{metaSchema: TrajSchemaVersion, metaVocab: "272"}, 1), 272, "schema message differs"},
		{"vocabulary mismatch", good, 300, "vocabulary size 300"},
		{"two record batches", twoBatches(t), 272, "more than one record batch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeGroup(c.b, c.vocab)
			if err == nil {
				t.Fatal("malformed input decoded without an error")
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
	// every single-byte corruption either fails cleanly or decodes to a group that passes Validate
	for i := 0; i < len(good); i += 3 {
		bad := bytes.Clone(good)
		bad[i] ^= 0x5a
		g, err := DecodeGroup(bad, 272)
		if err == nil {
			for _, tr := range g.Trajectories {
				if verr := tr.Validate(272); verr != nil {
					t.Fatalf("byte %d flipped: decoded an invalid trajectory: %v", i, verr)
				}
			}
		}
	}
}

// TestTrajCodecMutations: random byte, int32 and int64 overwrites (the values hostile lengths take) never
// crash, hang or exhaust memory; a stream that still decodes passes Validate.
func TestTrajCodecMutations(t *testing.T) {
	good, err := EncodeGroup(sampleGroup("a", 2, 5, 272, 3, 1, 2), 272)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	decoded := 0
	for it := 0; it < 1500; it++ {
		bad := bytes.Clone(good)
		for k := 0; k < 1+r.IntN(3); k++ {
			switch r.IntN(3) {
			case 0:
				bad[r.IntN(len(bad))] = byte(r.IntN(256))
			case 1:
				binary.LittleEndian.PutUint32(bad[r.IntN(len(bad)-4):], []uint32{0x7fffffff, 0xffffffff, 0x80000000, 1 << 20, 1 << 16}[r.IntN(5)])
			case 2:
				binary.LittleEndian.PutUint64(bad[r.IntN(len(bad)-8):], []uint64{1 << 40, 1<<63 - 1, 1 << 24}[r.IntN(3)])
			}
		}
		t0 := time.Now()
		g, err := DecodeGroup(bad, 272)
		// a hang guard, not a speed check: generous, so a loaded CI machine does not trip it
		if d := time.Since(t0); d > 30*time.Second {
			t.Fatalf("mutation %d took %v to decode", it, d)
		}
		if err == nil {
			decoded++
			for _, tr := range g.Trajectories {
				if verr := tr.Validate(272); verr != nil {
					t.Fatalf("mutation %d: decoded an invalid trajectory: %v", it, verr)
				}
			}
		}
	}
	t.Logf("%d of 1500 mutated streams still decoded (to valid groups)", decoded)
}

func FuzzDecodeGroup(f *testing.F) {
	for _, g := range []*Group{sampleGroup("a", 2, 5, 272, 3, 1, 2), sampleGroup("b", 3, 7, 272, 60, 2, 2)} {
		b, err := EncodeGroup(g, 272)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := DecodeGroup(b, 272)
		if err != nil {
			return
		}
		for _, tr := range g.Trajectories {
			if err := tr.Validate(272); err != nil {
				t.Fatalf("decoded an invalid trajectory: %v", err)
			}
		}
	})
}
