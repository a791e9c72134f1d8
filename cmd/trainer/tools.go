// tools.go implements `trainer tools`: the tools of tool environments served outside the rollout workers.
// `tools serve --nats URL --env calc,search` answers calls as NATS request-reply services (one endpoint per
// tool on <prefix>.<tool>, queue group sparrow-tools, so several processes share the load) until
// interrupted; `tools mcp --env calc` serves them as a Model Context Protocol server over stdio, or over
// streamable HTTP with --http ADDR (loopback by default).

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/envs/toolnet"
)

func init() { extraCommands = append(extraCommands, newToolsCmd) }

func newToolsCmd() *cobra.Command {
	c := &cobra.Command{Use: "tools", Short: "Serve the tools of tool environments over NATS or as an MCP server"}
	c.AddCommand(newToolsServeCmd(), newToolsMCPCmd())
	return c
}

// toolFlags are the flags naming the tools to serve and their sandbox.
type toolFlags struct {
	env     string
	params  []string
	timeout time.Duration
}

func (f *toolFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.env, "env", "calc,search,interpreter", "comma list of tool environments whose tools to serve")
	c.Flags().StringArrayVar(&f.params, "param", nil, "an environment param ENV.KEY=VALUE (repeatable), e.g. search.people=2000")
	c.Flags().DurationVar(&f.timeout, "timeout", 5*time.Second, "deadline of one call")
}

// tools builds the environments and returns their tools (each name once).
func (f *toolFlags) tools() ([]envs.Tool, error) {
	params := map[string]map[string]string{}
	for _, p := range f.params {
		kv, v, ok := strings.Cut(p, "=")
		env, k, ok2 := strings.Cut(kv, ".")
		if !ok || !ok2 {
			return nil, fmt.Errorf("--param %q: want ENV.KEY=VALUE", p)
		}
		if params[env] == nil {
			params[env] = map[string]string{}
		}
		params[env][k] = v
	}
	var out []envs.Tool
	seen := map[string]bool{}
	for _, name := range strings.Split(f.env, ",") {
		fam, err := envs.New(strings.TrimSpace(name), envs.Options{Params: params[name]})
		if err != nil {
			return nil, fmt.Errorf("--env: %w", err)
		}
		te, ok := fam.(envs.ToolEnv)
		if !ok {
			return nil, fmt.Errorf("--env: %s is not a tool environment (calc, search, interpreter, toolmix)", name)
		}
		for _, t := range te.Tools() {
			if !seen[t.Spec().Name] {
				seen[t.Spec().Name] = true
				out = append(out, t)
			}
		}
	}
	return out, nil
}

func newToolsServeCmd() *cobra.Command {
	var f toolFlags
	var url, prefix string
	var concurrency int
	c := &cobra.Command{
		Use:   "serve --nats URL",
		Short: "Answer tool calls as NATS request-reply services until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if url == "" {
				return errors.New("--nats URL is required")
			}
			tools, err := f.tools()
			if err != nil {
				return err
			}
			nc, err := nats.Connect(url, nats.Name("sparrow-tools"), nats.MaxReconnects(-1))
			if err != nil {
				return fmt.Errorf("tools serve: connecting to %s: %w", url, err)
			}
			defer nc.Close()
			if _, err := toolnet.Serve(cmd.Context(), nc, tools, toolnet.ServeOptions{Prefix: prefix, Concurrency: concurrency,
				Limits: envs.ToolLimits{Timeout: f.timeout}, Log: slog.Default()}); err != nil {
				return err
			}
			names := make([]string, len(tools))
			for i, t := range tools {
				names[i] = t.Spec().Name
			}
			slog.Info("tools serving", "nats", url, "prefix", prefix, "queue_group", toolnet.QueueGroup, "tools", strings.Join(names, ","))
			<-cmd.Context().Done()
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&url, "nats", "", "NATS server URL")
	c.Flags().StringVar(&prefix, "prefix", toolnet.DefaultPrefix, "subject prefix: a tool answers on PREFIX.<tool> (rl.tools_prefix)")
	c.Flags().IntVar(&concurrency, "concurrency", 4, "calls run at once")
	return c
}

func newToolsMCPCmd() *cobra.Command {
	var f toolFlags
	var addr string
	c := &cobra.Command{
		Use:   "mcp",
		Short: "Serve the tools as a Model Context Protocol server (stdio, or streamable HTTP with --http)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tools, err := f.tools()
			if err != nil {
				return err
			}
			lim := envs.ToolLimits{Timeout: f.timeout}
			if addr == "" {
				return toolnet.ServeMCPStdio(cmd.Context(), tools, lim)
			}
			if host, _, err := net.SplitHostPort(addr); err != nil || host == "" {
				return fmt.Errorf("--http %q: want HOST:PORT (e.g. 127.0.0.1:8931)", addr)
			}
			srv := &http.Server{Addr: addr, Handler: toolnet.MCPHandler(tools, lim), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-cmd.Context().Done()
				_ = srv.Close()
			}()
			slog.Info("tools MCP server", "url", "http://"+addr)
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&addr, "http", "", "serve streamable HTTP on HOST:PORT instead of stdio")
	return c
}
