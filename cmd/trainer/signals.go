// signals.go: how run, learn and rollout stop on SIGINT and SIGTERM (what systemd and Kubernetes send). The
// first signal cancels the command's context with a *stopSignal cause and the command stops gracefully: the
// learner finishes or drops the step in progress (trainer/stage.go), checkpoints the last completed step,
// acks what the checkpoint holds and exits 130; a rollout process hands its prompts in flight back to the
// queue and exits 130. A second signal, or a graceful stop that takes longer than --stop-timeout, exits at
// once with 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM.

package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// exitInterrupted is the exit status of a graceful stop.
const exitInterrupted = 130

// What the commands do on the first signal (the log line says it).
const (
	gracefulTrainer = "finishing or dropping the step in progress, then checkpointing the last completed step"
	gracefulRollout = "handing the prompts in flight back to the queue"
)

// stopSignal is the cause of a context cancelled by a signal.
type stopSignal struct{ sig os.Signal }

func (s *stopSignal) Error() string { return "stopped by " + signalName(s.sig) }

func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case os.Interrupt:
		return "SIGINT"
	}
	return sig.String()
}

// forcedExit is the exit status of a stop that did not wait: 128 + the signal's number.
func forcedExit(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitInterrupted
}

// exit ends the process (a variable for tests).
var exit = os.Exit

// stopContext returns a context that the first SIGINT or SIGTERM cancels (cause *stopSignal); graceful says
// in the log what the command does then. From then on a second signal, or timeout (0: none) without the
// command returning, exits the process at once. stop releases the signals.
func stopContext(parent context.Context, log *slog.Logger, timeout time.Duration, graceful string) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var first os.Signal
		select {
		case first = <-sigs:
		case <-done:
			return
		}
		log.Warn("stopping: "+graceful+"; a second signal exits at once", "signal", signalName(first), "stop_timeout", timeout.String())
		cancel(&stopSignal{sig: first})
		var deadline <-chan time.Time
		if timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case sig := <-sigs:
			log.Error("second signal: exiting at once, without waiting for the checkpoint", "signal", signalName(sig), "exit", forcedExit(sig))
			exit(forcedExit(sig))
		case <-deadline:
			log.Error("the graceful stop did not finish within --stop-timeout: exiting at once", "stop_timeout", timeout.String(), "exit", forcedExit(first))
			exit(forcedExit(first))
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// stoppedBySignal returns the *stopSignal that cancelled ctx, or nil.
func stoppedBySignal(ctx context.Context) *stopSignal {
	var s *stopSignal
	if errors.As(context.Cause(ctx), &s) {
		return s
	}
	return nil
}
