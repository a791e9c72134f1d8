// checkpoint.go is the Save/Load API of Sparrow checkpoints (architecture.md, "Run directory").
//
// Save writes model.safetensors, config.json, generation_config.json, tokenizer.json, trainer_state.json,
// optimizer.safetensors and finally manifest.json into checkpointsDir/.tmp-<name>-<rand>, fsyncs every
// file and the directory, renames it to checkpointsDir/<name> (moving an older checkpoint of the same name
// aside first, then deleting it), and only then replaces checkpointsDir/latest through a temporary file
// and a rename; latest never moves back to an older checkpoint (latest.go). A crash at any point leaves
// either the old state or the new one; a half-written directory never carries the final name without its
// manifest.
//
// Load verifies every file against the manifest while reading it (size, then SHA-256), and every model
// tensor against model.Specs of the config.json's model (presence, shape, dtype). A directory without
// manifest.json but with trainer_state.json or optimizer.safetensors is a damaged Sparrow checkpoint and
// is refused; one with neither is a checkpoint made elsewhere (plain HF layout, single file or sharded,
// F32/F16/BF16) and loads with a warning.

package checkpoints

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
)

// Tensor is a named float32 tensor.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// TrainerState is trainer_state.json: what exact resume needs besides weights and optimizer moments.
type TrainerState struct {
	Stage         string                     `json:"stage"`
	Kind          string                     `json:"kind"`
	Step          int                        `json:"step"`
	StageSteps    int                        `json:"stage_steps"`
	TokensSeen    int64                      `json:"tokens_seen"`
	PolicyVersion int64                      `json:"policy_version"`
	StreamSeq     uint64                     `json:"stream_seq"`
	SkippedSteps  int                        `json:"skipped_steps"`
	RNG           json.RawMessage            `json:"rng,omitempty"`
	DataCursor    json.RawMessage            `json:"data_cursor,omitempty"`
	ConfigHash    string                     `json:"config_hash,omitempty"`
	Extra         map[string]json.RawMessage `json:"extra,omitempty"`
}

// Checkpoint is everything a checkpoint directory holds.
type Checkpoint struct {
	Model     configs.Model
	Tensors   []Tensor     // model weights, in model.Specs order → model.safetensors
	Optimizer []Tensor     // optimizer state (e.g. "<name>.exp_avg", "<name>.exp_avg_sq", "step") → optimizer.safetensors
	State     TrainerState // → trainer_state.json

	// Filled by Load, not saved.
	Foreign  bool     // loaded from a directory made elsewhere (no manifest, no trainer state)
	Warnings []string // what Load also logged with slog.Warn
}

// SaveOptions tunes Save.
type SaveOptions struct {
	ModelDType DType // dtype of model.safetensors: F32 (default, exact resume), BF16 or F16
	// Stages is the pipeline's stage order, for the rule that latest never moves back (CheckForward).
	Stages []string
	// Fence, when set, is called once the files are written and before the checkpoint takes its name and
	// latest moves: an error (the writer lost its lease) discards the checkpoint.
	Fence func() error
}

// LoadOptions tunes Load.
type LoadOptions struct {
	WeightsOnly bool // skip optimizer.safetensors (neither read nor hashed; it must still exist when listed)
}

// namePattern is <stage>-<step>.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*-([0-9]+)$`)

// ParseName splits a checkpoint name <stage>-<step>.
func ParseName(name string) (stage string, step int, err error) {
	m := namePattern.FindStringSubmatch(name)
	if m == nil {
		return "", 0, fmt.Errorf("checkpoint name %q: want <stage>-<step>, e.g. pretrain-300", name)
	}
	step, err = strconv.Atoi(m[1])
	if err != nil {
		return "", 0, fmt.Errorf("checkpoint name %q: step: %w", name, err)
	}
	return strings.TrimSuffix(name, "-"+m[1]), step, nil
}

// Name returns the checkpoint name of a stage and step.
func Name(stage string, step int) string { return fmt.Sprintf("%s-%d", stage, step) }

// FromParams returns the tensors of p in Specs order. They share p's memory (no copy).
func FromParams(p *model.Params) []Tensor {
	out := make([]Tensor, len(p.Specs))
	for i, s := range p.Specs {
		out[i] = Tensor{Name: s.Name, Shape: slices.Clone(s.Shape), Data: p.Data[i]}
	}
	return out
}

// ToParams copies the model tensors into fresh parameter memory, checked against model.Specs.
func (ck *Checkpoint) ToParams() (*model.Params, error) {
	p := model.NewParams(ck.Model)
	byName := make(map[string]*Tensor, len(ck.Tensors))
	for i := range ck.Tensors {
		byName[ck.Tensors[i].Name] = &ck.Tensors[i]
	}
	for i, s := range p.Specs {
		t, ok := byName[s.Name]
		if !ok {
			return nil, fmt.Errorf("checkpoint: missing tensor %s", s.Name)
		}
		if !slices.Equal(t.Shape, s.Shape) || len(t.Data) != s.Size() {
			return nil, fmt.Errorf("checkpoint: tensor %s: wrong shape: want %v, got %v (%d values)", s.Name, s.Shape, t.Shape, len(t.Data))
		}
		copy(p.Data[i], t.Data)
	}
	return p, nil
}

// checkModelTensors checks that tensors are exactly model.Specs(m) (any order) with the right shapes.
func checkModelTensors(m configs.Model, tensors []Tensor) error {
	specs := model.Specs(m)
	want := make(map[string]model.Spec, len(specs))
	for _, s := range specs {
		want[s.Name] = s
	}
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		s, ok := want[t.Name]
		switch {
		case !ok:
			return fmt.Errorf("tensor %s is not a tensor of this model", t.Name)
		case seen[t.Name]:
			return fmt.Errorf("tensor %s given twice", t.Name)
		case !slices.Equal(t.Shape, s.Shape) || len(t.Data) != s.Size():
			return fmt.Errorf("tensor %s: wrong shape: want %v, got %v (%d values)", t.Name, s.Shape, t.Shape, len(t.Data))
		}
		seen[t.Name] = true
	}
	for _, s := range specs {
		if !seen[s.Name] {
			return fmt.Errorf("missing tensor %s", s.Name)
		}
	}
	return nil
}

// Save writes ck as checkpointsDir/<name> and points checkpointsDir/latest at it; see the file comment.
func Save(checkpointsDir, name string, ck *Checkpoint) (string, error) {
	return SaveWith(checkpointsDir, name, ck, SaveOptions{})
}

// SaveWith is Save with options.
func SaveWith(checkpointsDir, name string, ck *Checkpoint, opts SaveOptions) (dir string, err error) {
	if _, _, err := ParseName(name); err != nil {
		return "", fmt.Errorf("save: %w", err)
	}
	dtype := opts.ModelDType
	if dtype == "" {
		dtype = F32
	}
	if !decodable(dtype) {
		return "", fmt.Errorf("save %s: model dtype %s not supported (F32, BF16 or F16)", name, dtype)
	}
	if err := CheckForward(checkpointsDir, name, opts.Stages); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	cfgJSON, err := MarshalConfig(ck.Model) // validates the model first
	if err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	if err := checkModelTensors(ck.Model, ck.Tensors); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	genJSON, err := MarshalGenerationConfig(DefaultGenerationConfig())
	if err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	var tokJSON []byte
	if tok, terr := data.NewTokenizer(ck.Model.VocabSize); terr == nil {
		if tokJSON, err = tok.HFJSON(); err != nil {
			return "", fmt.Errorf("save %s: %w", name, err)
		}
	} else {
		slog.Warn("checkpoint without tokenizer.json: the byte tokenizer does not fit the model's vocabulary", "name", name, "err", terr)
	}
	stateJSON, err := json.MarshalIndent(ck.State, "", "  ")
	if err != nil {
		return "", fmt.Errorf("save %s: %s: %w", name, TrainerStateFile, err)
	}
	stateJSON = append(stateJSON, '\n')

	if err := os.MkdirAll(checkpointsDir, 0o755); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	tmp, err := os.MkdirTemp(checkpointsDir, ".tmp-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	man := Manifest{Format: Format, FormatVersion: FormatVersion, Name: name, Stage: ck.State.Stage, Step: ck.State.Step,
		Created: time.Now().UTC(), Files: map[string]FileEntry{}}
	put := func(file string, write func(w io.Writer) error) error {
		e, err := writeFile(tmp, file, write)
		if err != nil {
			return fmt.Errorf("save %s: %w", name, err)
		}
		man.Files[file] = e
		return nil
	}
	bytesOf := func(b []byte) func(io.Writer) error {
		return func(w io.Writer) error { _, err := w.Write(b); return err }
	}
	stMeta := map[string]string{"format": "pt"}
	if err = put(ModelFile, func(w io.Writer) error { _, err := WriteSafetensors(w, ck.Tensors, dtype, stMeta); return err }); err != nil {
		return "", err
	}
	if err = put(ConfigFile, bytesOf(cfgJSON)); err != nil {
		return "", err
	}
	if err = put(GenerationConfigFile, bytesOf(genJSON)); err != nil {
		return "", err
	}
	if tokJSON != nil {
		if err = put(TokenizerFile, bytesOf(tokJSON)); err != nil {
			return "", err
		}
	}
	if err = put(TrainerStateFile, bytesOf(stateJSON)); err != nil {
		return "", err
	}
	if err = put(OptimizerFile, func(w io.Writer) error { _, err := WriteSafetensors(w, ck.Optimizer, F32, stMeta); return err }); err != nil {
		return "", err
	}
	manJSON, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return "", fmt.Errorf("save %s: %s: %w", name, ManifestFile, err)
	}
	if _, err = writeFile(tmp, ManifestFile, bytesOf(append(manJSON, '\n'))); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	if err = syncDir(tmp); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	// the commit point: checked again, right before the checkpoint takes its name
	if err = CheckForward(checkpointsDir, name, opts.Stages); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	if opts.Fence != nil {
		if err = opts.Fence(); err != nil {
			return "", fmt.Errorf("save %s: %w", name, err)
		}
	}

	dir = filepath.Join(checkpointsDir, name)
	var old string
	if _, serr := os.Lstat(dir); serr == nil {
		old = filepath.Join(checkpointsDir, ".old-"+name+"-"+randSuffix())
		if err = os.Rename(dir, old); err != nil {
			return "", fmt.Errorf("save %s: move the previous checkpoint aside: %w", name, err)
		}
	}
	if err = os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir) // put the previous one back
		}
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	if err = syncDir(checkpointsDir); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	if old != "" {
		if rerr := os.RemoveAll(old); rerr != nil {
			slog.Warn("could not remove the replaced checkpoint", "dir", old, "err", rerr)
		}
	}
	if err = writeLatest(checkpointsDir, name); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	return dir, nil
}

func randSuffix() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
}

// writeLatest replaces checkpointsDir/latest with name (temporary file, fsync, rename, fsync dir).
func writeLatest(checkpointsDir, name string) error {
	f, err := os.CreateTemp(checkpointsDir, ".latest-")
	if err != nil {
		return err
	}
	_, err = f.WriteString(name + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(checkpointsDir, LatestFile))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", filepath.Join(checkpointsDir, LatestFile), err)
	}
	return syncDir(checkpointsDir)
}

// Latest returns the directory checkpointsDir/latest names. With no latest file the error wraps
// os.ErrNotExist (a run that has not saved yet).
func Latest(checkpointsDir string) (string, error) {
	path := filepath.Join(checkpointsDir, LatestFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("latest checkpoint: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if _, _, err := ParseName(name); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Join(checkpointsDir, name)
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err != nil {
		return "", fmt.Errorf("%s names %s, which is not a complete checkpoint: %w", path, name, err)
	}
	return dir, nil
}

// Info describes one complete checkpoint of a directory.
type Info struct {
	Name    string
	Dir     string
	Stage   string
	Step    int
	Created time.Time
}

// List returns the complete checkpoints of checkpointsDir (a manifest whose files all exist with their
// sizes; the digests are not computed), sorted by step, then creation time, then name.
func List(checkpointsDir string) ([]Info, error) {
	ents, err := os.ReadDir(checkpointsDir)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	var out []Info
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		stage, step, err := ParseName(e.Name())
		if err != nil {
			continue // .tmp-*, .old-*, foreign directories
		}
		dir := filepath.Join(checkpointsDir, e.Name())
		man, err := readManifest(dir)
		if err != nil || man == nil || !filesPresent(dir, man) {
			continue
		}
		out = append(out, Info{Name: e.Name(), Dir: dir, Stage: stage, Step: step, Created: man.Created})
	}
	slices.SortFunc(out, func(a, b Info) int {
		if a.Step != b.Step {
			return a.Step - b.Step
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

func filesPresent(dir string, man *Manifest) bool {
	for name, e := range man.Files {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Size() != e.Size {
			return false
		}
	}
	return true
}

// Load reads the checkpoint in dir; see the file comment for what is verified.
func Load(dir string, opts LoadOptions) (*Checkpoint, error) {
	ck := &Checkpoint{}
	src, err := openSource(dir, ck)
	if err != nil {
		return nil, err
	}
	specs := model.Specs(ck.Model)
	ck.Tensors = make([]Tensor, len(specs))
	for i, s := range specs {
		ck.Tensors[i] = Tensor{Name: s.Name, Shape: slices.Clone(s.Shape)}
	}
	err = src.readModel(specs, func(i int) []float32 {
		ck.Tensors[i].Data = make([]float32, specs[i].Size())
		return ck.Tensors[i].Data
	})
	if err != nil {
		return nil, err
	}
	if !ck.Foreign && !opts.WeightsOnly {
		if ck.Optimizer, err = src.readOptimizer(); err != nil {
			return nil, err
		}
	}
	return ck, nil
}

// LoadParams reads only the model weights of the checkpoint in dir straight into parameter memory.
func LoadParams(dir string) (*model.Params, []string, error) {
	ck := &Checkpoint{}
	src, err := openSource(dir, ck)
	if err != nil {
		return nil, nil, err
	}
	p := model.NewParams(ck.Model)
	if err := src.readModel(p.Specs, func(i int) []float32 { return p.Data[i] }); err != nil {
		return nil, nil, err
	}
	return p, ck.Warnings, nil
}

// source is an opened checkpoint directory whose config (and trainer state) are read and verified.
type source struct {
	dir string
	man *Manifest
	ck  *Checkpoint
}

func (s *source) warn(msg string, args ...any) {
	text := fmt.Sprintf(msg, args...)
	s.ck.Warnings = append(s.ck.Warnings, text)
	slog.Warn(text, "checkpoint", s.dir)
}

// openSource reads manifest.json, config.json and trainer_state.json (and verifies the small files), and
// decides whether dir is a Sparrow checkpoint or a foreign one.
func openSource(dir string, ck *Checkpoint) (*source, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load checkpoint: %s is not a directory", dir)
	}
	man, err := readManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	s := &source{dir: dir, man: man, ck: ck}
	if man == nil {
		for _, f := range []string{TrainerStateFile, OptimizerFile} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				return nil, fmt.Errorf("load checkpoint %s: %s is missing but %s is there: a Sparrow checkpoint without its manifest may be incomplete, refusing it",
					dir, ManifestFile, f)
			}
		}
		ck.Foreign = true
		s.warn("checkpoint made elsewhere (no %s, no %s): loading model weights without checksums", ManifestFile, TrainerStateFile)
	} else {
		for _, f := range []string{ModelFile, ConfigFile, TrainerStateFile, OptimizerFile} {
			if _, ok := man.Files[f]; !ok {
				return nil, fmt.Errorf("load checkpoint %s: %s does not list %s", dir, ManifestFile, f)
			}
		}
		for f := range man.Files {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return nil, fmt.Errorf("load checkpoint %s: %s lists %s: %w", dir, ManifestFile, f, err)
			}
		}
		// Small files not otherwise read are verified now.
		for _, f := range []string{GenerationConfigFile, TokenizerFile} {
			if _, ok := man.Files[f]; ok {
				if _, err := readVerified(dir, f, man); err != nil {
					return nil, fmt.Errorf("load checkpoint: %w", err)
				}
			}
		}
	}
	cfg, err := readVerified(dir, ConfigFile, man)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	if ck.Model, err = UnmarshalConfig(cfg, filepath.Join(dir, ConfigFile)); err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	if man != nil {
		b, err := readVerified(dir, TrainerStateFile, man)
		if err != nil {
			return nil, fmt.Errorf("load checkpoint: %w", err)
		}
		if err := json.Unmarshal(b, &ck.State); err != nil {
			return nil, fmt.Errorf("load checkpoint: %s: %w", filepath.Join(dir, TrainerStateFile), err)
		}
	}
	return s, nil
}

// shard is one opened safetensors file of the model weights.
type shard struct {
	name string
	v    *verifiedFile
	h    *Header
}

// readModel reads the model weights into dst(i) for specs[i], checking presence, shape and dtype of every
// tensor before any data is read. Unknown tensors are skipped with a warning.
func (s *source) readModel(specs []model.Spec, dst func(i int) []float32) (err error) {
	files, weightMap, err := s.modelFiles()
	if err != nil {
		return err
	}
	var shards []*shard
	defer func() {
		if err != nil {
			for _, sh := range shards {
				sh.v.close()
			}
		}
	}()
	for _, f := range files {
		v, err := openVerified(s.dir, f, s.man)
		if err != nil {
			return fmt.Errorf("load checkpoint: %w", err)
		}
		sh := &shard{name: f, v: v}
		shards = append(shards, sh)
		if sh.h, err = ReadHeader(v.r, v.size, v.path); err != nil {
			shards = shards[:len(shards)-1]
			return fmt.Errorf("load checkpoint: %w", v.explain(err))
		}
	}
	// A header that fails the checks below may itself be damaged: verify the digests before blaming it.
	fail := func(err error) error {
		var damaged error
		for _, sh := range shards {
			if ferr := sh.v.finish(); ferr != nil && damaged == nil {
				damaged = ferr
			}
		}
		shards = nil
		if damaged != nil {
			return fmt.Errorf("load checkpoint: %w (reading it: %v)", damaged, err)
		}
		return fmt.Errorf("load checkpoint: %w", err)
	}
	want := make(map[string]int, len(specs))
	for i, sp := range specs {
		want[sp.Name] = i
	}
	where := map[string]string{}
	for _, sh := range shards {
		for _, t := range sh.h.Tensors {
			path := filepath.Join(s.dir, sh.name)
			if prev, dup := where[t.Name]; dup {
				return fail(fmt.Errorf("tensor %s is in both %s and %s", t.Name, prev, sh.name))
			}
			where[t.Name] = sh.name
			if weightMap != nil && weightMap[t.Name] != sh.name {
				s.warn("%s: tensor %s is not mapped to this file by %s", path, t.Name, ModelIndexFile)
			}
			i, ok := want[t.Name]
			if !ok {
				s.warn("%s: unknown tensor %s ignored", path, t.Name)
				continue
			}
			if !slices.Equal(t.Shape, specs[i].Shape) {
				return fail(fmt.Errorf("%s: tensor %s: wrong shape: want %v, got %v", path, t.Name, specs[i].Shape, t.Shape))
			}
			if !decodable(t.DType) {
				return fail(fmt.Errorf("%s: unsupported dtype %s for tensor %s (want F32, F16 or BF16)", path, t.DType, t.Name))
			}
		}
	}
	for _, sp := range specs {
		if _, ok := where[sp.Name]; !ok {
			hint := ""
			if strings.Contains(sp.Name, ".indexer.") {
				hint = fmt.Sprintf(" (the config has index_n_heads = %d, so the DSA indexer's tensors are required)", s.ck.Model.IndexNHeads)
			}
			return fail(fmt.Errorf("%s: missing tensor %s%s", s.dir, sp.Name, hint))
		}
	}
	for name, f := range weightMap {
		if where[name] != f {
			return fail(fmt.Errorf("%s: %s maps tensor %s to %s, which does not hold it", s.dir, ModelIndexFile, name, f))
		}
	}
	for _, sh := range shards {
		err := sh.h.ReadData(sh.v.r, sh.v.path, func(t TensorInfo) ([]float32, error) {
			if i, ok := want[t.Name]; ok {
				return dst(i), nil
			}
			return nil, nil
		})
		if err != nil {
			return fmt.Errorf("load checkpoint: %w", sh.v.explain(err))
		}
		if err := sh.v.finish(); err != nil {
			return fmt.Errorf("load checkpoint: %w", err)
		}
	}
	return nil
}

// modelFiles names the safetensors files of the model weights: model.safetensors, or the shards of
// model.safetensors.index.json (whose weight_map is returned).
func (s *source) modelFiles() ([]string, map[string]string, error) {
	if _, err := os.Stat(filepath.Join(s.dir, ModelFile)); err == nil || s.man != nil {
		return []string{ModelFile}, nil, nil
	}
	b, err := readVerified(s.dir, ModelIndexFile, nil)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("load checkpoint %s: neither %s nor %s", s.dir, ModelFile, ModelIndexFile)
		}
		return nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	path := filepath.Join(s.dir, ModelIndexFile)
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, nil, fmt.Errorf("load checkpoint: %s: bad JSON: %w", path, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, nil, fmt.Errorf("load checkpoint: %s: empty weight_map", path)
	}
	var files []string
	for name, f := range idx.WeightMap {
		if f != filepath.Base(f) || f == "." || f == ".." {
			return nil, nil, fmt.Errorf("load checkpoint: %s: tensor %s maps to invalid file name %q", path, name, f)
		}
		if !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	return files, idx.WeightMap, nil
}

// readOptimizer reads optimizer.safetensors (tensors in file order, i.e. sorted by name).
func (s *source) readOptimizer() ([]Tensor, error) {
	v, err := openVerified(s.dir, OptimizerFile, s.man)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	h, err := ReadHeader(v.r, v.size, v.path)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", v.explain(err))
	}
	out := make([]Tensor, len(h.Tensors))
	err = h.ReadData(v.r, v.path, func(t TensorInfo) ([]float32, error) {
		out[t.layout] = Tensor{Name: t.Name, Shape: slices.Clone(t.Shape), Data: make([]float32, t.NumElements())}
		return out[t.layout].Data, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", v.explain(err))
	}
	if err := v.finish(); err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	return out, nil
}
