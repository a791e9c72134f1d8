// dashboard.go is `trainer dashboard`: the local web page of internal/dashboard over run directories (live
// metric charts, stage timeline, config differences, rollout viewer), served until Ctrl-C.

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/internal/dashboard"
)

func init() {
	extraCommands = append(extraCommands, newDashboardCmd)
}

// DefaultDashboardAddr is the address `trainer dashboard` listens on without --addr.
const DefaultDashboardAddr = "127.0.0.1:8060"

func newDashboardCmd() *cobra.Command {
	var addr string
	var allowRemote bool
	c := &cobra.Command{
		Use:   "dashboard RUN_DIR... [--addr HOST:PORT] [--allow-remote]",
		Short: "Serve a local web page of runs: live metric charts, stage timeline, config differences, rollouts",
		Long: `Serve a web page over run directories (running or finished): every metric of metrics.jsonl as a chart,
grouped by prefix, the runs overlaid and new records polled every 2 s; the stage timeline; the config.yaml
keys that differ between the runs; and the rollouts of rollouts.jsonl (rl.log_samples) as conversations,
tokens coloured by the sampler's log-probability or the learner's advantage. The page binds the loopback
interface: --addr without a host binds 127.0.0.1, and a host other machines may reach is refused unless
--allow-remote (the page has no authentication). It runs until Ctrl-C.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serveDashboard(ctx, args, addr, allowRemote, func(url string) {
				fmt.Fprintf(cmd.OutOrStdout(), "dashboard: %s (Ctrl-C to stop)\n", url)
			})
		},
	}
	c.Flags().StringVar(&addr, "addr", DefaultDashboardAddr, "HOST:PORT to listen on (no host: 127.0.0.1)")
	c.Flags().BoolVar(&allowRemote, "allow-remote", false, "allow a host that is not a loopback address (the page has no authentication)")
	return c
}

// serveDashboard serves the dashboard of dirs on addr until ctx ends; ready gets the page's URL once the
// listener is bound.
func serveDashboard(ctx context.Context, dirs []string, addr string, allowRemote bool, ready func(url string)) error {
	h, err := dashboard.New(dirs)
	if err != nil {
		return err
	}
	bind, err := dashboard.ListenAddr(addr, allowRemote)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	ready("http://" + ln.Addr().String() + "/")
	select {
	case err := <-done:
		return fmt.Errorf("dashboard: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("dashboard: shutdown: %w", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("dashboard: %w", err)
	}
	return nil
}
