// Tests of `trainer export` (export.go) against a real S3 server (versitygw, see checkpoints/objstore/s3test):
// the JSON report, a re-run that skips everything, a checkpoints/ directory resolving to its latest, remote
// pruning, secrets kept out of the logs, and bad arguments.
package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore/s3test"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/model"
)

func runExport(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return cli(t, append([]string{"export"}, args...)...)
}

// saveTinyCheckpoint saves a small real checkpoint <stage>-<step> under checkpointsDir.
func saveTinyCheckpoint(t *testing.T, checkpointsDir string, step int) string {
	t.Helper()
	m := configs.DefaultModel()
	m.HiddenSize, m.NumHiddenLayers = 32, 2
	m.IntermediateSize, m.MoEIntermediateSize = 64, 16
	p := model.NewParams(m)
	p.Init(uint64(step))
	ck := &checkpoints.Checkpoint{Model: m, Tensors: checkpoints.FromParams(p),
		Optimizer: []checkpoints.Tensor{{Name: "step", Shape: []int{}, Data: []float32{float32(step)}}},
		State:     checkpoints.TrainerState{Stage: "pretrain", Kind: "pretrain", Step: step}}
	dir, err := checkpoints.Save(checkpointsDir, checkpoints.Name("pretrain", step), ck)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestExportCmd(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("ckpts")
	srv.SetEnv(t)
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1") // --endpoint must win over the environment
	root := filepath.Join(t.TempDir(), "checkpoints")
	first := saveTinyCheckpoint(t, root, 10)

	out, errs, err := runExport(t, "--checkpoint", first, "--to", "s3://ckpts/cli", "--endpoint", srv.Endpoint, "--log-level", "debug")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errs)
	}
	var rep struct {
		Checkpoint    string   `json:"checkpoint"`
		URL           string   `json:"url"`
		Files         int      `json:"files"`
		Bytes         int64    `json:"bytes"`
		Uploaded      int      `json:"uploaded"`
		UploadedBytes int64    `json:"uploaded_bytes"`
		Skipped       []string `json:"skipped"`
		Seconds       float64  `json:"seconds"`
		MBPerSec      float64  `json:"mb_per_s"`
		Pruned        []string `json:"pruned"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, out)
	}
	if rep.Checkpoint != "pretrain-10" || rep.URL != "s3://ckpts/cli/pretrain-10" || rep.Files != 7 || rep.Uploaded != 7 ||
		rep.Bytes <= 0 || rep.UploadedBytes != rep.Bytes || len(rep.Skipped) != 0 || rep.Seconds <= 0 || rep.MBPerSec <= 0 {
		t.Fatalf("report %+v", rep)
	}
	if strings.Contains(errs, s3test.SecretKey) || !strings.Contains(errs, "[REDACTED]") {
		t.Errorf("logs must show the store config redacted:\n%s", errs)
	}

	// Again, from the checkpoints/ directory (its latest is pretrain-10): everything skipped.
	out, errs, err = runExport(t, "--checkpoint", root, "--to", "s3://ckpts/cli", "--endpoint", srv.Endpoint)
	if err != nil {
		t.Fatalf("re-export: %v\n%s", err, errs)
	}
	rep.Skipped = nil
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Uploaded != 0 || len(rep.Skipped) != 7 {
		t.Fatalf("re-export report %+v, want all 7 files skipped", rep)
	}

	// A newer checkpoint with --keep-last 1 prunes the older one remotely.
	second := saveTinyCheckpoint(t, root, 20)
	out, errs, err = runExport(t, "--checkpoint", second, "--to", "s3://ckpts/cli", "--endpoint", srv.Endpoint, "--keep-last", "1")
	if err != nil {
		t.Fatalf("export with pruning: %v\n%s", err, errs)
	}
	rep.Pruned = nil
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Checkpoint != "pretrain-20" || !slices.Equal(rep.Pruned, []string{"pretrain-10"}) {
		t.Fatalf("report %+v, want pretrain-20 exported and pretrain-10 pruned", rep)
	}
	// The run prefix resolves to the newest checkpoint.
	t.Setenv("AWS_ENDPOINT_URL", srv.Endpoint)
	if dir, err := objstore.Resolve(t.Context(), "s3://ckpts/cli", t.TempDir()); err != nil || filepath.Base(dir) != "pretrain-20" {
		t.Fatalf("Resolve = %s, %v", dir, err)
	}
}

func TestExportCmdErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--to", "s3://ckpts/x"}, "--checkpoint and --to are required"},
		{[]string{"--checkpoint", dir}, "--checkpoint and --to are required"},
		{[]string{"--checkpoint", dir, "--to", "http://ckpts/x"}, "--to: object storage URL"},
		{[]string{"--checkpoint", dir, "--to", "s3://ckpts/x"}, "neither a checkpoint"},
		{[]string{"--checkpoint", dir, "--to", "s3://ckpts/x", "--keep-last", "-1"}, "must be >= 0"},
		{[]string{"--checkpoint", dir, "--to", "s3://ckpts/x", "--part-size-mib", "1"}, "--part-size-mib >= 5"},
	}
	for _, tt := range tests {
		_, _, err := runExport(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("export %v: %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
	t.Run("bad endpoint", func(t *testing.T) {
		d := saveTinyCheckpoint(t, filepath.Join(t.TempDir(), "checkpoints"), 1)
		_, _, err := runExport(t, "--checkpoint", d, "--to", "s3://ckpts/x", "--endpoint", "ftp://host")
		if err == nil || !strings.Contains(err.Error(), `scheme "ftp"`) {
			t.Errorf("ftp endpoint: %v", err)
		}
	})
}
