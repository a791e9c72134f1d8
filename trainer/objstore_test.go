package trainer

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints/objstore/s3test"
)

// TestUploadAndResumeFromObjectStorage: a run uploads its checkpoints in the background (checkpoint.upload),
// then a new run in an empty directory resumes from the s3:// prefix (its latest checkpoint) and finishes with
// the same weights as a run that never stopped; a third run starts a stage from an s3:// init_from.
func TestUploadAndResumeFromObjectStorage(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("ckpt")
	srv.SetEnv(t)

	straight := t.TempDir()
	cfg := tinyConfig(t, "train.steps=12", "checkpoint.every=6", "checkpoint.keep_last=0")
	if err := Execute(context.Background(), cfg, Options{Dir: straight, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}

	first := t.TempDir()
	half := tinyConfig(t, "train.steps=12", "checkpoint.every=6", "checkpoint.keep_last=0", "checkpoint.upload=s3://ckpt/runs/a")
	ctx, cancel := context.WithCancel(context.Background())
	testHookAfterStep = (&stopper{at: 6, cancel: cancel}).hook
	err := Execute(ctx, half, Options{Dir: first, Log: quietLog()})
	testHookAfterStep = nil
	if err == nil {
		t.Fatal("the interrupted run did not report the interruption")
	}

	second := t.TempDir() // another machine: nothing local
	if err := Execute(context.Background(), tinyConfig(t, "train.steps=12", "checkpoint.every=6", "checkpoint.keep_last=0"),
		Options{Dir: second, Resume: "s3://ckpt/runs/a", Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	a := loadWeights(t, filepath.Join(straight, "checkpoints", "pretrain-12"))
	b := loadWeights(t, filepath.Join(second, "checkpoints", "pretrain-12"))
	for i := range a.Data {
		for j := range a.Data[i] {
			if math.Float32bits(a.Data[i][j]) != math.Float32bits(b.Data[i][j]) {
				t.Fatalf("%s[%d]: straight %v, resumed from s3 %v", a.Specs[i].Name, j, a.Data[i][j], b.Data[i][j])
			}
		}
	}

	third := t.TempDir()
	cfg3 := tinyConfig(t, "train.steps=2", "stages.pretrain.init_from=s3://ckpt/runs/a/pretrain-6")
	if err := Execute(context.Background(), cfg3, Options{Dir: third, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
}
