// export.go uploads a local checkpoint directory to s3://bucket/prefix/<name>/ so that readers only ever
// see complete checkpoints: the data files go first (multipart with parallel parts for large files, each
// object carrying its SHA-256 in user metadata, since multipart ETags are not content hashes), manifest.json
// last, then s3://bucket/prefix/latest is pointed at the checkpoint. A reader treats a prefix without a
// manifest as incomplete. Exporting again to a prefix whose manifest exists first deletes that manifest
// (unless nothing at all changes), so no reader pairs an old manifest with new files; files already present
// with the right size and checksum are skipped, so a re-run after a failure only sends what is missing.

package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sparrow-rl/sparrow/checkpoints"
)

// metaSHA256 is the user-metadata key (x-amz-meta-sha256) holding an object's SHA-256 in hex.
const metaSHA256 = "sha256"

// ExportOptions tunes Export.
type ExportOptions struct {
	Name     string // checkpoint name under dst (default: the base name of localDir); must be <stage>-<step>
	PartSize uint64 // multipart part size in bytes (default 16 MiB, at least 5 MiB); smaller files go in one PUT
	Threads  uint   // parts uploaded in parallel per file (default 4)
	NoLatest bool   // do not point dst/latest at this checkpoint
	// Progress, when set, is called as bytes of a file are sent (sent counts again after a retry).
	Progress func(file string, sent, total int64)
}

const (
	defaultPartSize = 16 << 20
	minPartSize     = 5 << 20
	defaultThreads  = 4
)

// Report says what an export did.
type Report struct {
	Checkpoint    string   `json:"checkpoint"`     // checkpoint name
	URL           string   `json:"url"`            // s3://bucket/prefix/<name>
	Files         int      `json:"files"`          // files of the checkpoint, manifest.json included
	Bytes         int64    `json:"bytes"`          // their total size
	Uploaded      int      `json:"uploaded"`       // files sent
	UploadedBytes int64    `json:"uploaded_bytes"` // bytes sent
	Skipped       []string `json:"skipped"`        // files already present with the right checksum
	Seconds       float64  `json:"seconds"`        // wall time of the whole export
	MBPerSec      float64  `json:"mb_per_s"`       // UploadedBytes / Seconds / 1e6
}

// Export uploads the checkpoint in localDir to dst/<name>/ with a Store made from the environment
// (ConfigFromEnv); see Store.Export.
func Export(ctx context.Context, localDir string, dst URL, opts ExportOptions) (Report, error) {
	s, err := NewFromEnv()
	if err != nil {
		return Report{}, err
	}
	return s.Export(ctx, localDir, dst, opts)
}

// parseManifest decodes and checks a manifest.json read from where.
func parseManifest(b []byte, where string) (*checkpoints.Manifest, error) {
	var m checkpoints.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: bad JSON: %w", where, err)
	}
	if m.Format != checkpoints.Format {
		return nil, fmt.Errorf("%s: format %q, want %q", where, m.Format, checkpoints.Format)
	}
	if m.FormatVersion < 1 || m.FormatVersion > checkpoints.FormatVersion {
		return nil, fmt.Errorf("%s: format_version %d is not supported (this build reads up to %d)", where, m.FormatVersion, checkpoints.FormatVersion)
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("%s: lists no files", where)
	}
	for name, e := range m.Files {
		if name != filepath.Base(name) || strings.ContainsAny(name, `/\`) || name == checkpoints.ManifestFile || name == "." || name == ".." || name == "" {
			return nil, fmt.Errorf("%s: invalid file name %q", where, name)
		}
		if e.Size < 0 || len(e.SHA256) != 64 {
			return nil, fmt.Errorf("%s: file %s: bad entry (size %d, sha256 %q)", where, name, e.Size, e.SHA256)
		}
	}
	return &m, nil
}

// sortedFiles returns the manifest's file names, sorted.
func sortedFiles(m *checkpoints.Manifest) []string {
	names := make([]string, 0, len(m.Files))
	for n := range m.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func contentType(file string) string {
	if strings.HasSuffix(file, ".json") {
		return "application/json"
	}
	return "application/octet-stream"
}

// userMeta returns an object's user metadata value for key, whatever the case the server returned it in.
func userMeta(info minio.ObjectInfo, key string) string {
	for k, v := range info.UserMetadata {
		if strings.EqualFold(k, key) || strings.EqualFold(k, "X-Amz-Meta-"+key) {
			return v
		}
	}
	return ""
}

// stat returns the object's info, ok=false when it does not exist.
func (s *Store) stat(ctx context.Context, bucket, key string) (info minio.ObjectInfo, ok bool, err error) {
	err = s.withRetry(ctx, "stat s3://"+bucket+"/"+key, func(ctx context.Context) error {
		var e error
		info, e = s.client.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
		if e != nil && isNotFound(e) {
			return permanent(errNotFound)
		}
		return e
	})
	if errors.Is(err, errNotFound) {
		return minio.ObjectInfo{}, false, nil
	}
	return info, err == nil, err
}

var errNotFound = errors.New("not found")

// Export uploads the checkpoint in localDir to dst/<name>/ (see the file comment), then points dst/latest
// at it. The local files are verified against their manifest while they are sent; a mismatch fails the
// export and removes the bad object.
func (s *Store) Export(ctx context.Context, localDir string, dst URL, opts ExportOptions) (Report, error) {
	start := time.Now()
	name := opts.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(localDir))
	}
	if _, _, err := checkpoints.ParseName(name); err != nil {
		return Report{}, fmt.Errorf("export %s: %w", localDir, err)
	}
	if opts.PartSize == 0 {
		opts.PartSize = defaultPartSize
	}
	if opts.PartSize < minPartSize {
		return Report{}, fmt.Errorf("export %s: part size %d is below S3's minimum of %d bytes", localDir, opts.PartSize, minPartSize)
	}
	if opts.Threads == 0 {
		opts.Threads = defaultThreads
	}
	target := dst.Join(name)
	rep := Report{Checkpoint: name, URL: target.String(), Skipped: []string{}}

	manPath := filepath.Join(localDir, checkpoints.ManifestFile)
	manBytes, err := os.ReadFile(manPath)
	if err != nil {
		return rep, fmt.Errorf("export %s: not a complete checkpoint: %w", localDir, err)
	}
	man, err := parseManifest(manBytes, manPath)
	if err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	files := sortedFiles(man)
	for _, f := range files {
		path := filepath.Join(localDir, f)
		st, err := os.Stat(path)
		if err != nil {
			return rep, fmt.Errorf("export %s: %w", localDir, err)
		}
		if st.Size() != man.Files[f].Size {
			return rep, fmt.Errorf("export %s: %s is %d bytes, %s says %d", localDir, path, st.Size(), checkpoints.ManifestFile, man.Files[f].Size)
		}
		rep.Bytes += st.Size()
	}
	rep.Files = len(files) + 1
	rep.Bytes += int64(len(manBytes))
	manSum := sha256.Sum256(manBytes)
	manSHA := hex.EncodeToString(manSum[:])

	// What is there already?
	var todo []string
	for _, f := range files {
		info, ok, err := s.stat(ctx, target.Bucket, target.Key(f))
		if err != nil {
			return rep, fmt.Errorf("export %s: %w", localDir, err)
		}
		if ok && info.Size == man.Files[f].Size && userMeta(info, metaSHA256) == man.Files[f].SHA256 {
			rep.Skipped = append(rep.Skipped, f)
		} else {
			todo = append(todo, f)
		}
	}
	manKey := target.Key(checkpoints.ManifestFile)
	remoteMan, haveMan, err := s.stat(ctx, target.Bucket, manKey)
	if err != nil {
		return rep, fmt.Errorf("export %s: %w", localDir, err)
	}
	sameMan := haveMan && remoteMan.Size == int64(len(manBytes)) && userMeta(remoteMan, metaSHA256) == manSHA
	if haveMan && (!sameMan || len(todo) > 0) {
		// The manifest goes first, so that no reader pairs it with the files about to change.
		if err := s.remove(ctx, target.Bucket, manKey); err != nil {
			return rep, fmt.Errorf("export %s: remove the previous manifest before re-exporting: %w", localDir, err)
		}
		s.log.Info("export: removed the previous manifest before re-exporting", "url", target.String())
		haveMan = false
	}
	if !haveMan {
		if err := s.removeExtra(ctx, target, man); err != nil {
			return rep, fmt.Errorf("export %s: %w", localDir, err)
		}
	}

	for _, f := range todo {
		if err := s.uploadFile(ctx, filepath.Join(localDir, f), target, f, man.Files[f], opts); err != nil {
			return rep, fmt.Errorf("export %s: %w", localDir, err)
		}
		rep.Uploaded++
		rep.UploadedBytes += man.Files[f].Size
	}
	if haveMan {
		rep.Skipped = append(rep.Skipped, checkpoints.ManifestFile)
	} else {
		if err := s.putBytes(ctx, target.Bucket, manKey, manBytes, manSHA); err != nil {
			return rep, fmt.Errorf("export %s: %w", localDir, err)
		}
		rep.Uploaded++
		rep.UploadedBytes += int64(len(manBytes))
	}
	if !opts.NoLatest {
		latest := []byte(name + "\n")
		sum := sha256.Sum256(latest)
		if err := s.putBytes(ctx, dst.Bucket, dst.Key(checkpoints.LatestFile), latest, hex.EncodeToString(sum[:])); err != nil {
			return rep, fmt.Errorf("export %s: %w", localDir, err)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	if rep.Seconds > 0 {
		rep.MBPerSec = float64(rep.UploadedBytes) / rep.Seconds / 1e6
	}
	s.log.Info("exported checkpoint", "url", rep.URL, "files", rep.Files, "uploaded", rep.Uploaded, "skipped", len(rep.Skipped),
		"bytes", rep.UploadedBytes, "seconds", fmt.Sprintf("%.2f", rep.Seconds), "mb_per_s", fmt.Sprintf("%.1f", rep.MBPerSec))
	return rep, nil
}

// remove deletes one object (absent is fine).
func (s *Store) remove(ctx context.Context, bucket, key string) error {
	return s.withRetry(ctx, "remove s3://"+bucket+"/"+key, func(ctx context.Context) error {
		err := s.client.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{})
		if err != nil && isNotFound(err) {
			return nil
		}
		return err
	})
}

// list returns the keys under prefix (recursively).
func (s *Store) list(ctx context.Context, bucket, prefix string, recursive bool) ([]minio.ObjectInfo, error) {
	var out []minio.ObjectInfo
	err := s.withRetry(ctx, "list s3://"+bucket+"/"+prefix, func(ctx context.Context) error {
		out = out[:0]
		for o := range s.client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: recursive}) {
			if o.Err != nil {
				return o.Err
			}
			out = append(out, o)
		}
		return nil
	})
	return out, err
}

// removeExtra deletes objects under target/ that the manifest does not list (left by an earlier export of
// a checkpoint with other files), so that the prefix holds exactly the checkpoint.
func (s *Store) removeExtra(ctx context.Context, target URL, man *checkpoints.Manifest) error {
	objs, err := s.list(ctx, target.Bucket, target.dirPrefix(), true)
	if err != nil {
		return err
	}
	for _, o := range objs {
		f := strings.TrimPrefix(o.Key, target.dirPrefix())
		if _, ok := man.Files[f]; ok || f == checkpoints.ManifestFile {
			continue
		}
		if err := s.remove(ctx, target.Bucket, o.Key); err != nil {
			return err
		}
		s.log.Info("export: removed an object the new manifest does not list", "key", o.Key)
	}
	return nil
}

// putBytes uploads a small object with its SHA-256 in metadata.
func (s *Store) putBytes(ctx context.Context, bucket, key string, b []byte, sha string) error {
	return s.withRetry(ctx, "upload s3://"+bucket+"/"+key, func(ctx context.Context) error {
		_, err := s.client.PutObject(ctx, bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{
			UserMetadata: map[string]string{metaSHA256: sha}, ContentType: contentType(key)})
		return err
	})
}

// progressReader is minio-go's progress hook: it is "read" as many bytes as have been sent.
// Parallel parts call it concurrently.
type progressReader struct {
	mu         sync.Mutex
	file       string
	sent, size int64
	fn         func(file string, sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent += int64(len(b))
	p.fn(p.file, p.sent, p.size)
	return len(b), nil
}

// uploadFile sends localDir/file to target/file while a second goroutine verifies the local file against
// its manifest entry; on a mismatch the object is removed and the export fails.
func (s *Store) uploadFile(ctx context.Context, path string, target URL, file string, e checkpoints.FileEntry, opts ExportOptions) error {
	key := target.Key(file)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	verified := make(chan error, 1)
	go func() { verified <- verifyFile(hctx, path, e) }()

	err := s.withRetry(ctx, fmt.Sprintf("upload %s to s3://%s/%s", path, target.Bucket, key), func(ctx context.Context) error {
		f, err := os.Open(path)
		if err != nil {
			return permanent(err)
		}
		defer f.Close()
		po := minio.PutObjectOptions{
			UserMetadata: map[string]string{metaSHA256: e.SHA256},
			ContentType:  contentType(file),
			PartSize:     opts.PartSize,
			NumThreads:   opts.Threads,
		}
		if opts.Progress != nil {
			po.Progress = &progressReader{file: file, size: e.Size, fn: opts.Progress}
		}
		info, err := s.client.PutObject(ctx, target.Bucket, key, f, e.Size, po)
		if err != nil {
			return err
		}
		if info.Size != e.Size {
			return fmt.Errorf("the server stored %d bytes, want %d", info.Size, e.Size)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if verr := <-verified; verr != nil {
		if rerr := s.remove(ctx, target.Bucket, key); rerr != nil {
			s.log.Error("export: could not remove an object whose local file failed verification", "key", key, "err", rerr)
		}
		return fmt.Errorf("%w (the uploaded object was removed)", verr)
	}
	return nil
}

// verifyFile hashes path and compares it with e.
func verifyFile(ctx context.Context, path string, e checkpoints.FileEntry) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, &ctxReader{ctx: ctx, r: f})
	if err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	if n != e.Size {
		return fmt.Errorf("%s: size mismatch: %d bytes, %s says %d", path, n, checkpoints.ManifestFile, e.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		return fmt.Errorf("%s: checksum mismatch: sha256 %s, %s says %s", path, got, checkpoints.ManifestFile, e.SHA256)
	}
	return nil
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
