package data

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// withSelections adds recorded DSA selections to every trajectory of g: per position p and layer, k key
// positions in [0, p] ascending (all of them, padded with −1, when p+1 ≤ k), drawn from a seeded generator.
func withSelections(g *Group, layers, k int, seed uint64) *Group {
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range g.Trajectories {
		t := &g.Trajectories[i]
		t.DSALayers, t.DSAK, t.DSATopK = layers, k, nil
		for p := 0; p < len(t.PromptTokens)+len(t.CompletionTokens); p++ {
			for l := 0; l < layers; l++ {
				row := make([]int32, k)
				if p+1 <= k {
					for j := range row {
						row[j] = int32(j)
						if j > p {
							row[j] = -1
						}
					}
				} else {
					perm := r.Perm(p + 1)[:k]
					for j := range row {
						row[j] = int32(perm[j])
					}
					slices.Sort(row)
				}
				t.DSATopK = append(t.DSATopK, row...)
			}
		}
	}
	return g
}

// TestTrajCodecDSARoundTrip: recorded DSA selections (Keep Selection) survive the Arrow codec exactly, next to
// expert ids and kept sets, and a trajectory without them decodes without them.
func TestTrajCodecDSARoundTrip(t *testing.T) {
	cases := []struct {
		name        string
		g           *Group
		layers, k   int
		wantEntries int // per trajectory
	}{
		{"2 layers × k 4, MoE, top-k kept sets", withSelections(sampleGroup("rl-000001-000", 4, 12, 272, 20, 1, 2), 2, 4, 1), 2, 4, (4 + 12) * 2 * 4},
		{"4 layers × k 16, dense model", withSelections(sampleGroup("rl-000001-001", 8, 40, 272, 0, 0, 0), 4, 16, 2), 4, 16, (4 + 40) * 4 * 16},
		{"empty completion", withSelections(sampleGroup("rl-000001-002", 2, 0, 272, 0, 1, 2), 3, 2, 3), 3, 2, 4 * 3 * 2},
		{"not recorded", sampleGroup("rl-000001-003", 2, 6, 272, 3, 1, 2), 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, tr := range c.g.Trajectories {
				if len(tr.DSATopK) != c.wantEntries {
					t.Fatalf("fixture has %d dsa_topk entries, want %d", len(tr.DSATopK), c.wantEntries)
				}
			}
			b, err := EncodeGroup(c.g, 272)
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeGroup(b, 272)
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.g.Trajectories {
				want, got := c.g.Trajectories[i], back.Trajectories[i]
				normalize(&want)
				normalize(&got)
				if got.DSALayers != c.layers || got.DSAK != c.k {
					t.Fatalf("row %d: strides %d × %d after the round trip, want %d × %d", i, got.DSALayers, got.DSAK, c.layers, c.k)
				}
				if !reflect.DeepEqual(want, got) {
					t.Errorf("row %d differs after the round trip:\n got %+v\nwant %+v", i, got, want)
				}
			}
		})
	}
}

// TestTrajCodecDSASize: a realistic Keep Selection group (G=8, 36 prompt + 96 completion positions, 4 layers ×
// k 64) stays far below the bus's 8 MiB default payload.
func TestTrajCodecDSASize(t *testing.T) {
	g := sampleGroup("g", 8, 96, 272, 50, 3, 2)
	for i := range g.Trajectories {
		tr := &g.Trajectories[i]
		tr.PromptTokens = make([]int32, 36)
		tr.ExpertIDs = make([]uint16, (36+96)*3*2)
	}
	withSelections(g, 4, 64, 9)
	b, err := EncodeGroup(g, 272)
	if err != nil {
		t.Fatal(err)
	}
	raw := 0
	for _, tr := range g.Trajectories {
		raw += 4 * len(tr.DSATopK)
	}
	t.Logf("dsa_topk raw %d bytes; encoded group %d bytes", raw, len(b))
	if len(b) > 2<<20 {
		t.Errorf("encoded group is %d bytes, want < 2 MiB", len(b))
	}
	if _, err := DecodeGroup(b, 272); err != nil {
		t.Fatal(err)
	}
}

// TestTrajectoryDSAValidate: every malformed dsa_topk is refused by Validate, by EncodeGroup and, written
// around the encoder's checks, by DecodeGroup, each with an error naming the field.
func TestTrajectoryDSAValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(tr *Trajectory)
		want  string
		codec bool // the codec can carry the mutation (it keeps the strides and the list as written)
	}{
		{"too few entries", func(tr *Trajectory) { tr.DSATopK = tr.DSATopK[:len(tr.DSATopK)-1] }, "entries, want", true},
		{"key after the query", func(tr *Trajectory) { tr.DSATopK[0] = 1 }, "selects key 1 outside [0, 0]", true},
		{"key below −1", func(tr *Trajectory) { tr.DSATopK[len(tr.DSATopK)-1] = -2 }, "selects key -2", true},
		{"k without layers", func(tr *Trajectory) { tr.DSALayers = 0 }, "both or neither 0", true},
		{"entries without strides", func(tr *Trajectory) { tr.DSALayers, tr.DSAK = 0, 0 }, "entries without dsa_layers", true},
		{"negative stride", func(tr *Trajectory) { tr.DSAK = -4 }, "out of range", true},
		{"huge stride", func(tr *Trajectory) { tr.DSALayers = 1 << 20 }, "out of range", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := withSelections(sampleGroup("g", 2, 5, 272, 3, 1, 2), 2, 3, 4)
			if err := g.Trajectories[1].Validate(272); err != nil {
				t.Fatalf("the untouched fixture is invalid: %v", err)
			}
			c.edit(&g.Trajectories[1])
			err := g.Trajectories[1].Validate(272)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "dsa_topk") {
				t.Fatalf("Validate: err = %v, want one naming dsa_topk and containing %q", err, c.want)
			}
			if _, err := EncodeGroup(g, 272); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("EncodeGroup: err = %v, want one containing %q", err, c.want)
			}
			// bytes a faulty or hostile worker could send: the row written without the encoder's checks
			_, err = DecodeGroup(rawStream(t, g, 272), 272)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "trajectory 1") {
				t.Fatalf("DecodeGroup: err = %v, want one naming trajectory 1 and containing %q", err, c.want)
			}
		})
	}
}
