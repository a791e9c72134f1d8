// manifest.go is manifest.json, the seal of a Sparrow checkpoint: the format version and the size and
// SHA-256 of every other file, written last inside the temporary directory. Files are hashed while they
// are written and verified while they are read, so each file is read once.

package checkpoints

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"
)

// File names inside a checkpoint directory.
const (
	ModelFile            = "model.safetensors"
	ModelIndexFile       = "model.safetensors.index.json"
	ConfigFile           = "config.json"
	GenerationConfigFile = "generation_config.json"
	TokenizerFile        = "tokenizer.json"
	TrainerStateFile     = "trainer_state.json"
	OptimizerFile        = "optimizer.safetensors"
	ManifestFile         = "manifest.json"
	LatestFile           = "latest"
)

// Format and FormatVersion identify manifest.json.
const (
	Format        = "sparrow-checkpoint"
	FormatVersion = 1
)

// FileEntry is the size and SHA-256 (hex) of one file.
type FileEntry struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest is manifest.json.
type Manifest struct {
	Format        string               `json:"format"`
	FormatVersion int                  `json:"format_version"`
	Name          string               `json:"name"`
	Stage         string               `json:"stage,omitempty"`
	Step          int                  `json:"step"`
	Created       time.Time            `json:"created"`
	Files         map[string]FileEntry `json:"files"`
}

// readManifest reads dir/manifest.json; a missing file returns (nil, nil).
func readManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(path)
	if errNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: bad JSON: %w", path, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%s: format %q, want %q", path, m.Format, Format)
	}
	if m.FormatVersion < 1 || m.FormatVersion > FormatVersion {
		return nil, fmt.Errorf("%s: format_version %d is not supported (this build reads up to %d)", path, m.FormatVersion, FormatVersion)
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("%s: lists no files", path)
	}
	for name := range m.Files {
		if name != filepath.Base(name) || name == ManifestFile || name == "." || name == ".." {
			return nil, fmt.Errorf("%s: invalid file name %q", path, name)
		}
	}
	return &m, nil
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeFile creates dir/name (which must not exist), lets write fill it through a 1 MiB buffer while
// hashing, flushes and fsyncs it, and returns its manifest entry.
func writeFile(dir, name string, write func(w io.Writer) error) (FileEntry, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return FileEntry{}, err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileEntry{}, fmt.Errorf("write %s: %w", path, err)
	}
	return FileEntry{Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// verifiedFile reads one checkpoint file once, hashing what passes; finish checks the digest.
type verifiedFile struct {
	path string
	f    *os.File
	size int64
	h    hash.Hash
	want *FileEntry
	r    io.Reader
}

// openVerified opens dir/name. With a manifest the file must be listed and have the listed size.
func openVerified(dir, name string, man *Manifest) (*verifiedFile, error) {
	path := filepath.Join(dir, name)
	v := &verifiedFile{path: path}
	if man != nil {
		e, ok := man.Files[name]
		if !ok {
			return nil, fmt.Errorf("%s: not listed in %s", path, ManifestFile)
		}
		v.want = &e
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("checkpoint file: %w", err)
	}
	v.f, v.size = f, st.Size()
	if v.want != nil {
		switch {
		case v.size < v.want.Size:
			f.Close()
			return nil, fmt.Errorf("%s: truncated file: %d bytes, %s says %d", path, v.size, ManifestFile, v.want.Size)
		case v.size != v.want.Size:
			f.Close()
			return nil, fmt.Errorf("%s: size mismatch: %d bytes, %s says %d", path, v.size, ManifestFile, v.want.Size)
		}
		v.h = sha256.New()
		v.r = io.TeeReader(f, v.h)
	} else {
		v.r = f
	}
	return v, nil
}

// finish reads what is left of the file (so the digest covers all of it), closes it and compares the digest.
func (v *verifiedFile) finish() error {
	defer v.f.Close()
	if v.want == nil {
		return nil
	}
	if _, err := io.Copy(io.Discard, v.r); err != nil {
		return fmt.Errorf("%s: %w", v.path, err)
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.SHA256 {
		return fmt.Errorf("%s: checksum mismatch: sha256 %s, %s says %s", v.path, got, ManifestFile, v.want.SHA256)
	}
	return nil
}

func (v *verifiedFile) close() { v.f.Close() }

// explain closes the file after a parse error; when the file is also damaged (its digest differs from the
// manifest's) the error says so first, since the parse error is only a symptom.
func (v *verifiedFile) explain(err error) error {
	if v.want == nil {
		v.close()
		return err
	}
	if ferr := v.finish(); ferr != nil {
		return fmt.Errorf("%w (reading it: %v)", ferr, err)
	}
	return err
}

// readVerified reads a small file whole, verified against the manifest when there is one.
func readVerified(dir, name string, man *Manifest) ([]byte, error) {
	v, err := openVerified(dir, name, man)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(v.r)
	if err != nil {
		v.close()
		return nil, fmt.Errorf("%s: %w", v.path, err)
	}
	if err := v.finish(); err != nil {
		return nil, err
	}
	return b, nil
}

// syncDir fsyncs a directory so that the entries created or renamed in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
