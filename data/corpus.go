// corpus.go defines the pre-training corpora: the Generator interface that synthetic task families implement,
// the train/held-out split (a pure function of a problem's key or a document's text, so an example lies in
// exactly one split by construction, whatever the seed), the Corpus interface the trainer draws documents
// from, with a small JSON-serialisable cursor (CorpusState) so that a resumed run sees exactly the documents
// an uninterrupted one would, and OpenCorpus, which builds a corpus from the YAML data section.
//
// A SyntheticCorpus draws problem i from a generator seeded by (Seed, i) alone, so its cursor is just the
// number of draws; it keeps the problems of its split and rejects the others (rejection sampling by InSplit).

package data

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
)

// Problem is one synthetic example. Key identifies the problem (e.g. "347+589"); the train/held-out split is
// a pure function of Key (a hash), so a problem is in exactly one split by construction, whatever the seed.
type Problem struct {
	Key  string
	Text string // the whole pre-training document: question, worked solution and answer
	// Answer is the final answer alone (e.g. "936"), for verifiers; empty when the problem has none.
	Answer string
}

// Generator draws synthetic problems. Task families (envs/) implement it.
type Generator interface {
	Name() string
	// Generate draws one problem from rng (deterministic given the rng state).
	Generate(rng *rand.Rand) Problem
}

// Split names one side of the train/held-out split.
type Split int

const (
	SplitTrain Split = iota
	SplitHeldOut
)

// String returns "train" or "held_out".
func (s Split) String() string {
	switch s {
	case SplitTrain:
		return "train"
	case SplitHeldOut:
		return "held_out"
	default:
		return fmt.Sprintf("split(%d)", int(s))
	}
}

// ParseSplit is the inverse of Split.String.
func ParseSplit(s string) (Split, error) {
	switch s {
	case "train":
		return SplitTrain, nil
	case "held_out":
		return SplitHeldOut, nil
	}
	return 0, fmt.Errorf("unknown split %q (want train or held_out)", s)
}

// SplitHash maps key to [0,1): the first 8 bytes of SHA-256(key), big-endian, top 53 bits over 2⁵³.
func SplitHash(key string) float64 {
	h := sha256.Sum256([]byte(key))
	return float64(binary.BigEndian.Uint64(h[:8])>>11) / (1 << 53)
}

// InSplit returns SplitHeldOut when SplitHash(key) < heldOut, SplitTrain otherwise: a fraction heldOut of all
// keys is held out, and the same key always lands on the same side.
func InSplit(key string, heldOut float64) Split {
	if SplitHash(key) < heldOut {
		return SplitHeldOut
	}
	return SplitTrain
}

// Corpus is a deterministic, resumable stream of documents.
type Corpus interface {
	// Next returns the next document.
	Next() (string, error)
	// State is the cursor after the documents returned so far.
	State() CorpusState
	// Restore moves the cursor to a state taken from a corpus opened with the same configuration and split.
	Restore(CorpusState) error
	// Close releases open files.
	Close() error
}

// CorpusState is a corpus cursor. It is small and JSON-serialisable; it goes into trainer checkpoints.
type CorpusState struct {
	Source    string `json:"source"`              // synthetic, jsonl or parquet
	Split     string `json:"split"`               // train or held_out
	Generator string `json:"generator,omitempty"` // synthetic: the generator's name
	Seed      int64  `json:"seed,omitempty"`      // synthetic: the seed of the draws
	Draws     int64  `json:"draws,omitempty"`     // synthetic: problems drawn, kept and rejected
	Docs      int64  `json:"docs"`                // documents returned by Next
	Epoch     int64  `json:"epoch,omitempty"`     // files: completed passes over the file
	EpochDocs int64  `json:"epoch_docs,omitempty"`
	File      int64  `json:"file,omitempty"`   // files: index of the current file in name order
	Files     int64  `json:"files,omitempty"`  // files: number of files, checked on restore
	Row       int64  `json:"row,omitempty"`    // files: index of the next row to read in the current file
	Offset    int64  `json:"offset,omitempty"` // jsonl: byte offset of the next line
	Line      int64  `json:"line,omitempty"`   // jsonl: lines read before Offset
	Rows      int64  `json:"rows,omitempty"`   // parquet: rows in the file, checked on restore
}

// CorpusConfig mirrors the data section of the YAML config (configs.Data).
type CorpusConfig struct {
	Source     string   `yaml:"source" json:"source"`       // synthetic | jsonl | parquet
	Generator  string   `yaml:"generator" json:"generator"` // synthetic: a registered generator, e.g. arithmetic
	Path       string   `yaml:"path" json:"path"`           // jsonl, parquet: a file, a directory or a glob
	TextColumn string   `yaml:"text_column" json:"text_column"`
	HeldOut    float64  `yaml:"held_out" json:"held_out"` // fraction of keys/documents held out, in [0,1)
	MaxDigits  int      `yaml:"max_digits" json:"max_digits"`
	Ops        []string `yaml:"ops" json:"ops"`
	// Params are the generator's own knobs (data.params: a task family's params), passed through as given.
	Params map[string]string `yaml:"params" json:"params,omitempty"`
	Seed   int64             `yaml:"seed" json:"seed"`
}

// DefaultTextColumn is the column read when TextColumn is empty.
const DefaultTextColumn = "text"

// GeneratorFactory builds a generator from the data section.
type GeneratorFactory func(cfg CorpusConfig) (Generator, error)

var (
	generatorsMu sync.RWMutex
	generators   = map[string]GeneratorFactory{
		"arithmetic": func(cfg CorpusConfig) (Generator, error) {
			g := ArithmeticGenerator{MaxDigits: cfg.MaxDigits, Ops: cfg.Ops}
			if err := g.Validate(); err != nil {
				return nil, err
			}
			return g, nil
		},
	}
)

// RegisterGenerator makes a generator available to OpenCorpus under name (data.generator in the YAML).
// Registering a name twice is an error.
func RegisterGenerator(name string, f GeneratorFactory) error {
	generatorsMu.Lock()
	defer generatorsMu.Unlock()
	if _, ok := generators[name]; ok {
		return fmt.Errorf("data: generator %q is already registered", name)
	}
	generators[name] = f
	return nil
}

// GeneratorNames lists the registered generators, sorted.
func GeneratorNames() []string {
	generatorsMu.RLock()
	defer generatorsMu.RUnlock()
	names := make([]string, 0, len(generators))
	for n := range generators {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// OpenCorpus opens the corpus described by cfg, restricted to split.
func OpenCorpus(cfg CorpusConfig, split Split) (Corpus, error) {
	if split != SplitTrain && split != SplitHeldOut {
		return nil, fmt.Errorf("data: unknown split %d", int(split))
	}
	if err := checkHeldOut(cfg.HeldOut, split); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	switch cfg.Source {
	case "synthetic":
		generatorsMu.RLock()
		f, ok := generators[cfg.Generator]
		generatorsMu.RUnlock()
		if !ok {
			return nil, fmt.Errorf("data: unknown data.generator %q (registered: %s)", cfg.Generator, strings.Join(GeneratorNames(), ", "))
		}
		g, err := f(cfg)
		if err != nil {
			return nil, fmt.Errorf("data: generator %q: %w", cfg.Generator, err)
		}
		return &SyntheticCorpus{Gen: g, HeldOut: cfg.HeldOut, Split: split, Seed: cfg.Seed}, nil
	case "jsonl", "parquet":
		if cfg.Path == "" {
			return nil, fmt.Errorf("data: source %s needs data.path", cfg.Source)
		}
		col := cfg.TextColumn
		if col == "" {
			col = DefaultTextColumn
		}
		if cfg.Source == "jsonl" {
			return OpenJSONLCorpus(cfg.Path, col, cfg.HeldOut, split)
		}
		return OpenParquetCorpus(cfg.Path, col, cfg.HeldOut, split)
	default:
		return nil, fmt.Errorf("data: unknown data.source %q (want synthetic, jsonl or parquet)", cfg.Source)
	}
}

func checkHeldOut(heldOut float64, split Split) error {
	if !(heldOut >= 0 && heldOut < 1) {
		return fmt.Errorf("held_out %v is outside [0, 1)", heldOut)
	}
	if split == SplitHeldOut && heldOut == 0 {
		return fmt.Errorf("held_out is 0, so the held-out split is empty")
	}
	return nil
}

// maxRejections bounds the draws one Next may reject before SyntheticCorpus reports that its split looks empty.
const maxRejections = 1 << 20

// SyntheticCorpus yields the texts of Gen's problems that fall in Split. Draw i uses an rng seeded from
// (Seed, i) only, so the stream is a pure function of the seed and the cursor (the number of draws).
// Use it through a pointer; the zero cursor is the start of the stream.
type SyntheticCorpus struct {
	Gen     Generator
	HeldOut float64
	Split   Split
	Seed    int64

	draws, docs int64
	pcg         rand.PCG
	rng         *rand.Rand
}

// NextProblem returns the next problem of the corpus' split.
func (c *SyntheticCorpus) NextProblem() (Problem, error) {
	if c.Gen == nil {
		return Problem{}, fmt.Errorf("synthetic corpus: no generator")
	}
	if err := checkHeldOut(c.HeldOut, c.Split); err != nil {
		return Problem{}, fmt.Errorf("synthetic corpus %s: %w", c.Gen.Name(), err)
	}
	if c.rng == nil {
		c.rng = rand.New(&c.pcg)
	}
	for range maxRejections {
		c.pcg.Seed(splitmix64(uint64(c.Seed)), splitmix64(uint64(c.draws)^0x9e3779b97f4a7c15))
		c.draws++
		p := c.Gen.Generate(c.rng)
		if InSplit(p.Key, c.HeldOut) == c.Split {
			c.docs++
			return p, nil
		}
	}
	return Problem{}, fmt.Errorf("synthetic corpus %s: no problem in the %s split after %d draws (held_out %v)",
		c.Gen.Name(), c.Split, maxRejections, c.HeldOut)
}

// Next returns the text of the next problem of the corpus' split.
func (c *SyntheticCorpus) Next() (string, error) {
	p, err := c.NextProblem()
	return p.Text, err
}

// State returns the cursor.
func (c *SyntheticCorpus) State() CorpusState {
	name := ""
	if c.Gen != nil {
		name = c.Gen.Name()
	}
	return CorpusState{Source: "synthetic", Split: c.Split.String(), Generator: name, Seed: c.Seed, Draws: c.draws, Docs: c.docs}
}

// Restore moves the cursor to s, which must come from a corpus with the same generator, seed and split.
func (c *SyntheticCorpus) Restore(s CorpusState) error {
	if c.Gen == nil {
		return fmt.Errorf("synthetic corpus: no generator")
	}
	switch {
	case s.Source != "synthetic":
		return fmt.Errorf("synthetic corpus %s: cannot restore a %q corpus state", c.Gen.Name(), s.Source)
	case s.Generator != c.Gen.Name():
		return fmt.Errorf("synthetic corpus %s: state is for generator %q", c.Gen.Name(), s.Generator)
	case s.Split != c.Split.String():
		return fmt.Errorf("synthetic corpus %s: state is for split %q, corpus is %s", c.Gen.Name(), s.Split, c.Split)
	case s.Seed != c.Seed:
		return fmt.Errorf("synthetic corpus %s: state has seed %d, corpus has seed %d", c.Gen.Name(), s.Seed, c.Seed)
	case s.Draws < 0 || s.Docs < 0 || s.Docs > s.Draws:
		return fmt.Errorf("synthetic corpus %s: invalid cursor (draws %d, docs %d)", c.Gen.Name(), s.Draws, s.Docs)
	}
	c.draws, c.docs = s.Draws, s.Docs
	return nil
}

// Close does nothing: a synthetic corpus holds no files.
func (c *SyntheticCorpus) Close() error { return nil }

// splitmix64 is the SplitMix64 finaliser; it decorrelates neighbouring seeds and draw indices.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
