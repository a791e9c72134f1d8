// env.go: a tool environment whose tools are remote (NATS services or an MCP server), everything else its own.

package toolnet

import (
	"github.com/sparrow-rl/sparrow/envs"
)

// remoteEnv is a tool environment with some tools replaced by remote ones of the same name.
type remoteEnv struct {
	envs.ToolEnv
	remote map[string]envs.Tool
}

// WithTools returns e whose tools named like one of remote are called through it (a mixture's members too,
// through TaskEnv); e's other tools stay in process. Episode (worked conversations) still runs e's own tools.
func WithTools(e envs.ToolEnv, remote []envs.Tool) envs.ToolEnv {
	m := map[string]envs.Tool{}
	for _, t := range remote {
		m[t.Spec().Name] = t
	}
	return &remoteEnv{ToolEnv: e, remote: m}
}

// Tools returns e's tools, remote where one of the name was given.
func (r *remoteEnv) Tools() []envs.Tool {
	local := r.ToolEnv.Tools()
	out := make([]envs.Tool, len(local))
	for i, t := range local {
		out[i] = t
		if rt, ok := r.remote[t.Spec().Name]; ok {
			out[i] = rt
		}
	}
	return out
}

// TaskEnv returns the environment of task t (a mixture's member), with the same remote tools.
func (r *remoteEnv) TaskEnv(t envs.Task) envs.ToolEnv {
	inner := envs.TaskEnv(r.ToolEnv, t)
	if inner == r.ToolEnv {
		return r
	}
	return &remoteEnv{ToolEnv: inner, remote: r.remote}
}
