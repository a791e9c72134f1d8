package main

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/envs/toolnet"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

// TestToolsServeCLI: `trainer tools serve --nats URL --env calc,search` answers calc and search calls over
// NATS until its context ends; a bad --env is refused by name.
func TestToolsServeCLI(t *testing.T) {
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs([]string{"tools", "serve", "--nats", srv.URL(), "--env", "calc,search", "--param", "search.people=50"})
		done <- root.ExecuteContext(ctx)
	}()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	calc := &toolnet.NATSTool{NC: nc, Subject: "sparrow.tools.calc", ToolSpec: envs.Calculator{}.Spec(), TryTimeout: time.Second, Retries: 20}
	if r := envs.CallTool(ctx, []envs.Tool{calc}, "calc", `{"expr": "111*111"}`, envs.ToolLimits{Timeout: 30 * time.Second}); r.Content != "12321" {
		t.Fatalf("calc over NATS = %q (%v)", r.Content, r.Err)
	}
	search := &toolnet.NATSTool{NC: nc, Subject: "sparrow.tools.open", ToolSpec: envs.ToolSpec{Name: "open"}, TryTimeout: time.Second}
	if r := envs.CallTool(ctx, []envs.Tool{search}, "open", `{"doc_id": "nope"}`, envs.ToolLimits{}); r.Content != `error: no document "nope"` {
		t.Fatalf("open over NATS = %q", r.Content)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tools serve: %v", err)
	}
	if _, _, err := cli(t, "tools", "serve", "--nats", srv.URL(), "--env", "math"); err == nil || err.Error() != "--env: math is not a tool environment (calc, search, interpreter, toolmix)" {
		t.Fatalf("--env math: %v", err)
	}
}
