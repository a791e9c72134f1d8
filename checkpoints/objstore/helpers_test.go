// helpers_test.go builds real checkpoints (checkpoints.Save of an initialised model with optimizer state)
// and Stores pointed at a versitygw test server, for the tests of this package.
package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore/s3test"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/model"
)

// tinyModel is a small complete model (2 layers, one MoE): a checkpoint of about 100 KB.
func tinyModel() configs.Model {
	m := configs.DefaultModel()
	m.HiddenSize, m.NumHiddenLayers, m.NumAttentionHeads = 16, 2, 2
	m.QLoraRank, m.KVLoraRank, m.QKNopeHeadDim, m.QKRopeHeadDim, m.VHeadDim = 8, 8, 4, 4, 4
	m.IntermediateSize, m.MoEIntermediateSize = 24, 8
	m.NRoutedExperts, m.NSharedExperts, m.NumExpertsPerTok, m.NGroup, m.TopkGroup = 4, 1, 2, 2, 1
	m.IndexNHeads, m.IndexHeadDim, m.IndexTopk = 2, 8, 4
	return m
}

// sizedModel is the default model widened: hidden 256 × 2 layers ≈ 22 MB of checkpoint, hidden 384 × 5
// layers ≈ 120 MB (weights F32 + two AdamW moments).
func sizedModel(hidden, layers int) configs.Model {
	m := configs.DefaultModel()
	m.HiddenSize, m.NumHiddenLayers = hidden, layers
	m.IntermediateSize, m.MoEIntermediateSize = 3*hidden, hidden/2
	return m
}

// saveCheckpoint saves a checkpoint of model m named <stage>-<step> in checkpointsDir, with weights from
// seed and AdamW-like moments, and returns its directory.
func saveCheckpoint(t testing.TB, checkpointsDir string, m configs.Model, stage string, step int, seed uint64) string {
	t.Helper()
	p := model.NewParams(m)
	p.Init(seed)
	ck := &checkpoints.Checkpoint{Model: m, Tensors: checkpoints.FromParams(p)}
	for _, tt := range ck.Tensors {
		mo := make([]float32, len(tt.Data))
		v := make([]float32, len(tt.Data))
		for k, x := range tt.Data {
			mo[k], v[k] = x*0.1, x*x
		}
		ck.Optimizer = append(ck.Optimizer,
			checkpoints.Tensor{Name: tt.Name + ".exp_avg", Shape: tt.Shape, Data: mo},
			checkpoints.Tensor{Name: tt.Name + ".exp_avg_sq", Shape: tt.Shape, Data: v})
	}
	ck.Optimizer = append(ck.Optimizer, checkpoints.Tensor{Name: "step", Shape: []int{}, Data: []float32{float32(step)}})
	ck.State = checkpoints.TrainerState{Stage: stage, Kind: "pretrain", Step: step, StageSteps: step, TokensSeen: int64(step) * 1024}
	dir, err := checkpoints.Save(checkpointsDir, checkpoints.Name(stage, step), ck)
	if err != nil {
		t.Fatalf("save checkpoint: %v", err)
	}
	return dir
}

// readManifest reads dir/manifest.json.
func readManifest(t testing.TB, dir string) checkpoints.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, checkpoints.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m checkpoints.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return m
}

// sha256File returns the hex SHA-256 of a file.
func sha256File(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fastRetry keeps fault tests short: 3 attempts, 50 ms then 100 ms.
var fastRetry = objstore.Retry{Attempts: 3, Base: 50 * time.Millisecond, Max: 200 * time.Millisecond}

// testStore returns a Store of srv whose logs go to the returned buffer (and whose Config carries the
// test server's credentials).
func testStore(t testing.TB, srv *s3test.Server) (*objstore.Store, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s, err := objstore.New(objstore.Config{Endpoint: srv.Endpoint, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey,
		Region: s3test.Region, Retry: fastRetry, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

// startServer starts versitygw with one bucket.
func startServer(t testing.TB, bucket string) *s3test.Server {
	t.Helper()
	srv := s3test.Start(t)
	srv.MakeBucket(bucket)
	return srv
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustURL(t testing.TB, s string) objstore.URL {
	t.Helper()
	u, err := objstore.ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
