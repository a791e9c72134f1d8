// import.go brings a checkpoint from object storage into a local cache directory and verifies it: a prefix
// without manifest.json is incomplete and refused; every file is downloaded to a temporary file, checked
// against the manifest's size and SHA-256 (a mismatch is refused with a message naming the file) and renamed
// into place; manifest.json is written locally last; the directory must then pass checkpoints.Load. Files
// already in the cache with the right checksum are not downloaded again.
//
// Resolve is what `--resume`, `init_from` and `trainer eval --checkpoint` call: local paths pass through,
// s3:// URLs are imported (a run's checkpoints prefix resolves through its `latest` object).

package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/sparrow-rl/sparrow/checkpoints"
)

// ErrIncomplete is wrapped by errors about a prefix that holds checkpoint files but no manifest.json (an
// export in progress, or one that failed).
var ErrIncomplete = errors.New("incomplete checkpoint: no manifest.json")

// DefaultCacheDir is where imports go when no cache directory is given: $XDG_CACHE_HOME/sparrow/checkpoints
// (or ~/.cache/...), else the system temporary directory.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "sparrow", "checkpoints")
	}
	return filepath.Join(os.TempDir(), "sparrow-checkpoints")
}

// CacheDir returns the local directory Import uses for src under cacheDir: cacheDir/<bucket>/<prefix>.
func CacheDir(cacheDir string, src URL) string {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	return filepath.Join(cacheDir, src.Bucket, filepath.FromSlash(src.Prefix))
}

// Import downloads the checkpoint at src (s3://bucket/prefix/<name>) with a Store made from the environment;
// see Store.Import.
func Import(ctx context.Context, src URL, cacheDir string) (string, error) {
	s, err := NewFromEnv()
	if err != nil {
		return "", err
	}
	return s.Import(ctx, src, cacheDir)
}

// Resolve returns ref unchanged when it is a local path, and otherwise imports it with a Store made from the
// environment; see Store.Resolve.
func Resolve(ctx context.Context, ref, cacheDir string) (string, error) {
	if !IsURL(ref) {
		return ref, nil
	}
	s, err := NewFromEnv()
	if err != nil {
		return "", err
	}
	return s.Resolve(ctx, ref, cacheDir)
}

// Resolve returns ref unchanged when it is a local path. An s3:// URL is either a checkpoint (it holds
// manifest.json) or a run's checkpoints prefix (it holds a `latest` object naming one); either way the
// checkpoint is imported into cacheDir ("" = DefaultCacheDir) and its local directory returned.
func (s *Store) Resolve(ctx context.Context, ref, cacheDir string) (string, error) {
	if !IsURL(ref) {
		return ref, nil
	}
	u, err := ParseURL(ref)
	if err != nil {
		return "", err
	}
	if _, ok, err := s.stat(ctx, u.Bucket, u.Key(checkpoints.ManifestFile)); err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	} else if ok {
		return s.Import(ctx, u, cacheDir)
	}
	b, ok, err := s.getSmall(ctx, u.Bucket, u.Key(checkpoints.LatestFile))
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	if ok {
		name := strings.TrimSpace(string(b))
		if _, _, err := checkpoints.ParseName(name); err != nil {
			return "", fmt.Errorf("resolve %s: %s: %w", ref, u.Key(checkpoints.LatestFile), err)
		}
		return s.Import(ctx, u.Join(name), cacheDir)
	}
	return s.Import(ctx, u, cacheDir) // says whether the prefix is empty or incomplete
}

// getSmall reads a small object whole; ok=false when it does not exist.
func (s *Store) getSmall(ctx context.Context, bucket, key string) (b []byte, ok bool, err error) {
	err = s.withRetry(ctx, "download s3://"+bucket+"/"+key, func(ctx context.Context) error {
		obj, err := s.client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer obj.Close()
		b, err = io.ReadAll(io.LimitReader(obj, 64<<20))
		if err != nil && isNotFound(err) {
			return permanent(errNotFound)
		}
		return err
	})
	if errors.Is(err, errNotFound) {
		return nil, false, nil
	}
	return b, err == nil, err
}

// Import downloads the checkpoint at src into CacheDir(cacheDir, src), verifies it, and returns that
// directory; see the file comment.
func (s *Store) Import(ctx context.Context, src URL, cacheDir string) (string, error) {
	manBytes, ok, err := s.getSmall(ctx, src.Bucket, src.Key(checkpoints.ManifestFile))
	if err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	if !ok {
		objs, lerr := s.list(ctx, src.Bucket, src.dirPrefix(), false)
		switch {
		case lerr != nil:
			return "", fmt.Errorf("import %s: no %s, and listing the prefix failed: %w", src, checkpoints.ManifestFile, lerr)
		case len(objs) > 0:
			return "", fmt.Errorf("import %s: %w (%d objects under the prefix: an export in progress or interrupted)", src, ErrIncomplete, len(objs))
		}
		return "", fmt.Errorf("import %s: no checkpoint there (neither %s nor %s)", src, checkpoints.ManifestFile, checkpoints.LatestFile)
	}
	man, err := parseManifest(manBytes, src.Key(checkpoints.ManifestFile))
	if err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	dir := CacheDir(cacheDir, src)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	// A cached manifest that is not this one must go before any file changes (the local twin of Export's rule).
	localMan := filepath.Join(dir, checkpoints.ManifestFile)
	if old, err := os.ReadFile(localMan); err == nil && !bytes.Equal(old, manBytes) {
		if err := os.Remove(localMan); err != nil {
			return "", fmt.Errorf("import %s: %w", src, err)
		}
	}
	var got, reused int64
	for _, f := range sortedFiles(man) {
		e := man.Files[f]
		path := filepath.Join(dir, f)
		if verifyFile(ctx, path, e) == nil {
			reused += e.Size
			continue
		}
		if err := s.download(ctx, src, f, e, path); err != nil {
			return "", fmt.Errorf("import %s: %w", src, err)
		}
		got += e.Size
	}
	if err := removeUnlisted(dir, man); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	if err := writeFileAtomic(localMan, manBytes); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	if _, err := checkpoints.Load(dir, checkpoints.LoadOptions{}); err != nil {
		return "", fmt.Errorf("import %s: the downloaded checkpoint does not load: %w", src, err)
	}
	s.log.Info("imported checkpoint", "url", src.String(), "dir", dir, "downloaded_bytes", got, "cached_bytes", reused)
	return dir, nil
}

// download fetches src/file into path through a temporary file in the same directory, verifying size and
// SHA-256 against e; transient errors restart the download.
func (s *Store) download(ctx context.Context, src URL, file string, e checkpoints.FileEntry, path string) error {
	key := src.Key(file)
	where := "s3://" + src.Bucket + "/" + key
	return s.withRetry(ctx, "download "+where, func(ctx context.Context) error {
		obj, err := s.client.GetObject(ctx, src.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer obj.Close()
		tmp := filepath.Join(filepath.Dir(path), ".dl-"+file+"-"+randHex())
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return permanent(err)
		}
		ok := false
		defer func() {
			if !ok {
				f.Close()
				os.Remove(tmp)
			}
		}()
		h := sha256.New()
		// Read at most one byte more than the manifest says, to tell "longer" from "right".
		n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(obj, e.Size+1))
		if err != nil {
			if isNotFound(err) {
				return permanent(fmt.Errorf("%s: listed in %s but missing", where, checkpoints.ManifestFile))
			}
			return err
		}
		if n != e.Size {
			return permanent(fmt.Errorf("%s: size mismatch: object has %s bytes, %s says %d", where, sizeText(n, e.Size), checkpoints.ManifestFile, e.Size))
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != e.SHA256 {
			return permanent(fmt.Errorf("%s: checksum mismatch: sha256 %s, %s says %s", where, sum, checkpoints.ManifestFile, e.SHA256))
		}
		if err := f.Sync(); err != nil {
			return permanent(err)
		}
		if err := f.Close(); err != nil {
			return permanent(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return permanent(err)
		}
		ok = true
		return nil
	})
}

// removeUnlisted deletes what the cache directory holds besides the manifest's files: files of an earlier
// checkpoint imported from the same URL, leftovers of interrupted downloads.
func removeUnlisted(dir string, man *checkpoints.Manifest) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if _, ok := man.Files[e.Name()]; ok || e.Name() == checkpoints.ManifestFile || e.IsDir() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func sizeText(n, want int64) string {
	if n > want {
		return fmt.Sprintf("more than %d", want)
	}
	return fmt.Sprint(n)
}

// writeFileAtomic writes b to path through a temporary file, fsync and rename, then fsyncs the directory.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp-" + randHex()
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func randHex() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
