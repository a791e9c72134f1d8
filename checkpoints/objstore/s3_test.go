// s3_test.go tests export and import against a real S3 server (versitygw on loopback, see s3test): round
// trip of a real checkpoint with listing and Load, skip on re-export, re-export of changed content, an
// independent reader (awscli), a server killed mid-upload and restarted, corrupted objects, incomplete
// prefixes, Resolve, remote retention mirroring checkpoints.Prune, and the background Uploader.
package objstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore/s3test"
)

// checkSameCheckpoint loads both directories and compares every tensor bit for bit and the trainer state.
func checkSameCheckpoint(t *testing.T, got, want string) {
	t.Helper()
	g, err := checkpoints.Load(got, checkpoints.LoadOptions{})
	if err != nil {
		t.Fatalf("load %s: %v", got, err)
	}
	w, err := checkpoints.Load(want, checkpoints.LoadOptions{})
	if err != nil {
		t.Fatalf("load %s: %v", want, err)
	}
	for _, pair := range [][2][]checkpoints.Tensor{{g.Tensors, w.Tensors}, {g.Optimizer, w.Optimizer}} {
		if len(pair[0]) != len(pair[1]) {
			t.Fatalf("%d tensors, want %d", len(pair[0]), len(pair[1]))
		}
		for i := range pair[1] {
			a, b := pair[0][i], pair[1][i]
			if a.Name != b.Name || !slices.Equal(a.Shape, b.Shape) || len(a.Data) != len(b.Data) {
				t.Fatalf("tensor %d: %s %v, want %s %v", i, a.Name, a.Shape, b.Name, b.Shape)
			}
			for k := range b.Data {
				if math.Float32bits(a.Data[k]) != math.Float32bits(b.Data[k]) {
					t.Fatalf("%s[%d] = %g, want %g", b.Name, k, a.Data[k], b.Data[k])
				}
			}
		}
	}
	if g.State.Step != w.State.Step || g.State.Stage != w.State.Stage || g.State.TokensSeen != w.State.TokensSeen {
		t.Fatalf("trainer state %+v, want %+v", g.State, w.State)
	}
}

// watchConsistency polls the checkpoint at bucket/prefix until stop is closed, the way a reader would, and
// records a violation whenever a manifest is visible whose files are not all present with the manifest's
// size and SHA-256 metadata. It returns how many polls saw a manifest and the violations.
func watchConsistency(srv *s3test.Server, bucket, prefix string, stop <-chan struct{}) func() (int, []string) {
	cl := srv.Client()
	var mu sync.Mutex
	var seen int
	var bad []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx := context.Background()
		for {
			select {
			case <-stop:
				return
			default:
			}
			obj, err := cl.GetObject(ctx, bucket, prefix+"/manifest.json", minio.GetObjectOptions{})
			var man checkpoints.Manifest
			if err == nil {
				err = json.NewDecoder(obj).Decode(&man)
				obj.Close()
			}
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue // no manifest (or the server is down): nothing a reader would trust
			}
			mu.Lock()
			seen++
			mu.Unlock()
			for f, e := range man.Files {
				info, err := cl.StatObject(ctx, bucket, prefix+"/"+f, minio.StatObjectOptions{})
				if err != nil {
					if strings.Contains(err.Error(), "connection refused") {
						break // server down mid-check: the reader would fail, not trust
					}
					// The manifest may have been deleted meanwhile (a re-export starting): only a
					// manifest still there makes this a violation.
					if _, merr := cl.StatObject(ctx, bucket, prefix+"/manifest.json", minio.StatObjectOptions{}); merr == nil {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%s listed but missing: %v", f, err))
						mu.Unlock()
					}
					break
				}
				sha := ""
				for k, v := range info.UserMetadata {
					if strings.EqualFold(k, "sha256") {
						sha = v
					}
				}
				if info.Size != e.Size || sha != e.SHA256 {
					if _, merr := cl.StatObject(ctx, bucket, prefix+"/manifest.json", minio.StatObjectOptions{}); merr == nil {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%s: %d bytes sha %s, manifest says %d %s", f, info.Size, sha, e.Size, e.SHA256))
						mu.Unlock()
					}
				}
			}
		}
	}()
	return func() (int, []string) {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return seen, bad
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, logs := testStore(t, srv)
	ctx := ctxFor(t)
	local := saveCheckpoint(t, filepath.Join(t.TempDir(), "checkpoints"), tinyModel(), "pretrain", 20, 1)
	dst := mustURL(t, "s3://ckpts/runs/r1/checkpoints")

	rep, err := st.Export(ctx, local, dst, objstore.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	man := readManifest(t, local)
	if rep.Checkpoint != "pretrain-20" || rep.URL != "s3://ckpts/runs/r1/checkpoints/pretrain-20" || rep.Files != len(man.Files)+1 ||
		rep.Uploaded != rep.Files || len(rep.Skipped) != 0 || rep.UploadedBytes != rep.Bytes || rep.Bytes <= 0 {
		t.Fatalf("report %+v", rep)
	}

	// Listing: every object with its size and SHA-256 metadata, the manifest, latest.
	cl := srv.Client()
	var keys []string
	for o := range cl.ListObjects(ctx, "ckpts", minio.ListObjectsOptions{Prefix: "runs/r1/checkpoints/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	var want []string
	for f := range man.Files {
		want = append(want, "runs/r1/checkpoints/pretrain-20/"+f)
	}
	want = append(want, "runs/r1/checkpoints/pretrain-20/manifest.json", "runs/r1/checkpoints/latest")
	slices.Sort(want)
	slices.Sort(keys)
	if !slices.Equal(keys, want) {
		t.Fatalf("objects %v, want %v", keys, want)
	}
	for f, e := range man.Files {
		info, err := cl.StatObject(ctx, "ckpts", "runs/r1/checkpoints/pretrain-20/"+f, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != e.Size || info.UserMetadata["Sha256"] != e.SHA256 {
			t.Errorf("%s: size %d metadata %v, want %d sha256 %s", f, info.Size, info.UserMetadata, e.Size, e.SHA256)
		}
	}
	infos, err := st.List(ctx, dst)
	if err != nil || len(infos) != 1 || infos[0].Name != "pretrain-20" || infos[0].Step != 20 || infos[0].Stage != "pretrain" {
		t.Fatalf("List = %+v, %v", infos, err)
	}
	if l, err := st.Latest(ctx, dst); err != nil || l != "pretrain-20" {
		t.Fatalf("Latest = %q, %v", l, err)
	}

	// Import and Load, bit for bit.
	cache := t.TempDir()
	dir, err := st.Import(ctx, dst.Join("pretrain-20"), cache)
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(cache, "ckpts", "runs", "r1", "checkpoints", "pretrain-20") {
		t.Errorf("import dir %s", dir)
	}
	checkSameCheckpoint(t, dir, local)
	// A second import reuses the verified cache; a cached file that went bad is fetched again.
	if err := os.WriteFile(filepath.Join(dir, checkpoints.ConfigFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if dir2, err := st.Import(ctx, dst.Join("pretrain-20"), cache); err != nil || dir2 != dir {
		t.Fatalf("re-import: %s, %v", dir2, err)
	}
	checkSameCheckpoint(t, dir, local)

	// Re-export: everything is skipped, the manifest stays.
	rep2, err := st.Export(ctx, local, dst, objstore.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Uploaded != 0 || rep2.UploadedBytes != 0 || len(rep2.Skipped) != rep.Files {
		t.Fatalf("re-export report %+v, want everything skipped", rep2)
	}
	if strings.Contains(logs.String(), s3test.SecretKey) {
		t.Fatalf("the secret key reached the logs:\n%s", logs)
	}
}

func TestResolve(t *testing.T) {
	srv := startServer(t, "ckpts")
	srv.SetEnv(t) // the package-level functions read the environment
	ctx := ctxFor(t)
	root := filepath.Join(t.TempDir(), "checkpoints")
	first := saveCheckpoint(t, root, tinyModel(), "sft", 5, 3)
	second := saveCheckpoint(t, root, tinyModel(), "sft", 10, 4)
	dst := mustURL(t, "s3://ckpts/run7")
	for _, d := range []string{first, second} {
		if _, err := objstore.Export(ctx, d, dst, objstore.ExportOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cache := t.TempDir()
	tests := []struct {
		ref  string
		want string // local checkpoint the result must equal; "" = ref itself
	}{
		{second, ""},
		{"relative/dir", ""},
		{"s3://ckpts/run7", second},         // a run prefix: through latest
		{"s3://ckpts/run7/", second},        // trailing slash
		{"s3://ckpts/run7/sft-5", first},    // a checkpoint
		{"s3://ckpts/run7/sft-10/", second}, // a checkpoint, trailing slash
	}
	for _, tt := range tests {
		got, err := objstore.Resolve(ctx, tt.ref, cache)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", tt.ref, err)
		}
		if tt.want == "" {
			if got != tt.ref {
				t.Errorf("Resolve(%s) = %s, want it unchanged", tt.ref, got)
			}
			continue
		}
		if !strings.HasPrefix(got, cache) {
			t.Errorf("Resolve(%s) = %s, not under the cache %s", tt.ref, got, cache)
		}
		checkSameCheckpoint(t, got, tt.want)
	}
	for _, ref := range []string{"s3://ckpts/nothing-here", "s3://nobucket/x"} {
		if _, err := objstore.Resolve(ctx, ref, cache); err == nil {
			t.Errorf("Resolve(%s) succeeded", ref)
		}
	}
}

func TestReexportChangedCheckpoint(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	ctx := ctxFor(t)
	dst := mustURL(t, "s3://ckpts/run")
	a := saveCheckpoint(t, filepath.Join(t.TempDir(), "a"), sizedModel(128, 2), "pretrain", 100, 1)
	b := saveCheckpoint(t, filepath.Join(t.TempDir(), "b"), sizedModel(128, 2), "pretrain", 100, 2) // same name, other weights
	if _, err := st.Export(ctx, a, dst, objstore.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	// An object the new checkpoint does not have must go too.
	if _, err := srv.Client().PutObject(ctx, "ckpts", "run/pretrain-100/stray.bin", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	result := watchConsistency(srv, "ckpts", "run/pretrain-100", stop)
	time.Sleep(50 * time.Millisecond) // let the reader see the old, consistent manifest
	rep, err := st.Export(ctx, b, dst, objstore.ExportOptions{PartSize: 5 << 20})
	close(stop)
	seen, bad := result()
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("a reader saw a manifest with mismatched files %d times: %v", len(bad), bad[:min(3, len(bad))])
	}
	if seen == 0 {
		t.Fatal("the reader never saw a manifest: the consistency check checked nothing")
	}
	// Only the weights and the optimizer moments differ; the other files are identical and skipped.
	if want := []string{checkpoints.ConfigFile, checkpoints.GenerationConfigFile, checkpoints.TokenizerFile, checkpoints.TrainerStateFile}; !slices.Equal(rep.Skipped, want) {
		t.Errorf("skipped %v, want %v", rep.Skipped, want)
	}
	if _, err := srv.Client().StatObject(ctx, "ckpts", "run/pretrain-100/stray.bin", minio.StatObjectOptions{}); err == nil {
		t.Error("stray object left under the re-exported checkpoint")
	}
	dir, err := st.Import(ctx, dst.Join("pretrain-100"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkSameCheckpoint(t, dir, b)
}

// awsCLI runs the aws command against srv; it skips (or fails under SPARROW_REQUIRE_S3=1) without awscli.
func awsCLI(t *testing.T, srv *s3test.Server, args ...string) string {
	t.Helper()
	aws, err := exec.LookPath("aws")
	if err != nil {
		s3test.SkipOrFail(t, "awscli not installed (apt-get install -y awscli)")
	}
	full := append(slices.Clone(args), "--endpoint-url", srv.Endpoint)
	if args[0] == "s3" && args[1] == "cp" {
		full = append(full, "--no-progress")
	}
	cmd := exec.Command(aws, full...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s3test.AccessKey, "AWS_SECRET_ACCESS_KEY="+s3test.SecretKey,
		"AWS_DEFAULT_REGION="+s3test.Region, "AWS_REGION="+s3test.Region, "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestIndependentReaderAWSCLI(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	ctx := ctxFor(t)
	// ~7 MB: the optimizer file goes up in two parallel multipart parts.
	local := saveCheckpoint(t, filepath.Join(t.TempDir(), "checkpoints"), sizedModel(128, 2), "pretrain", 50, 9)
	if _, err := st.Export(ctx, local, mustURL(t, "s3://ckpts/exp"), objstore.ExportOptions{PartSize: 5 << 20}); err != nil {
		t.Fatal(err)
	}
	man := readManifest(t, local)

	ls := awsCLI(t, srv, "s3", "ls", "--recursive", "s3://ckpts/exp/")
	for f, e := range man.Files {
		if !strings.Contains(ls, fmt.Sprintf("%d exp/pretrain-50/%s", e.Size, f)) {
			t.Errorf("aws s3 ls does not list %s with %d bytes:\n%s", f, e.Size, ls)
		}
	}
	out := t.TempDir()
	awsCLI(t, srv, "s3", "cp", "--recursive", "s3://ckpts/exp/pretrain-50/", out)
	got := readManifest(t, out) // the manifest as the independent client fetched it
	if len(got.Files) != len(man.Files) {
		t.Fatalf("downloaded manifest lists %d files, want %d", len(got.Files), len(man.Files))
	}
	for f, e := range got.Files {
		if sum := sha256File(t, filepath.Join(out, f)); sum != e.SHA256 || sum != man.Files[f].SHA256 {
			t.Errorf("%s downloaded by awscli: sha256 %s, manifest says %s", f, sum, e.SHA256)
		}
	}
	// awscli also sees the SHA-256 metadata.
	head := awsCLI(t, srv, "s3api", "head-object", "--bucket", "ckpts", "--key", "exp/pretrain-50/"+checkpoints.OptimizerFile)
	if !strings.Contains(head, man.Files[checkpoints.OptimizerFile].SHA256) {
		t.Errorf("head-object does not show the sha256 metadata:\n%s", head)
	}
	if _, err := checkpoints.Load(out, checkpoints.LoadOptions{}); err != nil {
		t.Errorf("the awscli copy does not load: %v", err)
	}
}

func TestServerKilledMidUpload(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	ctx := ctxFor(t)
	dst := mustURL(t, "s3://ckpts/run")
	old := saveCheckpoint(t, filepath.Join(t.TempDir(), "old"), sizedModel(128, 2), "pretrain", 300, 1)
	if _, err := st.Export(ctx, old, dst, objstore.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	// A new checkpoint under the same name (a run restarted from an earlier step): ≈ 22 MB, the optimizer
	// file in 5 MiB parts.
	local := saveCheckpoint(t, filepath.Join(t.TempDir(), "new"), sizedModel(256, 2), "pretrain", 300, 2)
	optSize := readManifest(t, local).Files[checkpoints.OptimizerFile].Size

	stop := make(chan struct{})
	result := watchConsistency(srv, "ckpts", "run/pretrain-300", stop)
	var killed atomic.Bool
	start := time.Now()
	_, err := st.Export(ctx, local, dst, objstore.ExportOptions{PartSize: 5 << 20, Threads: 2,
		Progress: func(file string, sent, total int64) {
			if file == checkpoints.OptimizerFile && sent > total/3 && killed.CompareAndSwap(false, true) {
				srv.Stop()
			}
		}})
	if !killed.Load() {
		t.Fatalf("the server was never killed (optimizer.safetensors is %d bytes); export err %v", optSize, err)
	}
	if err == nil {
		t.Fatal("export succeeded with the server killed mid-upload")
	}
	for _, want := range []string{checkpoints.OptimizerFile, "giving up after 3 attempts", srv.Addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("export error %q does not mention %q", err, want)
		}
	}
	t.Logf("export failed after %.1f s: %v", time.Since(start).Seconds(), err)

	srv.Restart()
	// A reader of the prefix now: no manifest, so incomplete (the old manifest was removed first).
	if _, err := st.Import(ctx, dst.Join("pretrain-300"), t.TempDir()); !errors.Is(err, objstore.ErrIncomplete) {
		t.Fatalf("import after the failed export: %v, want ErrIncomplete", err)
	}
	rep, err := st.Export(ctx, local, dst, objstore.ExportOptions{PartSize: 5 << 20, Threads: 2})
	close(stop)
	seen, bad := result()
	if err != nil {
		t.Fatalf("export after the restart: %v", err)
	}
	if len(bad) > 0 {
		t.Fatalf("a reader saw a manifest with mismatched files: %v", bad[:min(3, len(bad))])
	}
	if seen == 0 {
		t.Fatal("the reader never saw a manifest: the consistency check checked nothing")
	}
	if !slices.Contains(rep.Skipped, checkpoints.ModelFile) || slices.Contains(rep.Skipped, checkpoints.OptimizerFile) {
		t.Errorf("second export skipped %v: want model.safetensors (sent before the kill) and not optimizer.safetensors", rep.Skipped)
	}
	dir, err := st.Import(ctx, dst.Join("pretrain-300"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkSameCheckpoint(t, dir, local)
}

func TestImportRefusesBadObjects(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	ctx := ctxFor(t)
	local := saveCheckpoint(t, filepath.Join(t.TempDir(), "checkpoints"), tinyModel(), "pretrain", 7, 5)
	man := readManifest(t, local)
	cl := srv.Client()

	tests := []struct {
		name    string
		file    string
		corrupt func(t *testing.T, key string)
		want    string
	}{
		{"bit flip on the server's disk", checkpoints.ModelFile, func(t *testing.T, key string) {
			path := srv.ObjectPath("ckpts", key)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 1)
			off := man.Files[checkpoints.ModelFile].Size - 10
			if _, err := f.ReadAt(b, off); err != nil {
				t.Fatal(err)
			}
			b[0] ^= 0x40
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}, "checksum mismatch"},
		{"replaced through the S3 API, metadata kept", checkpoints.TrainerStateFile, func(t *testing.T, key string) {
			body := `{"stage":"pretrain","step":8}`
			_, err := cl.PutObject(ctx, "ckpts", key, strings.NewReader(body), int64(len(body)),
				minio.PutObjectOptions{UserMetadata: map[string]string{"sha256": man.Files[checkpoints.TrainerStateFile].SHA256}})
			if err != nil {
				t.Fatal(err)
			}
		}, "size mismatch"},
		{"deleted", checkpoints.OptimizerFile, func(t *testing.T, key string) {
			if err := cl.RemoveObject(ctx, "ckpts", key, minio.RemoveObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		}, "missing"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := mustURL(t, fmt.Sprintf("s3://ckpts/case%d", i))
			if _, err := st.Export(ctx, local, dst, objstore.ExportOptions{}); err != nil {
				t.Fatal(err)
			}
			key := dst.Join("pretrain-7").Key(tt.file)
			tt.corrupt(t, key)
			cache := t.TempDir()
			_, err := st.Import(ctx, dst.Join("pretrain-7"), cache)
			if err == nil {
				t.Fatal("import accepted a damaged object")
			}
			if !strings.Contains(err.Error(), "s3://ckpts/"+key) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q: want it to name s3://ckpts/%s and say %q", err, key, tt.want)
			}
			// Nothing that looks complete is left in the cache.
			if _, err := os.Stat(filepath.Join(objstore.CacheDir(cache, dst.Join("pretrain-7")), checkpoints.ManifestFile)); err == nil {
				t.Error("a manifest was written into the cache for a refused checkpoint")
			}
		})
	}
}

func TestImportIncompletePrefix(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	ctx := ctxFor(t)
	local := saveCheckpoint(t, filepath.Join(t.TempDir(), "checkpoints"), tinyModel(), "pretrain", 3, 5)
	dst := mustURL(t, "s3://ckpts/inc")
	if _, err := st.Export(ctx, local, dst, objstore.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client().RemoveObject(ctx, "ckpts", "inc/pretrain-3/manifest.json", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := st.Import(ctx, dst.Join("pretrain-3"), t.TempDir())
	if !errors.Is(err, objstore.ErrIncomplete) || !strings.Contains(err.Error(), "s3://ckpts/inc/pretrain-3") {
		t.Fatalf("import of a prefix without manifest: %v", err)
	}
	// Resolve through latest reaches the same verdict, and List does not show it.
	if _, err := st.Resolve(ctx, "s3://ckpts/inc", t.TempDir()); !errors.Is(err, objstore.ErrIncomplete) {
		t.Fatalf("resolve: %v, want ErrIncomplete", err)
	}
	if infos, err := st.List(ctx, dst); err != nil || len(infos) != 0 {
		t.Fatalf("List = %+v, %v; want nothing", infos, err)
	}
	if _, err := st.Import(ctx, mustURL(t, "s3://ckpts/empty/pretrain-1"), t.TempDir()); err == nil || errors.Is(err, objstore.ErrIncomplete) || !strings.Contains(err.Error(), "no checkpoint") {
		t.Fatalf("import of an empty prefix: %v", err)
	}
}

func TestPruneRemoteMirrorsLocalPrune(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	ctx := ctxFor(t)
	tests := []struct {
		keepLast, keepEvery int
		want                []string // kept
	}{
		{2, 0, []string{"pretrain-40", "pretrain-50"}},
		{2, 20, []string{"pretrain-20", "pretrain-40", "pretrain-50"}},
		{1, 30, []string{"pretrain-30", "pretrain-50"}},
		{0, 0, []string{"pretrain-50"}}, // latest is always kept
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("keep_last=%d,keep_every=%d", tt.keepLast, tt.keepEvery), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "checkpoints")
			dst := mustURL(t, fmt.Sprintf("s3://ckpts/prune%d", i))
			for step := 10; step <= 50; step += 10 {
				d := saveCheckpoint(t, root, tinyModel(), "pretrain", step, uint64(step))
				if _, err := st.Export(ctx, d, dst, objstore.ExportOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			removed, err := st.PruneRemote(ctx, dst, tt.keepLast, tt.keepEvery)
			if err != nil {
				t.Fatal(err)
			}
			localRemoved, err := checkpoints.Prune(root, tt.keepLast, tt.keepEvery)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(removed, localRemoved) {
				t.Errorf("remote removed %v, local Prune removed %v", removed, localRemoved)
			}
			infos, err := st.List(ctx, dst)
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, inf := range infos {
				kept = append(kept, inf.Name)
			}
			if !slices.Equal(kept, tt.want) {
				t.Errorf("kept %v, want %v", kept, tt.want)
			}
			// Nothing at all is left of a pruned checkpoint.
			for o := range srv.Client().ListObjects(ctx, "ckpts", minio.ListObjectsOptions{Prefix: dst.Prefix + "/", Recursive: true}) {
				name := strings.Split(strings.TrimPrefix(o.Key, dst.Prefix+"/"), "/")[0]
				if name != checkpoints.LatestFile && !slices.Contains(tt.want, name) {
					t.Errorf("object %s of a pruned checkpoint is left", o.Key)
				}
			}
		})
	}
	if _, err := st.PruneRemote(ctx, mustURL(t, "s3://ckpts/prune0"), -1, 0); err == nil {
		t.Error("PruneRemote accepted keepLast < 0")
	}
}

func TestUploader(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, logs := testStore(t, srv)
	root := filepath.Join(t.TempDir(), "checkpoints")
	dst := mustURL(t, "s3://ckpts/bg")
	u := objstore.NewUploader(st, dst, objstore.UploaderOptions{KeepLast: 2})
	var dirs []string
	for step := 1; step <= 4; step++ {
		d := saveCheckpoint(t, root, tinyModel(), "rl", step, uint64(step))
		dirs = append(dirs, d)
		t0 := time.Now()
		u.Enqueue(d)
		if el := time.Since(t0); el > 200*time.Millisecond {
			t.Errorf("Enqueue took %v: it must not wait for the upload", el)
		}
		// Local retention right away: the queued upload must not depend on the directory staying.
		if _, err := checkpoints.Prune(root, 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	ctx := ctxFor(t)
	if err := u.Close(ctx); err != nil {
		t.Fatalf("Close: %v\nlogs:\n%s", err, logs)
	}
	reps := u.Reports()
	if len(reps) != 4 {
		t.Fatalf("%d uploads reported, want 4", len(reps))
	}
	for i, r := range reps {
		if want := fmt.Sprintf("rl-%d", i+1); r.Checkpoint != want {
			t.Errorf("upload %d was %s, want %s (in order)", i, r.Checkpoint, want)
		}
	}
	infos, err := st.List(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Name != "rl-3" || infos[1].Name != "rl-4" {
		t.Fatalf("remote after retention: %+v, want rl-3 and rl-4", infos)
	}
	dir, err := st.Resolve(ctx, dst.String(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkSameCheckpoint(t, dir, dirs[3])
	if ents, _ := filepath.Glob(filepath.Join(root, ".upload-*")); len(ents) != 0 {
		t.Errorf("staging directories left: %v", ents)
	}
	u.Enqueue(dirs[3])
	if err := u.Err(); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Errorf("Enqueue after Close: Err() = %v", err)
	}
}

func TestUploaderRecordsErrors(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	root := filepath.Join(t.TempDir(), "checkpoints")
	u := objstore.NewUploader(st, mustURL(t, "s3://no-such-bucket/run"), objstore.UploaderOptions{})
	u.Enqueue(saveCheckpoint(t, root, tinyModel(), "rl", 1, 1))
	u.Enqueue(filepath.Join(root, "rl-2")) // never saved
	err := u.Close(ctxFor(t))
	if err == nil {
		t.Fatal("Close returned no error for uploads that failed")
	}
	for _, want := range []string{"rl-1", "no-such-bucket", "rl-2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestUploaderCloseDeadline(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	root := filepath.Join(t.TempDir(), "checkpoints")
	u := objstore.NewUploader(st, mustURL(t, "s3://ckpts/slow"), objstore.UploaderOptions{})
	srv.Stop() // every upload now retries until it gives up
	u.Enqueue(saveCheckpoint(t, root, tinyModel(), "rl", 1, 1))
	u.Enqueue(saveCheckpoint(t, root, tinyModel(), "rl", 2, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := u.Close(ctx)
	if el := time.Since(t0); el > 5*time.Second {
		t.Errorf("Close took %v past its deadline", el)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "rl-2") {
		t.Fatalf("Close: %v; want a deadline error naming the abandoned checkpoints", err)
	}
}

func TestExportRefusesDamagedLocalFile(t *testing.T) {
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	ctx := ctxFor(t)
	local := saveCheckpoint(t, filepath.Join(t.TempDir(), "checkpoints"), tinyModel(), "pretrain", 4, 4)
	path := filepath.Join(local, checkpoints.ModelFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1 // same size, other bytes: only the SHA-256 can tell
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = st.Export(ctx, local, mustURL(t, "s3://ckpts/dmg"), objstore.ExportOptions{})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("export of a damaged local file: %v; want a checksum mismatch naming %s", err, path)
	}
	for _, key := range []string{"dmg/pretrain-4/" + checkpoints.ModelFile, "dmg/pretrain-4/manifest.json", "dmg/latest"} {
		if _, err := srv.Client().StatObject(ctx, "ckpts", key, minio.StatObjectOptions{}); err == nil {
			t.Errorf("%s exists after the refused export", key)
		}
	}
}
