// Progress bar of a training stage on stderr, drawn by mpb: stage name, steps
// done of total, percentage, the latest loss and throughput, elapsed time and
// ETA. Mode "on" always draws it, "off" draws nothing at all (the trainer logs
// with slog instead), and "auto" draws it only when stderr is a terminal (a
// termios check, so a redirect to a file or /dev/null turns it off, and so does
// a terminal that reports no width). Console (console.go) prints log lines
// above the bar while it is drawn. A nil or
// disabled *Progress accepts every call and does nothing.

package trainer

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// ProgressModes lists the accepted progress-bar modes.
var ProgressModes = []string{"auto", "on", "off"}

// CheckProgressMode returns an error naming mode unless it is auto, on or off.
func CheckProgressMode(mode string) error {
	for _, m := range ProgressModes {
		if m == mode {
			return nil
		}
	}
	return fmt.Errorf("unknown progress mode %q (want one of %v)", mode, ProgressModes)
}

// Progress is one stage's progress bar.
type Progress struct {
	p     *mpb.Progress
	bar   *mpb.Bar
	total int64
	loss  atomic.Uint64 // float64 bits; NaN until the first Update
	tps   atomic.Uint64 // float64 bits
	label atomic.Value  // string: the name of the metric shown (default "loss")
}

// NewProgress starts a bar for stage with total steps on stderr according to
// mode (auto, on or off; anything else is treated as auto with a warning). The
// bar is disabled when it would not be drawn.
func NewProgress(mode, stage string, total int) *Progress {
	on := false
	switch mode {
	case "on":
		on = true
	case "off":
	default:
		if mode != "auto" {
			slog.Warn("progress: unknown mode, using auto", "mode", mode)
		}
		on = terminal(os.Stderr)
	}
	if !on {
		return &Progress{}
	}
	return newProgress(os.Stderr, stage, total, forceTTY()...)
}

// forceTTY are the options of a bar that is drawn: ForceTTY and WithAutoRefresh make mode "on" draw even when
// the output is not a terminal.
func forceTTY() []mpb.ContainerOption {
	return []mpb.ContainerOption{mpb.ForceTTY(), mpb.WithAutoRefresh()}
}

// newProgress draws a bar to w (tests pass a buffer).
func newProgress(w io.Writer, stage string, total int, opts ...mpb.ContainerOption) *Progress {
	pr := &Progress{total: int64(max(total, 0))}
	pr.loss.Store(math.Float64bits(math.NaN()))
	pr.tps.Store(math.Float64bits(math.NaN()))
	pr.p = mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(100)}, opts...)...)
	stats := decor.Any(func(decor.Statistics) string {
		loss := math.Float64frombits(pr.loss.Load())
		tps := math.Float64frombits(pr.tps.Load())
		label, _ := pr.label.Load().(string)
		if label == "" {
			label = "loss"
		}
		if math.IsNaN(loss) && math.IsNaN(tps) {
			return label + " -"
		}
		return fmt.Sprintf("%s %.4f  %.0f tok/s", label, loss, tps)
	}, decor.WC{W: 28, C: decor.DindentRight})
	// The bar is added without a total that completes it: a bar that completes at its last step stops
	// printing the lines written above it (the last evaluation's); Finish completes it.
	pr.bar = pr.p.AddBar(0,
		mpb.PrependDecorators(
			decor.Name(stage, decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.CountersNoUnit("%d/%d", decor.WC{C: decor.DindentRight | decor.DextraSpace}),
		),
		mpb.AppendDecorators(
			decor.Percentage(decor.WC{W: 5}),
			decor.Name(" "),
			stats,
			decor.Elapsed(decor.ET_STYLE_GO, decor.WC{W: 8}),
			decor.Name(" eta "),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO), "done"),
		),
	)
	if pr.total > 0 {
		pr.bar.SetTotal(pr.total, false)
	}
	return pr
}

// Show names the metric the bar shows next to the throughput (default "loss"; an RL stage shows its reward).
func (pr *Progress) Show(metric string) {
	if pr.Enabled() {
		pr.label.Store(metric)
	}
}

// Enabled reports whether the bar is drawn.
func (pr *Progress) Enabled() bool { return pr != nil && pr.bar != nil }

// Update records that step (counted from 0, as in LR) has finished with the
// given loss and throughput (NaN keeps the last one shown): the bar shows
// step+1 of total.
func (pr *Progress) Update(step int, loss float64, tokensPerS float64) {
	if !pr.Enabled() {
		return
	}
	pr.loss.Store(math.Float64bits(loss))
	if !math.IsNaN(tokensPerS) {
		pr.tps.Store(math.Float64bits(tokensPerS))
	}
	cur := int64(step) + 1
	if pr.total > 0 {
		cur = min(cur, pr.total)
	}
	pr.bar.SetCurrent(cur)
}

// Finish completes the bar (or leaves it drawn where it stopped when the stage
// ended early) and waits until it is rendered. It may be called more than once.
func (pr *Progress) Finish() {
	if !pr.Enabled() {
		return
	}
	switch {
	case pr.total <= 0:
		pr.bar.SetTotal(-1, true)
	case pr.bar.Current() < pr.total:
		pr.bar.Abort(false)
	default:
		pr.bar.SetTotal(pr.total, true)
	}
	pr.p.Wait()
}

// Writer returns a writer that prints above the bar while it is drawn (route
// slog's handler through it so log lines do not tear the bar), or fallback
// when the bar is disabled.
func (pr *Progress) Writer(fallback io.Writer) io.Writer {
	if !pr.Enabled() {
		return fallback
	}
	return pr.p
}
