package trainer

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
)

// lockedBuffer is a bytes.Buffer safe for the bar's goroutine and the log handler.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestConsoleLinesWithBar: with the progress bar drawn (run.progress on), the step lines (every
// train.log_every steps) and the eval lines still reach the console, printed above the bar; with the bar off
// (and with auto on a buffer, which is no terminal) they are plain log lines.
func TestConsoleLinesWithBar(t *testing.T) {
	for _, mode := range []string{"on", "off", "auto"} {
		t.Run(mode, func(t *testing.T) {
			out := &lockedBuffer{}
			console := NewConsole(out)
			log := slog.New(slog.NewTextHandler(console, nil))
			cfg := tinyConfig(t, "run.progress="+mode, "train.steps=6", "train.log_every=2", "train.eval_every=3", "run.tensorboard=false")
			if err := Execute(context.Background(), cfg, Options{Dir: t.TempDir(), Log: log, Console: console}); err != nil {
				t.Fatal(err)
			}
			s := out.String()
			for _, want := range []string{"msg=step stage=pretrain step=2 loss=", "msg=step stage=pretrain step=4 ", "msg=step stage=pretrain step=6 ",
				"msg=eval stage=pretrain step=3 ", "msg=eval stage=pretrain step=6 "} {
				if !strings.Contains(s, want) {
					t.Errorf("console lacks %q:\n%s", want, s)
				}
			}
			if bar := strings.Contains(s, "6/6"); bar != (mode == "on") {
				t.Errorf("bar drawn: %v, want %v:\n%s", bar, mode == "on", s)
			}
			if strings.Contains(s, "msg=step stage=pretrain step=3 ") {
				t.Errorf("a step line off the log cadence:\n%s", s)
			}
		})
	}
}

// TestConfigChanges names every key whose value differs, a stage's keys under stages.<name>.
func TestConfigChanges(t *testing.T) {
	a, err := configs.Load("tiny", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := configs.Load("tiny", []string{"optimizer.lr=0.5", "stages.pretrain.train.log_every=3", "seed=7"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ConfigChanges(a, b)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range got {
		keys = append(keys, c.Key)
	}
	want := []string{"optimizer.lr", "seed", "stages.pretrain.optimizer.lr", "stages.pretrain.train.log_every"}
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("changed keys %v, want %v", keys, want)
	}
	if none, _ := ConfigChanges(a, a); len(none) != 0 {
		t.Errorf("a config differs from itself: %v", none)
	}
}
