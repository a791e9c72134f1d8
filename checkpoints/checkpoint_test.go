// Tests of Save/Load: bit-exact round trip, atomic replacement, latest/List, damaged checkpoints (each error
// has a case), checkpoints made elsewhere (F32/F16/BF16, sharded, missing indexer tensors, extra tensors),
// retention, and the independent Python reader.
package checkpoints

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/model"
)

// tinyModel is a small but complete DeepSeek-V3.2: 2 layers (1 dense, 1 MoE with 4 experts in 2 groups),
// MLA with both latents, an indexer.
func tinyModel() configs.Model {
	m := configs.DefaultModel()
	m.HiddenSize, m.NumHiddenLayers, m.NumAttentionHeads = 16, 2, 2
	m.QLoraRank, m.KVLoraRank, m.QKNopeHeadDim, m.QKRopeHeadDim, m.VHeadDim = 8, 8, 4, 4, 4
	m.IntermediateSize, m.MoEIntermediateSize = 24, 8
	m.NRoutedExperts, m.NSharedExperts, m.NumExpertsPerTok, m.NGroup, m.TopkGroup = 4, 1, 2, 2, 1
	m.IndexNHeads, m.IndexHeadDim, m.IndexTopk = 2, 8, 4
	return m
}

// makeCheckpoint builds a checkpoint with random weights, AdamW-like optimizer state and a trainer state.
func makeCheckpoint(t *testing.T, seed uint64) *Checkpoint {
	t.Helper()
	p := model.NewParams(tinyModel())
	p.Init(seed)
	// Make the bias buffer non-zero so that its bits are checked too.
	for i := range p.Get("model.layers.1.mlp.gate.e_score_correction_bias") {
		p.Get("model.layers.1.mlp.gate.e_score_correction_bias")[i] = float32(i) * 0.25
	}
	ck := &Checkpoint{Model: p.Config, Tensors: FromParams(p)}
	for _, tt := range ck.Tensors {
		m := make([]float32, len(tt.Data))
		v := make([]float32, len(tt.Data))
		for k, x := range tt.Data {
			m[k], v[k] = x*0.1, x*x
		}
		ck.Optimizer = append(ck.Optimizer,
			Tensor{Name: tt.Name + ".exp_avg", Shape: tt.Shape, Data: m},
			Tensor{Name: tt.Name + ".exp_avg_sq", Shape: tt.Shape, Data: v})
	}
	ck.Optimizer = append(ck.Optimizer, Tensor{Name: "step", Shape: []int{}, Data: []float32{float32(seed)}})
	ck.State = TrainerState{Stage: "pretrain", Kind: "pretrain", Step: int(seed), StageSteps: int(seed), TokensSeen: 123456789012,
		PolicyVersion: 7, StreamSeq: 1<<63 + 5, SkippedSteps: 2, RNG: json.RawMessage(`{"pcg":[1,2]}`),
		DataCursor: json.RawMessage(`{"epoch":1,"offset":42}`), ConfigHash: "abc",
		Extra: map[string]json.RawMessage{"best_eval": json.RawMessage(`1.5`)}}
	return ck
}

func sameTensors(t *testing.T, what string, got, want []Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tensors, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || !slices.Equal(g.Shape, w.Shape) || len(g.Data) != len(w.Data) {
			t.Fatalf("%s: tensor %d = %s %v, want %s %v", what, i, g.Name, g.Shape, w.Name, w.Shape)
		}
		for k := range w.Data {
			if math.Float32bits(g.Data[k]) != math.Float32bits(w.Data[k]) {
				t.Fatalf("%s: %s[%d] = %g, want %g (bit for bit)", what, w.Name, k, g.Data[k], w.Data[k])
			}
		}
	}
}

func sortedByName(ts []Tensor) []Tensor {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b Tensor) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func TestSaveLoadRoundTrip(t *testing.T) {
	root := t.TempDir()
	ck := makeCheckpoint(t, 300)
	dir, err := Save(root, "pretrain-300", ck)
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(root, "pretrain-300") {
		t.Errorf("dir = %s", dir)
	}
	for _, f := range []string{ModelFile, ConfigFile, GenerationConfigFile, TokenizerFile, TrainerStateFile, OptimizerFile, ManifestFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	ents, _ := os.ReadDir(root)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"latest", "pretrain-300"}) {
		t.Errorf("checkpoints dir holds %v (temporary files left?)", names)
	}
	if b, _ := os.ReadFile(filepath.Join(root, LatestFile)); string(b) != "pretrain-300\n" {
		t.Errorf("latest = %q", b)
	}

	got, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Model != ck.Model {
		t.Errorf("model config: %+v", got.Model)
	}
	if got.Foreign || len(got.Warnings) != 0 {
		t.Errorf("own checkpoint: foreign %v, warnings %v", got.Foreign, got.Warnings)
	}
	sameTensors(t, "weights", got.Tensors, ck.Tensors)
	sameTensors(t, "optimizer", got.Optimizer, sortedByName(ck.Optimizer))
	gs, _ := json.Marshal(got.State)
	ws, _ := json.Marshal(ck.State)
	if string(gs) != string(ws) {
		t.Errorf("trainer state:\n%s\nwant\n%s", gs, ws)
	}

	w, err := Load(dir, LoadOptions{WeightsOnly: true})
	if err != nil || w.Optimizer != nil {
		t.Fatalf("weights only: %v, %d optimizer tensors", err, len(w.Optimizer))
	}
	sameTensors(t, "weights only", w.Tensors, ck.Tensors)

	p, warns, err := LoadParams(dir)
	if err != nil || len(warns) != 0 {
		t.Fatalf("LoadParams: %v %v", err, warns)
	}
	sameTensors(t, "LoadParams", FromParams(p), ck.Tensors)
	q, err := got.ToParams()
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, "ToParams", FromParams(q), ck.Tensors)

	if l, err := Latest(root); err != nil || l != dir {
		t.Errorf("Latest = %s, %v", l, err)
	}
}

func TestSaveBF16(t *testing.T) {
	ck := makeCheckpoint(t, 1)
	dir, err := SaveWith(t.TempDir(), "export-1", ck, SaveOptions{ModelDType: BF16})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]Tensor, len(ck.Tensors))
	for i, tt := range ck.Tensors {
		d := make([]float32, len(tt.Data))
		for k, v := range tt.Data {
			d[k] = BF16ToF32(F32ToBF16(v))
		}
		want[i] = Tensor{Name: tt.Name, Shape: tt.Shape, Data: d}
	}
	sameTensors(t, "bf16 weights", got.Tensors, want)
	sameTensors(t, "optimizer stays f32", got.Optimizer, sortedByName(ck.Optimizer))
}

func TestSaveReplacesAndRefusesBadInput(t *testing.T) {
	root := t.TempDir()
	if _, err := Save(root, "pretrain-10", makeCheckpoint(t, 10)); err != nil {
		t.Fatal(err)
	}
	second := makeCheckpoint(t, 11)
	dir, err := Save(root, "pretrain-10", second)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, "replaced", got.Tensors, second.Tensors)
	ents, _ := os.ReadDir(root)
	if len(ents) != 2 {
		t.Errorf("after replacing: %d entries, want pretrain-10 and latest", len(ents))
	}

	for _, tc := range []struct {
		what string
		name string
		edit func(ck *Checkpoint)
		want string
	}{
		{"bad name", "pretrain", func(*Checkpoint) {}, "want <stage>-<step>"},
		{"path in name", "../x-1", func(*Checkpoint) {}, "want <stage>-<step>"},
		{"missing tensor", "pretrain-20", func(ck *Checkpoint) { ck.Tensors = ck.Tensors[1:] }, "missing tensor model.embed_tokens.weight"},
		{"wrong shape", "pretrain-20", func(ck *Checkpoint) { ck.Tensors[0].Shape = []int{16, 272} }, "wrong shape: want [272 16], got [16 272]"},
		{"unknown tensor", "pretrain-20", func(ck *Checkpoint) {
			ck.Tensors = append(ck.Tensors, Tensor{Name: "x", Shape: []int{1}, Data: []float32{1}})
		}, "tensor x is not a tensor of this model"},
		{"bad optimizer tensor", "pretrain-20", func(ck *Checkpoint) { ck.Optimizer[0].Shape = []int{1} }, "holds 1 elements"},
		{"invalid config", "pretrain-20", func(ck *Checkpoint) { ck.Model.TopkGroup = 9 }, "model.topk_group"},
	} {
		ck := makeCheckpoint(t, 20)
		tc.edit(ck)
		if _, err := Save(root, tc.name, ck); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.what, err, tc.want)
		}
	}
	ents, _ = os.ReadDir(root)
	if len(ents) != 2 {
		t.Errorf("failed saves left entries behind: %d", len(ents))
	}
	if b, _ := os.ReadFile(filepath.Join(root, LatestFile)); string(b) != "pretrain-10\n" {
		t.Errorf("latest changed by failed saves: %q", b)
	}
}

func TestLatestAndList(t *testing.T) {
	root := t.TempDir()
	if _, err := Latest(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Latest of an empty dir: %v, want ErrNotExist", err)
	}
	for _, name := range []string{"pretrain-20", "pretrain-100", "rl_math-150", "dsa_warmup-120"} {
		ck := makeCheckpoint(t, 5)
		if _, err := Save(root, name, ck); err != nil {
			t.Fatal(err)
		}
	}
	// Leftovers of a crash and foreign directories are not checkpoints.
	os.MkdirAll(filepath.Join(root, ".tmp-pretrain-200-abc"), 0o755)
	os.WriteFile(filepath.Join(root, ".tmp-pretrain-200-abc", ModelFile), []byte("partial"), 0o644)
	os.MkdirAll(filepath.Join(root, "pretrain-300"), 0o755) // no manifest
	os.MkdirAll(filepath.Join(root, "notes"), 0o755)
	infos, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range infos {
		got = append(got, fmt.Sprintf("%s/%s/%d", in.Name, in.Stage, in.Step))
	}
	want := []string{"pretrain-20/pretrain/20", "pretrain-100/pretrain/100", "dsa_warmup-120/dsa_warmup/120", "rl_math-150/rl_math/150"}
	if !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if l, err := Latest(root); err != nil || filepath.Base(l) != "dsa_warmup-120" {
		t.Errorf("Latest = %s, %v (the last saved)", l, err)
	}
	os.WriteFile(filepath.Join(root, LatestFile), []byte("pretrain-300\n"), 0o644)
	if _, err := Latest(root); err == nil || !strings.Contains(err.Error(), "not a complete checkpoint") {
		t.Errorf("Latest naming an incomplete dir: %v", err)
	}
	// A file listed by the manifest but gone makes the checkpoint incomplete for List.
	os.Remove(filepath.Join(root, "pretrain-20", TokenizerFile))
	if infos, _ := List(root); len(infos) != 3 {
		t.Errorf("List with a damaged checkpoint: %d entries, want 3", len(infos))
	}
}

// rewriteModel replaces dir/model.safetensors with raw and reseals the manifest, so that the content
// checks (not the checksum) are exercised.
func rewriteModel(t *testing.T, dir string, raw []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, ModelFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	reseal(t, dir, ModelFile)
}

// reseal recomputes the manifest entry of one file.
func reseal(t *testing.T, dir, file string) {
	t.Helper()
	man, err := readManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, ManifestFile))
	b, _ := os.ReadFile(filepath.Join(dir, file))
	tmp := t.TempDir()
	e, err := writeFile(tmp, "x", func(w io.Writer) error { _, err := w.Write(b); return err })
	if err != nil {
		t.Fatal(err)
	}
	man.Files[file] = e
	mb, _ := json.Marshal(man)
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), mb, 0o644); err != nil {
		t.Fatal(err)
	}
}

func encodeModel(t *testing.T, tensors []Tensor, dtype DType) []byte {
	t.Helper()
	var b strings.Builder
	if _, err := WriteSafetensors(&b, tensors, dtype, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

func flipByte(t *testing.T, path string, fromEnd int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1-fromEnd] ^= 0x40
	os.WriteFile(path, b, 0o644)
}

func TestLoadDamaged(t *testing.T) {
	base := makeCheckpoint(t, 3)
	without := func(name string) []Tensor {
		var out []Tensor
		for _, x := range base.Tensors {
			if x.Name != name {
				out = append(out, x)
			}
		}
		return out
	}
	for _, tc := range []struct {
		what   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"truncated model", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ModelFile)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-10)
		}, []string{ModelFile, "truncated file"}},
		{"truncated model, manifest resealed", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, ModelFile))
			rewriteModel(t, dir, b[:len(b)-10])
		}, []string{ModelFile, "truncated file", "model.norm.weight"}},
		{"flipped byte in model data", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, ModelFile), 100) },
			[]string{ModelFile, "checksum mismatch"}},
		{"flipped byte in model header", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ModelFile)
			b, _ := os.ReadFile(p)
			b[20] ^= 0x01 // inside "__metadata__" or a name: the JSON may still parse
			os.WriteFile(p, b, 0o644)
		}, []string{ModelFile, "checksum mismatch"}},
		{"renamed tensor in model header", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ModelFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"lm_head.weight"`, `"lm_head.weighu"`, 1)), 0o644)
		}, []string{ModelFile, "checksum mismatch", "missing tensor lm_head.weight"}},
		{"flipped byte in config.json", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, ConfigFile), 5) },
			[]string{ConfigFile, "checksum mismatch"}},
		{"flipped byte in optimizer", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, OptimizerFile), 3) },
			[]string{OptimizerFile, "checksum mismatch"}},
		{"flipped byte in tokenizer.json", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, TokenizerFile), 3) },
			[]string{TokenizerFile, "checksum mismatch"}},
		{"grown trainer state", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, TrainerStateFile), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(" ")
			f.Close()
		}, []string{TrainerStateFile, "size mismatch"}},
		{"missing tensor", func(t *testing.T, dir string) {
			rewriteModel(t, dir, encodeModel(t, without("model.layers.1.mlp.gate.weight"), F32))
		}, []string{"missing tensor model.layers.1.mlp.gate.weight"}},
		{"missing indexer tensor", func(t *testing.T, dir string) {
			rewriteModel(t, dir, encodeModel(t, without("model.layers.0.self_attn.indexer.wk.weight"), F32))
		}, []string{"missing tensor model.layers.0.self_attn.indexer.wk.weight", "index_n_heads = 2"}},
		{"wrong shape", func(t *testing.T, dir string) {
			ts := slices.Clone(base.Tensors)
			for i := range ts {
				if ts[i].Name == "model.layers.0.self_attn.q_b_proj.weight" {
					ts[i].Shape = []int{8, 16}
				}
			}
			rewriteModel(t, dir, encodeModel(t, ts, F32))
		}, []string{"tensor model.layers.0.self_attn.q_b_proj.weight: wrong shape: want [16 8], got [8 16]"}},
		{"unsupported dtype", func(t *testing.T, dir string) {
			// model.norm.weight (16 values) as F8_E4M3: sizes consistent, dtype not decodable.
			var hdr []string
			var data []byte
			for _, x := range sortedByName(base.Tensors) {
				if x.Name == "model.norm.weight" {
					hdr = append(hdr, fmt.Sprintf(`"%s":{"dtype":"F8_E4M3","shape":[16],"data_offsets":[%d,%d]}`, x.Name, len(data), len(data)+16))
					data = append(data, make([]byte, 16)...)
					continue
				}
				hdr = append(hdr, fmt.Sprintf(`"%s":{"dtype":"F32","shape":%s,"data_offsets":[%d,%d]}`, x.Name, jsonInts(x.Shape), len(data), len(data)+4*len(x.Data)))
				for _, v := range x.Data {
					u := math.Float32bits(v)
					data = append(data, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
				}
			}
			rewriteModel(t, dir, rawSafetensors("{"+strings.Join(hdr, ",")+"}", data))
		}, []string{"unsupported dtype F8_E4M3 for tensor model.norm.weight"}},
		{"manifest deleted", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ManifestFile)) },
			[]string{"manifest.json is missing", "refusing"}},
		{"model file deleted", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ModelFile)) },
			[]string{"manifest.json lists model.safetensors"}},
		{"tokenizer deleted", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, TokenizerFile)) },
			[]string{"manifest.json lists tokenizer.json"}},
		{"manifest of a newer format", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ManifestFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"format_version": 1`, `"format_version": 2`, 1)), 0o644)
		}, []string{"format_version 2 is not supported"}},
		{"config not supported", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ConfigFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"rope_scaling": null`, `"rope_scaling": {"type": "yarn"}`, 1)), 0o644)
			reseal(t, dir, ConfigFile)
		}, []string{"YaRN rope_scaling not supported"}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			dir, err := Save(t.TempDir(), "pretrain-3", base)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)
			_, err = Load(dir, LoadOptions{})
			if err == nil {
				t.Fatal("Load succeeded on a damaged checkpoint")
			}
			t.Logf("Load: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load: %v\nwant it to contain %q", err, w)
				}
			}
			if _, _, err2 := LoadParams(dir); err2 == nil && !strings.Contains(tc.what, "optimizer") {
				t.Errorf("LoadParams succeeded on a damaged checkpoint")
			}
		})
	}
}

func jsonInts(v []int) string { b, _ := json.Marshal(v); return string(b) }

// writeForeign writes an HF-style directory: config.json as written by another tool, weights in dtype,
// optionally sharded, no manifest, no trainer state.
func writeForeign(t *testing.T, tensors []Tensor, dtype DType, shards int) string {
	t.Helper()
	dir := t.TempDir()
	cfg := strings.Replace(foreignConfigFor(t), `"torch_dtype": "float32"`, `"torch_dtype": "bfloat16", "transformers_version": "4.58.0"`, 1)
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o644)
	if shards <= 1 {
		os.WriteFile(filepath.Join(dir, ModelFile), encodeModel(t, tensors, dtype), 0o644)
		return dir
	}
	wm := map[string]string{}
	for s := 0; s < shards; s++ {
		var part []Tensor
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		for i := s; i < len(tensors); i += shards {
			part = append(part, tensors[i])
			wm[tensors[i].Name] = name
		}
		os.WriteFile(filepath.Join(dir, name), encodeModel(t, part, dtype), 0o644)
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": wm})
	os.WriteFile(filepath.Join(dir, ModelIndexFile), b, 0o644)
	return dir
}

func foreignConfigFor(t *testing.T) string {
	b, err := MarshalConfig(tinyModel())
	if err != nil {
		t.Fatal(err)
	}
	// Another tool knows nothing of Sparrow's own keys.
	var m map[string]any
	json.Unmarshal(b, &m)
	delete(m, "bias_update_speed")
	delete(m, "aux_loss_alpha")
	out, _ := json.MarshalIndent(m, "", "  ")
	return string(out)
}

func TestLoadForeign(t *testing.T) {
	base := makeCheckpoint(t, 9)
	round := func(d DType) []Tensor {
		out := make([]Tensor, len(base.Tensors))
		for i, x := range base.Tensors {
			v := make([]float32, len(x.Data))
			for k, f := range x.Data {
				switch d {
				case F16:
					v[k] = F16ToF32(F32ToF16(f))
				case BF16:
					v[k] = BF16ToF32(F32ToBF16(f))
				default:
					v[k] = f
				}
			}
			out[i] = Tensor{Name: x.Name, Shape: x.Shape, Data: v}
		}
		return out
	}
	for _, tc := range []struct {
		dtype  DType
		shards int
	}{{F32, 1}, {F16, 1}, {BF16, 1}, {BF16, 3}} {
		t.Run(fmt.Sprintf("%s-%dshards", tc.dtype, tc.shards), func(t *testing.T) {
			want := round(tc.dtype)
			dir := writeForeign(t, want, tc.dtype, tc.shards)
			ck, err := Load(dir, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !ck.Foreign || len(ck.Warnings) != 1 || !strings.Contains(ck.Warnings[0], "made elsewhere") {
				t.Errorf("foreign %v, warnings %q", ck.Foreign, ck.Warnings)
			}
			if ck.Model.BiasUpdateSpeed != configs.DefaultModel().BiasUpdateSpeed || ck.Model.HiddenSize != 16 {
				t.Errorf("model: %+v", ck.Model)
			}
			sameTensors(t, "foreign weights", ck.Tensors, want)
			p, warns, err := LoadParams(dir)
			if err != nil || len(warns) != 1 {
				t.Fatalf("LoadParams: %v %v", err, warns)
			}
			sameTensors(t, "foreign params", FromParams(p), want)
		})
	}

	t.Run("extra tensors warn", func(t *testing.T) {
		ts := append(slices.Clone(base.Tensors), Tensor{Name: "model.layers.2.eh_proj.weight", Shape: []int{2}, Data: []float32{1, 2}})
		ck, err := Load(writeForeign(t, ts, F32, 1), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ck.Warnings) != 2 || !strings.Contains(ck.Warnings[1], "unknown tensor model.layers.2.eh_proj.weight ignored") {
			t.Errorf("warnings %q", ck.Warnings)
		}
		sameTensors(t, "weights", ck.Tensors, base.Tensors)
	})
	for _, tc := range []struct {
		what string
		make func(t *testing.T) string
		want string
	}{
		{"missing indexer tensor", func(t *testing.T) string {
			var ts []Tensor
			for _, x := range base.Tensors {
				if !strings.Contains(x.Name, "layers.1.self_attn.indexer.weights_proj") {
					ts = append(ts, x)
				}
			}
			return writeForeign(t, ts, BF16, 1)
		}, "missing tensor model.layers.1.self_attn.indexer.weights_proj.weight (the config has index_n_heads = 2"},
		{"truncated", func(t *testing.T) string {
			dir := writeForeign(t, base.Tensors, F16, 1)
			p := filepath.Join(dir, ModelFile)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()/2)
			return dir
		}, "truncated file"},
		{"weight_map names a shard without the tensor", func(t *testing.T) string {
			dir := writeForeign(t, base.Tensors, F32, 2)
			p := filepath.Join(dir, ModelIndexFile)
			var idx map[string]map[string]any
			b, _ := os.ReadFile(p)
			json.Unmarshal(b, &idx)
			idx["weight_map"]["lm_head.weight"] = "model-00009-of-00009.safetensors"
			b, _ = json.Marshal(idx)
			os.WriteFile(p, b, 0o644)
			return dir
		}, "model-00009-of-00009.safetensors"},
		{"no weights", func(t *testing.T) string {
			dir := writeForeign(t, base.Tensors, F32, 1)
			os.Remove(filepath.Join(dir, ModelFile))
			return dir
		}, "neither model.safetensors nor model.safetensors.index.json"},
		{"no config", func(t *testing.T) string {
			dir := writeForeign(t, base.Tensors, F32, 1)
			os.Remove(filepath.Join(dir, ConfigFile))
			return dir
		}, "config.json"},
		{"optimizer without manifest", func(t *testing.T) string {
			dir := writeForeign(t, base.Tensors, F32, 1)
			os.WriteFile(filepath.Join(dir, OptimizerFile), encodeModel(t, base.Optimizer, F32), 0o644)
			return dir
		}, "manifest.json is missing but optimizer.safetensors is there"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			_, err := Load(tc.make(t), LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	root := t.TempDir()
	ck := makeCheckpoint(t, 1)
	for step := 10; step <= 100; step += 10 {
		if _, err := Save(root, Name("pretrain", step), ck); err != nil {
			t.Fatal(err)
		}
	}
	// latest → pretrain-30 (Save never moves it back: written by hand); a crash leftover; an .old copy
	// whose checkpoint is back.
	if err := os.WriteFile(filepath.Join(root, LatestFile), []byte("pretrain-30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, ".tmp-pretrain-110-xyz"), 0o755)
	os.MkdirAll(filepath.Join(root, ".old-pretrain-40-abc"), 0o755)
	os.MkdirAll(filepath.Join(root, ".old-pretrain-999-abc"), 0o755) // the only copy of pretrain-999: kept
	removed, err := Prune(root, 2, 40)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	wantRemoved := []string{".old-pretrain-40-abc", ".tmp-pretrain-110-xyz", "pretrain-10", "pretrain-20", "pretrain-50", "pretrain-60", "pretrain-70"}
	if !slices.Equal(removed, wantRemoved) {
		t.Errorf("removed %v, want %v", removed, wantRemoved)
	}
	infos, _ := List(root)
	var kept []string
	for _, in := range infos {
		kept = append(kept, in.Name)
	}
	if want := []string{"pretrain-30", "pretrain-40", "pretrain-80", "pretrain-90", "pretrain-100"}; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
	if _, err := os.Stat(filepath.Join(root, ".old-pretrain-999-abc")); err != nil {
		t.Errorf("the only copy of a checkpoint was removed: %v", err)
	}
	if l, err := Latest(root); err != nil || filepath.Base(l) != "pretrain-30" {
		t.Errorf("Latest after prune = %s, %v", l, err)
	}
	if _, err := Prune(root, -1, 0); err == nil {
		t.Error("keepLast -1 accepted")
	}
}

// TestIndependentReader reads a Sparrow checkpoint with a few lines of stdlib Python (testdata/read_checkpoint.py).
func TestIndependentReader(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	ck := makeCheckpoint(t, 4)
	dir, err := Save(t.TempDir(), "pretrain-4", ck)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "testdata/read_checkpoint.py", dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("python reader: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var got struct {
		Config      map[string]any `json:"config"`
		HeaderOrder []string       `json:"header_order"`
		Tensors     map[string]struct {
			DType string  `json:"dtype"`
			Shape []int   `json:"shape"`
			Sum   float64 `json:"sum"`
		} `json:"tensors"`
		Manifest  map[string]bool `json:"manifest"`
		Tokenizer struct {
			Vocab   int   `json:"vocab"`
			Merges  int   `json:"merges"`
			SpaceID int   `json:"space_id"`
			Added   []int `json:"added"`
		} `json:"tokenizer"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python output: %v\n%s", err, out)
	}
	specs := model.Specs(ck.Model)
	if len(got.Tensors) != len(specs) {
		t.Errorf("python sees %d tensors, model.Specs has %d", len(got.Tensors), len(specs))
	}
	for i, s := range specs {
		g, ok := got.Tensors[s.Name]
		if !ok {
			t.Errorf("python does not see %s", s.Name)
			continue
		}
		var sum float64
		for _, v := range ck.Tensors[i].Data {
			sum += float64(v)
		}
		if g.DType != "F32" || !slices.Equal(g.Shape, s.Shape) || math.Abs(g.Sum-sum) > 1e-9*(1+math.Abs(sum)) {
			t.Errorf("%s: python %s %v sum %g; want F32 %v sum %g", s.Name, g.DType, g.Shape, g.Sum, s.Shape, sum)
		}
	}
	if !slices.IsSorted(got.HeaderOrder) {
		t.Errorf("header not sorted by name: %v", got.HeaderOrder[:5])
	}
	for key, want := range map[string]any{"model_type": "deepseek_v32", "hidden_size": 16.0, "num_hidden_layers": 2.0,
		"n_routed_experts": 4.0, "index_n_heads": 2.0, "q_lora_rank": 8.0, "kv_lora_rank": 8.0, "vocab_size": 272.0} {
		if got.Config[key] != want {
			t.Errorf("python config %s = %v, want %v", key, got.Config[key], want)
		}
	}
	if len(got.Manifest) != 6 {
		t.Errorf("manifest lists %d files, want 6", len(got.Manifest))
	}
	for f, ok := range got.Manifest {
		if !ok {
			t.Errorf("python: %s does not match its manifest entry", f)
		}
	}
	if got.Tokenizer.Vocab != 256 || got.Tokenizer.Merges != 0 || got.Tokenizer.SpaceID != 32 || len(got.Tokenizer.Added) != 16 || got.Tokenizer.Added[0] != 256 {
		t.Errorf("python tokenizer.json view: %+v", got.Tokenizer)
	}
}
