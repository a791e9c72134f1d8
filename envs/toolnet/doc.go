// Package toolnet runs the tools of tool environments (envs.ToolEnv) outside the rollout worker: as NATS
// request-reply services (Serve, `trainer tools serve --nats URL`: one micro endpoint per tool in a queue
// group, so heavy tools scale on their own machines; NATSTool calls one with a per-try timeout and retries),
// and from any Model Context Protocol server, over stdio or streamable HTTP, through the official Go MCP SDK
// (ConnectMCP, MCPTool), so existing tools plug into RL without Go code. WithTools swaps an environment's
// tools for remote ones of the same names; its tasks, prompts and verifier stay the environment's own. The
// envs package never sees the network: this one does.
package toolnet
