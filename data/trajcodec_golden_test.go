// trajcodec_golden_test.go: the wire format of a trajectory group pinned by golden files. A fixed,
// hand-written group (goldenGroup) is encoded and compared with testdata/group_v1.arrow (the EncodeGroup
// bytes, zstd) and testdata/group_v1.raw.arrow (the same stream written uncompressed), and the golden wire
// file must decode to the hand-written group, so any change of the format shows as a diff of these files.
// Rewrite them with `go test ./data -run TestGroupWireGolden -update`.

package data

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

const (
	goldenVocab   = 64
	goldenWire    = "testdata/group_v1.arrow"
	goldenWireRaw = "testdata/group_v1.raw.arrow"
)

// goldenGroup is a fixed group of two completions of one 4-token prompt over a 64-id vocabulary, with
// MoE expert ids (1 layer × top-2) and DSA selections (1 layer × k 2) over every position, reward parts,
// timings, teacher log-probabilities (trajectory 0 only), the teacher's renormalised log-probabilities over
// the kept sets (trajectory 1 only) and both finish reasons. Trajectory 0 (5 tokens, an inserted loss_mask-0 token, 3 kept ids) is
// encoded with CSR kept sets; trajectory 1 (3 tokens, 7 kept ids) with the kept-set bitmap.
func goldenGroup() *Group {
	const id = "rl-000007-002"
	prompt := []int32{1, 12, 40, 7}
	return &Group{GroupID: id, Trajectories: []Trajectory{
		{
			GroupID: id, PromptID: "12+7", Env: "math", PolicyVersion: 7, WorkerID: "w3",
			PromptTokens:     prompt,
			CompletionTokens: []int32{33, 17, 9, 50, 2},
			LossMask:         []uint8{1, 1, 0, 1, 1},
			LogpOld:          []float32{-0.25, -1.5, 0, -0.125, -0.5},
			TeacherLogp:      []float32{-0.5, -2, -0.25, -0.125, -1},
			KeptOffsets:      []int32{0, 1, 1, 1, 3, 3}, // {33}, whole vocabulary, whole, {21 50}, whole
			KeptIDs:          []int32{33, 21, 50},
			ExpertIDs:        []uint16{0, 3, 1, 2, 4, 5, 0, 7, 2, 6, 1, 3, 5, 7, 0, 1, 4, 6},
			MoELayers:        1, TopK: 2,
			DSATopK:   []int32{0, -1, 0, 1, 0, 2, 1, 3, 0, 4, 2, 5, 3, 6, 0, 7, 4, 8},
			DSALayers: 1, DSAK: 2,
			Reward:       1.125,
			RewardParts:  map[string]float32{"correct": 1, "format": 0.125},
			FinishReason: "stop",
			Timings:      map[string]float32{"decode_s": 0.5, "prefill_s": 0.125},
		},
		{
			GroupID: id, PromptID: "12+7", Env: "math", PolicyVersion: 7, WorkerID: "w3",
			PromptTokens:     prompt,
			CompletionTokens: []int32{5, 60, 61},
			LossMask:         []uint8{1, 1, 1},
			LogpOld:          []float32{-0.75, -2, -0.0625},
			KeptOffsets:      []int32{0, 2, 5, 7}, // {5 6}, {59 60 61}, {60 61}
			KeptIDs:          []int32{5, 6, 59, 60, 61, 60, 61},
			// the teacher renormalised over each kept set: (½ ½), (¼ ¼ ½), (⅛ ⅞)
			TeacherKeptOffsets: []int32{0, 2, 5, 7},
			TeacherKeptLogp:    []float32{-0.6931472, -0.6931472, -1.3862944, -1.3862944, -0.6931472, -2.0794415, -0.13353139},
			ExpertIDs:          []uint16{0, 3, 1, 2, 4, 5, 0, 7, 3, 6, 2, 5, 1, 4},
			MoELayers:          1, TopK: 2,
			DSATopK:   []int32{0, -1, 0, 1, 0, 2, 1, 3, 1, 4, 4, 5, 0, 6},
			DSALayers: 1, DSAK: 2,
			Reward:       0,
			RewardParts:  map[string]float32{"correct": 0, "format": 0},
			FinishReason: "length",
			Timings:      map[string]float32{"decode_s": 0.375, "prefill_s": 0.125},
		},
	}}
}

// uncompressed rewrites an encoded group stream without compression: the same schema message and the same
// record batch with its buffers stored as they are.
func uncompressed(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(b), ipc.WithAllocator(memory.NewGoAllocator()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(r.Schema()))
	for r.Next() {
		if err := w.Write(r.RecordBatch()); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGroupWireGolden pins the wire format of a group. What is compared, and why:
//   - the golden wire file (zstd, as a worker sends it) decodes to the hand-written group: bytes written by an
//     older build stay readable, and a change of meaning shows here;
//   - the uncompressed form of the group's encoding equals testdata/group_v1.raw.arrow byte for byte, and so
//     does the uncompressed form of the golden wire file: the schema message, its metadata, every column,
//     the kept-set representation chosen per row (CSR or bitmap) and every buffer are pinned, and the wire
//     file holds exactly this content. The uncompressed IPC stream is deterministic (builders and the
//     writer zero every padding byte, map keys are written sorted), whatever the zstd library's version;
//   - the EncodeGroup bytes themselves equal the golden wire file only for a given zstd encoder: its output
//     is deterministic for one version but may change with a dependency update, which is not a format
//     change (any zstd decoder reads both). A difference there when the uncompressed forms agree is logged,
//     not failed; -update rewrites the file.
func TestGroupWireGolden(t *testing.T) {
	g := goldenGroup()
	if useBitmap(&g.Trajectories[0], goldenVocab) || !useBitmap(&g.Trajectories[1], goldenVocab) {
		t.Fatal("the golden group no longer covers both kept-set encodings (trajectory 0 CSR, trajectory 1 bitmap)")
	}
	wire, err := EncodeGroup(g, goldenVocab)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := encodeGroup(g, goldenVocab, false)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := EncodeGroup(g, goldenVocab); !bytes.Equal(again, wire) {
		t.Fatal("EncodeGroup is not deterministic within one build")
	}
	if !bytes.Equal(uncompressed(t, wire), raw) {
		t.Fatal("the uncompressed form of EncodeGroup's stream differs from encodeGroup without compression")
	}
	if *update {
		for _, f := range []struct {
			path string
			b    []byte
		}{{goldenWire, wire}, {goldenWireRaw, raw}} {
			if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f.path, f.b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("rewrote %s (%d bytes) and %s (%d bytes)", goldenWire, len(wire), goldenWireRaw, len(raw))
	}
	goldWire, err := os.ReadFile(goldenWire)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	goldRaw, err := os.ReadFile(goldenWireRaw)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}

	back, err := DecodeGroup(goldWire, goldenVocab)
	if err != nil {
		t.Fatalf("decoding %s: %v", goldenWire, err)
	}
	if back.GroupID != g.GroupID || len(back.Trajectories) != len(g.Trajectories) {
		t.Fatalf("%s decodes to %d trajectories of group %q, want %d of %q", goldenWire, len(back.Trajectories), back.GroupID, len(g.Trajectories), g.GroupID)
	}
	for i := range g.Trajectories {
		want, got := g.Trajectories[i], back.Trajectories[i]
		normalize(&want)
		normalize(&got)
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: trajectory %d differs from the hand-written group:\n got %+v\nwant %+v", goldenWire, i, got, want)
		}
	}

	if !bytes.Equal(raw, goldRaw) {
		t.Errorf("the uncompressed encoding of the golden group (%d bytes) differs from %s (%d bytes), first at byte %d: "+
			"the wire format (or the golden group) changed; if on purpose, bump TrajSchemaVersion where old readers must refuse the new bytes, and rerun with -update",
			len(raw), goldenWireRaw, len(goldRaw), firstDiff(raw, goldRaw))
	}
	if u := uncompressed(t, goldWire); !bytes.Equal(u, goldRaw) {
		t.Errorf("%s does not hold the content of %s (uncompressed forms differ first at byte %d); rerun with -update", goldenWire, goldenWireRaw, firstDiff(u, goldRaw))
	}
	if !t.Failed() && !bytes.Equal(wire, goldWire) {
		t.Logf("EncodeGroup's bytes (%d) differ from %s (%d) only in the zstd frames (the uncompressed forms agree): "+
			"a zstd encoder change, not a format change; -update rewrites the file", len(wire), goldenWire, len(goldWire))
	}
}

// firstDiff returns the index of the first byte where a and b differ (the shorter length if one is a prefix).
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
