// throughput_test.go measures export and import MB/s of a checkpoint of about 120 MB against versitygw on
// loopback. It is off by default (it writes ~400 MB to disk and takes tens of seconds on two shared cores):
//
//	go test ./checkpoints/objstore/ -run TestThroughput -v -args -s3.throughput
package objstore_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
)

var throughput = flag.Bool("s3.throughput", false, "run TestThroughput (export/import MB/s of a ~120 MB checkpoint)")

func TestThroughput(t *testing.T) {
	if !*throughput {
		t.Skip("measurement: run with -args -s3.throughput")
	}
	srv := startServer(t, "ckpts")
	st, _ := testStore(t, srv)
	ctx := ctxFor(t)
	local := saveCheckpoint(t, filepath.Join(t.TempDir(), "checkpoints"), sizedModel(384, 5), "pretrain", 1000, 1)
	man := readManifest(t, local)
	var total int64
	for _, e := range man.Files {
		total += e.Size
	}
	if total < 100e6 {
		t.Fatalf("checkpoint is %d bytes, want at least 100 MB", total)
	}
	dst := mustURL(t, "s3://ckpts/bench")

	rep, err := st.Export(ctx, local, dst, objstore.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	rep2, err := st.Export(ctx, local, dst, objstore.ExportOptions{})
	if err != nil || rep2.Uploaded != 0 {
		t.Fatalf("re-export: %+v, %v", rep2, err)
	}
	skip := time.Since(t0)

	t0 = time.Now()
	dir, err := st.Import(ctx, dst.Join("pretrain-1000"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	imp := time.Since(t0)
	checkSameCheckpoint(t, dir, local)

	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("checkpoint %.1f MB (%d files); part size 16 MiB, 4 parallel parts", float64(total)/1e6, len(man.Files)+1)
	t.Logf("export: %.2f s, %.1f MB/s (verifying local SHA-256 while sending)", rep.Seconds, rep.MBPerSec)
	t.Logf("re-export, all skipped: %.3f s", skip.Seconds())
	t.Logf("import: %.2f s, %.1f MB/s (download + SHA-256 + checkpoints.Load)", imp.Seconds(), float64(total)/imp.Seconds()/1e6)
	t.Logf("load average: %s", strings.TrimSpace(string(load)))
}
