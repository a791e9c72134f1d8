// uploader.go exports checkpoints in the background during a run (`checkpoint.upload: s3://...`), so that
// training never waits for the network. Enqueue hard-links the checkpoint's files into a hidden staging
// directory next to it (microseconds, and immune to local retention deleting the checkpoint meanwhile) and
// returns; one goroutine exports the queue in order, applies remote retention after each success, logs with
// slog and records errors. Close waits for what is pending.

package objstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sparrow-rl/sparrow/checkpoints"
)

// UploaderOptions tunes an Uploader.
type UploaderOptions struct {
	Export    ExportOptions // Name is ignored: each checkpoint keeps its own
	KeepLast  int           // remote retention after each upload, as checkpoints.Prune; both 0 = no remote pruning
	KeepEvery int
}

// Uploader exports checkpoints to one remote prefix in the background.
type Uploader struct {
	s    *Store
	dst  URL
	opts UploaderOptions

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	queue   []uploadJob
	busy    string // name being uploaded
	closed  bool
	errs    []error
	reports []Report
	cleaned map[string]bool // parents whose stale staging directories were removed
}

type uploadJob struct {
	dir    string // the checkpoint directory
	name   string
	staged string // hard-linked copy to upload from ("" = upload from dir)
}

// stagingPrefix names the hidden staging directories (checkpoints.List and Prune ignore dot names).
const stagingPrefix = ".upload-"

// NewUploader starts an uploader of checkpoints to dst (a run's checkpoints prefix).
func NewUploader(s *Store, dst URL, opts UploaderOptions) *Uploader {
	ctx, cancel := context.WithCancel(context.Background())
	u := &Uploader{s: s, dst: dst, opts: opts, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), done: make(chan struct{}), cleaned: map[string]bool{}}
	go u.run()
	return u
}

// Enqueue schedules the checkpoint in dir for upload and returns at once. Errors (here or during the
// upload) are logged and returned by Err and Close.
func (u *Uploader) Enqueue(dir string) {
	dir = filepath.Clean(dir)
	name := filepath.Base(dir)
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		u.fail(fmt.Errorf("upload %s: enqueued after Close", dir))
		return
	}
	parent := filepath.Dir(dir)
	clean := !u.cleaned[parent]
	u.cleaned[parent] = true
	u.mu.Unlock()
	if clean {
		removeStaging(parent)
	}
	staged, err := stage(dir)
	if err != nil {
		u.s.log.Warn("checkpoint upload: could not hard-link the checkpoint; uploading from its directory", "dir", dir, "err", err)
		staged = ""
	}
	u.mu.Lock()
	u.queue = append(u.queue, uploadJob{dir: dir, name: name, staged: staged})
	n := len(u.queue)
	u.mu.Unlock()
	u.s.log.Info("checkpoint upload queued", "name", name, "to", u.dst.String(), "queued", n)
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// stage hard-links dir's regular files into a fresh hidden directory beside it.
func stage(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, checkpoints.ManifestFile)); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), stagingPrefix+filepath.Base(dir)+"-")
	if err != nil {
		return "", err
	}
	ents, err := os.ReadDir(dir)
	if err == nil {
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			if err = os.Link(filepath.Join(dir, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
				break
			}
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// removeStaging deletes staging directories left in parent by an earlier process.
func removeStaging(parent string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), stagingPrefix) {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

func (u *Uploader) fail(err error) {
	u.s.log.Error("checkpoint upload failed", "err", err)
	u.mu.Lock()
	u.errs = append(u.errs, err)
	u.mu.Unlock()
}

func (u *Uploader) run() {
	defer close(u.done)
	for {
		u.mu.Lock()
		if len(u.queue) == 0 {
			closed := u.closed
			u.mu.Unlock()
			if closed || u.ctx.Err() != nil {
				return
			}
			select {
			case <-u.wake:
			case <-u.ctx.Done():
			}
			continue
		}
		j := u.queue[0]
		u.queue = u.queue[1:]
		u.busy = j.name
		u.mu.Unlock()

		if u.ctx.Err() != nil {
			u.fail(fmt.Errorf("upload %s: not started: %w", j.name, u.ctx.Err()))
		} else {
			u.upload(j)
		}
		if j.staged != "" {
			os.RemoveAll(j.staged)
		}
		u.mu.Lock()
		u.busy = ""
		u.mu.Unlock()
	}
}

func (u *Uploader) upload(j uploadJob) {
	src := j.dir
	if j.staged != "" {
		src = j.staged
	}
	opts := u.opts.Export
	opts.Name = j.name
	rep, err := u.s.Export(u.ctx, src, u.dst, opts)
	if err != nil {
		u.fail(fmt.Errorf("upload checkpoint %s: %w", j.name, err))
		return
	}
	u.mu.Lock()
	u.reports = append(u.reports, rep)
	u.mu.Unlock()
	if u.opts.KeepLast > 0 || u.opts.KeepEvery > 0 {
		if _, err := u.s.PruneRemote(u.ctx, u.dst, u.opts.KeepLast, u.opts.KeepEvery); err != nil {
			u.fail(fmt.Errorf("after uploading %s: %w", j.name, err))
		}
	}
}

// Err returns the errors so far (nil if none).
func (u *Uploader) Err() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return errors.Join(u.errs...)
}

// Reports returns the reports of the uploads that succeeded, in order.
func (u *Uploader) Reports() []Report {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Report(nil), u.reports...)
}

// Close stops accepting checkpoints and waits for the pending uploads. If ctx ends first, the upload in
// progress is cancelled and the error names what was not uploaded. It returns every error recorded.
func (u *Uploader) Close(ctx context.Context) error {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
	select {
	case <-u.done:
	case <-ctx.Done():
		u.mu.Lock()
		var pending []string
		if u.busy != "" {
			pending = append(pending, u.busy)
		}
		for _, j := range u.queue {
			pending = append(pending, j.name)
		}
		u.mu.Unlock()
		u.cancel()
		<-u.done
		u.fail(fmt.Errorf("checkpoint uploads to %s abandoned (%s): %w", u.dst, strings.Join(pending, ", "), ctx.Err()))
	}
	u.cancel()
	return u.Err()
}
