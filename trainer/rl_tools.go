// rl_tools.go: the tools of an rl stage's tool environment when they run outside the worker: NATS services
// (rl.tools_nats, `trainer tools serve`) or MCP servers (rl.tools_mcp), through envs/toolnet.

package trainer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/envs/toolnet"
)

// RemoteTools returns fam with the tools that rl.tools_nats and rl.tools_mcp of st name called remotely
// (fam itself when neither is set) and a function that closes the connections.
func RemoteTools(ctx context.Context, st configs.Stage, fam envs.Family, log *slog.Logger) (envs.Family, func(), error) {
	rc := st.RL
	if rc.ToolsNATS == "" && len(rc.ToolsMCP) == 0 {
		return fam, func() {}, nil
	}
	te, ok := fam.(envs.ToolEnv)
	if !ok {
		return nil, nil, fmt.Errorf("stages[%s].rl.tools_nats / tools_mcp: %s is not a tool environment", st.Name, rc.Env)
	}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	var remote []envs.Tool
	if rc.ToolsNATS != "" {
		nc, err := nats.Connect(rc.ToolsNATS, nats.Name("sparrow-tools-client "+st.Name))
		if err != nil {
			return nil, nil, fmt.Errorf("stages[%s].rl.tools_nats %s: %w", st.Name, rc.ToolsNATS, err)
		}
		closers = append(closers, nc.Close)
		try := time.Duration(rc.ToolTimeoutS / 3 * float64(time.Second))
		remote = append(remote, toolnet.NATSTools(nc, rc.ToolsPrefix, te.Tools(), try, 2)...)
		log.Info("tools over NATS", "stage", st.Name, "url", rc.ToolsNATS, "prefix", rc.ToolsPrefix)
	}
	for _, target := range rc.ToolsMCP {
		c, err := toolnet.ConnectMCP(ctx, target)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("stages[%s].rl.tools_mcp: %w", st.Name, err)
		}
		closers = append(closers, func() { _ = c.Close() })
		remote = append(remote, c.Tools...)
		log.Info("tools over MCP", "stage", st.Name, "server", target, "tools", len(c.Tools))
	}
	return toolnet.WithTools(te, remote), closeAll, nil
}
