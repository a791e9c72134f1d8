// docmask_test.go checks document masking of packed rows: a row holding two documents with their starts
// (StepInput.DocStart) trains exactly as the two documents in rows of their own — same loss, same gradients —
// because attention never crosses the boundary and RoPE scores depend only on relative positions.

package model

import (
	"math"
	"strings"
	"testing"
)

func TestDocumentMaskingEqualsSeparateRows(t *testing.T) {
	cfg := tinyModel()
	p := NewParams(cfg)
	p.Init(5)
	data := make([][]float64, len(p.Data))
	for i, d := range p.Data {
		data[i] = make([]float64, len(d))
		for j, v := range d {
			data[i][j] = float64(v) * 10
		}
	}
	docA := []int32{256, 72, 105, 33, 10} // inputs; targets are the next ids, the last one 257
	docB := []int32{256, 65, 66}
	next := func(d []int32) []int32 { return append(append([]int32(nil), d[1:]...), 257) }

	// packed: one row of T = 8 holding A then B
	packed, err := NewGraph[float64](cfg, data, GraphOptions{B: 1, T: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer packed.Close()
	tokens := append(append([]int32(nil), docA...), docB...)
	targets := append(next(docA), next(docB)...)
	in := StepInput{Tokens: tokens, Targets: targets, Weights: []float32{1, 1, 1, 1, 1, 1, 1, 1}, Lengths: []int32{8},
		DocStart: []int32{0, 0, 0, 0, 0, 5, 5, 5}, Scale: 1}
	lp, err := packed.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	gp := map[int][]float64{}
	for i := range packed.Specs {
		if g := packed.Grad(i); g != nil {
			gp[i] = append([]float64(nil), g...)
		}
	}

	// separate: two rows of T = 5, B padded
	sep, err := NewGraph[float64](cfg, data, GraphOptions{B: 2, T: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer sep.Close()
	in2 := StepInput{Tokens: append(append([]int32(nil), docA...), 256, 65, 66, 258, 258),
		Targets: append(next(docA), 65, 66, 257, 0, 0), Weights: []float32{1, 1, 1, 1, 1, 1, 1, 1, 0, 0},
		Lengths: []int32{5, 3}, Scale: 1}
	ls, err := sep.Run(in2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(lp-ls) > 1e-9*math.Max(1, math.Abs(ls)) {
		t.Errorf("loss: packed with document masking %.12g, separate rows %.12g", lp, ls)
	}
	worst := 0.0
	for i, g := range gp {
		for j, v := range sep.Grad(i) {
			worst = math.Max(worst, math.Abs(v-g[j]))
		}
	}
	if worst > 1e-9 {
		t.Errorf("gradients differ by up to %g", worst)
	}

	// without the starts the packed row is a different computation (B sees A)
	in.DocStart = nil
	lu, err := packed.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(lu-ls) < 1e-6 {
		t.Errorf("loss without document masking %.12g equals the separate rows' %.12g: the test shows nothing", lu, ls)
	}

	for _, bad := range []struct {
		starts []int32
		want   string
	}{
		{[]int32{0, 0, 0}, "3 document starts, graph wants 8"},
		{[]int32{0, 0, 0, 0, 0, 6, 5, 5}, "position 5 of row 0 has document start 6 outside [0, 5]"},
	} {
		in.DocStart = bad.starts
		if _, err := packed.Run(in); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("DocStart %v: err %v, want %q", bad.starts, err, bad.want)
		}
	}
}
