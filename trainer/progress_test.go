// Tests of the progress bar: modes, drawing to a buffer, early finish.
package trainer

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vbauerster/mpb/v8"
)

// syncBuffer is a bytes.Buffer safe for mpb's render goroutine.
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

func TestProgressDraws(t *testing.T) {
	cases := []struct {
		name  string
		total int
		steps int
		want  []string
	}{
		{"complete", 4, 4, []string{"a log line", "pretrain", "4/4", "100 %", "loss 1.7500", "2000 tok/s", "done"}},
		{"stopped early", 10, 3, []string{"pretrain", "3/10", "30 %", "loss 2.0000"}},
		{"unknown total", 0, 2, []string{"pretrain", "loss 2.2500"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf syncBuffer
			p := newProgress(&buf, "pretrain", c.total, mpb.ForceTTY(), mpb.WithAutoRefresh())
			if !p.Enabled() {
				t.Fatal("bar not enabled")
			}
			if _, err := fmt.Fprintln(p.Writer(nil), "a log line"); err != nil {
				t.Fatal(err)
			}
			for s := 0; s < c.steps; s++ {
				p.Update(s, 2.5-0.25*float64(s), 500*float64(s+1))
			}
			p.Finish()
			p.Finish() // idempotent
			out := buf.String()
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%q", w, out)
				}
			}
		})
	}
}

// TestProgressOff: off (and auto without a terminal, as under go test with
// stderr redirected) draw nothing, and every call is a no-op, also on nil.
func TestProgressOff(t *testing.T) {
	p := NewProgress("off", "pretrain", 10)
	if p.Enabled() {
		t.Error("mode off enabled the bar")
	}
	p.Update(0, 1, 1)
	p.Finish()
	var fallback bytes.Buffer
	if p.Writer(&fallback) != &fallback {
		t.Error("disabled bar does not return the fallback writer")
	}
	var nilP *Progress
	nilP.Update(0, 1, 1)
	nilP.Finish()
	for _, m := range ProgressModes {
		if err := CheckProgressMode(m); err != nil {
			t.Error(err)
		}
	}
	if err := CheckProgressMode("yes"); err == nil || !strings.Contains(err.Error(), `"yes"`) {
		t.Errorf("CheckProgressMode(yes) = %v", err)
	}
}
