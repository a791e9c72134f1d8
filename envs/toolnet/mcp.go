// mcp.go: tools from any Model Context Protocol server, through the official Go SDK
// (github.com/modelcontextprotocol/go-sdk): a server started as a command (stdio) or reached over streamable
// HTTP. ConnectMCP opens a session and lists the server's tools; each becomes an MCPTool, whose spec is the
// server's (name, description, input schema as JSON) and whose call is tools/call, its text content joined
// (an isError result is the call's error). ServeMCP is the other side: it serves tools as an MCP server, so a
// tool environment's tools are reachable by any MCP client (and the tests start a real server).

package toolnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
)

// MCPClient is an open session with an MCP server and its tools.
type MCPClient struct {
	Session *mcp.ClientSession
	Tools   []envs.Tool
}

// Close ends the session (and a stdio server's process).
func (c *MCPClient) Close() error { return c.Session.Close() }

// ConnectMCP connects to the MCP server at target: "http://..." or "https://..." (streamable HTTP), or a
// command line run as a stdio server ("go run ./mcpserver", split at spaces). It lists the server's tools.
func ConnectMCP(ctx context.Context, target string) (*MCPClient, error) {
	var t mcp.Transport
	switch {
	case strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://"):
		t = &mcp.StreamableClientTransport{Endpoint: target, DisableStandaloneSSE: true}
	default:
		args := strings.Fields(target)
		if len(args) == 0 {
			return nil, errors.New("toolnet: empty MCP server command")
		}
		t = &mcp.CommandTransport{Command: exec.Command(args[0], args[1:]...)}
	}
	return connect(ctx, t, target)
}

func connect(ctx context.Context, t mcp.Transport, target string) (*MCPClient, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "sparrow", Version: "1.0.0"}, nil)
	cs, err := client.Connect(ctx, t, nil)
	if err != nil {
		return nil, fmt.Errorf("toolnet: connecting to MCP server %s: %w", target, err)
	}
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		_ = cs.Close()
		return nil, fmt.Errorf("toolnet: listing the tools of MCP server %s: %w", target, err)
	}
	c := &MCPClient{Session: cs}
	for _, tl := range res.Tools {
		schema, err := json.Marshal(tl.InputSchema)
		if err != nil {
			_ = cs.Close()
			return nil, fmt.Errorf("toolnet: MCP server %s: tool %s: input schema: %w", target, tl.Name, err)
		}
		// the schema as the V3.2 encoder prints JSON (key order of the server's text)
		v, err := data.ParsePyJSON(string(schema))
		if err != nil {
			_ = cs.Close()
			return nil, fmt.Errorf("toolnet: MCP server %s: tool %s: input schema: %w", target, tl.Name, err)
		}
		c.Tools = append(c.Tools, &MCPTool{Session: cs, ToolSpec: envs.ToolSpec{Name: tl.Name, Description: tl.Description, Parameters: v.String()}})
	}
	return c, nil
}

// MCPTool is one tool of an MCP server.
type MCPTool struct {
	Session  *mcp.ClientSession
	ToolSpec envs.ToolSpec
}

// Spec returns the server's description of the tool.
func (t *MCPTool) Spec() envs.ToolSpec { return t.ToolSpec }

// Call calls the tool; the result is its text content, joined by newlines.
func (t *MCPTool) Call(ctx context.Context, args map[string]any) (string, error) {
	res, err := t.Session.CallTool(ctx, &mcp.CallToolParams{Name: t.ToolSpec.Name, Arguments: args})
	if err != nil {
		return "", fmt.Errorf("MCP tool %s: %w", t.ToolSpec.Name, err)
	}
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	text := strings.Join(parts, "\n")
	if res.IsError {
		return "", errors.New(strings.TrimPrefix(text, "error: ")) // a Sparrow server's error result
	}
	return text, nil
}

// NewMCPServer returns an MCP server offering tools; each call runs in the sandbox (envs.CallTool with lim).
func NewMCPServer(tools []envs.Tool, lim envs.ToolLimits) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "sparrow-tools", Version: "1.0.0"}, nil)
	for _, t := range tools {
		spec := t.Spec()
		var schema any = map[string]any{"type": "object"}
		if spec.Parameters != "" {
			schema = json.RawMessage(spec.Parameters)
		}
		s.AddTool(&mcp.Tool{Name: spec.Name, Description: spec.Description, InputSchema: schema},
			func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				args := string(req.Params.Arguments)
				if args == "" || args == "null" {
					args = "{}"
				}
				r := envs.CallTool(ctx, tools, spec.Name, args, lim)
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: r.Content}}, IsError: r.Err != nil}, nil
			})
	}
	return s
}

// ServeMCPStdio serves tools as an MCP server over stdin and stdout until the client leaves or ctx ends.
func ServeMCPStdio(ctx context.Context, tools []envs.Tool, lim envs.ToolLimits) error {
	return NewMCPServer(tools, lim).Run(ctx, &mcp.StdioTransport{})
}

// MCPHandler serves tools as an MCP server over streamable HTTP.
func MCPHandler(tools []envs.Tool, lim envs.ToolLimits) http.Handler {
	s := NewMCPServer(tools, lim)
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
}
