// console.go: the trainer's console. Log lines and a stage's progress bar share one output: while a bar is
// drawn, a log line (a step's metrics every train.log_every steps, an evaluation, a warning) is printed above
// it instead of tearing it; with no bar (run.progress off, or auto when the output is not a terminal or the
// terminal reports no width) log lines are written as they are.

package trainer

import (
	"io"
	"os"
	"sync"

	"github.com/vbauerster/cupwriter"
)

// Console is an io.Writer for the trainer's log handler (slog) that prints above the progress bar while one
// is drawn. It is safe for concurrent use. Pass it as Options.Console and build Options.Log over it.
type Console struct {
	mu  sync.Mutex
	out io.Writer
	bar *Progress // the bar drawn now, or nil
}

// NewConsole returns a console writing to out (usually os.Stderr); progress bars are drawn on out too.
func NewConsole(out io.Writer) *Console { return &Console{out: out} }

// Write prints p above the bar when one is drawn, else to the output.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bar.Enabled() {
		if n, err := c.bar.p.Write(p); err == nil {
			return n, nil
		}
		// the bar has just finished (mpb.ErrDone): write the line as it is
	}
	return c.out.Write(p)
}

// terminal reports whether w is a terminal that reports a width: only then does run.progress auto draw a
// bar (a pipe, a file, or a pseudo-terminal of width 0 gets plain log lines).
func terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	cw := cupwriter.New(f, false)
	if !cw.IsTerminal() {
		return false
	}
	width, _, err := cw.GetTermSize()
	return err == nil && width > 0
}

// progress starts stage's bar (mode: run.progress) on the console's output, or on stderr without a console.
func (c *Console) progress(mode, stage string, total int) *Progress {
	if c == nil {
		return NewProgress(mode, stage, total)
	}
	switch mode {
	case "on":
	case "off":
		return &Progress{}
	default:
		if !terminal(c.out) {
			return &Progress{}
		}
	}
	pb := newProgress(c.out, stage, total, forceTTY()...)
	c.mu.Lock()
	c.bar = pb
	c.mu.Unlock()
	return pb
}

// finish stops printing above pb and completes it: the lines written to it so far are printed by its last
// render, and lines written from now on go to the output as they are.
func (c *Console) finish(pb *Progress) {
	if c != nil {
		c.mu.Lock()
		if c.bar == pb {
			c.bar = nil
		}
		c.mu.Unlock()
	}
	pb.Finish()
}
