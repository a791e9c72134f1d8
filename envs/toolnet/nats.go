// nats.go: tools as NATS request-reply services (nats.go's micro package). A request's payload is the
// call's arguments as a JSON object; the reply is {"content": ..., "error": ...}. Serve runs every call in
// the sandbox (envs.CallTool: deadline, argument and output limits), each request in its own goroutine up
// to a concurrency bound; NATSTool, the caller's side, tries each call with a per-try timeout and retries
// on a timeout or no responders (a worker killed mid-call, or one not yet up), within the call's context.

package toolnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/sparrow-rl/sparrow/envs"
)

// DefaultPrefix is the subject prefix of tool services: a tool named calc answers on sparrow.tools.calc.
const DefaultPrefix = "sparrow.tools"

// QueueGroup is the queue group of every tool endpoint: each request goes to one of the serving workers.
const QueueGroup = "sparrow-tools"

// Reply is a tool service's answer.
type Reply struct {
	Content string `json:"content"`
	Error   string `json:"error,omitempty"`
}

// ServeOptions configures Serve.
type ServeOptions struct {
	Prefix      string          // subject prefix, DefaultPrefix when empty
	Limits      envs.ToolLimits // the sandbox of every call
	Concurrency int             // calls run at once (default 4)
	Log         *slog.Logger
}

// Serve adds a micro service answering calls of tools on <prefix>.<tool name> in QueueGroup, until ctx ends
// (then the service stops). It returns once the endpoints are subscribed.
func Serve(ctx context.Context, nc *nats.Conn, tools []envs.Tool, o ServeOptions) (micro.Service, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	svc, err := micro.AddService(nc, micro.Config{Name: "sparrow-tools", Version: "1.0.0", QueueGroup: QueueGroup,
		Description: "Sparrow tool environments' tools"})
	if err != nil {
		return nil, fmt.Errorf("toolnet: adding the service: %w", err)
	}
	sem := make(chan struct{}, o.Concurrency)
	grp := svc.AddGroup(o.Prefix)
	for _, t := range tools {
		name := t.Spec().Name
		handler := micro.HandlerFunc(func(req micro.Request) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				defer func() { <-sem }()
				r := envs.CallTool(ctx, tools, name, string(req.Data()), o.Limits)
				rep := Reply{Content: r.Content}
				if r.Err != nil {
					rep.Error = r.Err.Error()
				}
				if err := req.RespondJSON(rep); err != nil {
					o.Log.Warn("toolnet: reply not sent", "tool", name, "err", err)
				}
			}()
		})
		if err := grp.AddEndpoint(name, handler); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("toolnet: endpoint %s.%s: %w", o.Prefix, name, err)
		}
	}
	go func() {
		<-ctx.Done()
		_ = svc.Stop()
	}()
	return svc, nil
}

// NATSTool calls a tool served by Serve. Spec is the tool's description as the prompt lists it (the local
// environment's: the service runs the same tool).
type NATSTool struct {
	NC         *nats.Conn
	Subject    string
	ToolSpec   envs.ToolSpec
	TryTimeout time.Duration // one request's deadline (default 2 s)
	Retries    int           // further tries after a timeout or no responders (default 2)
}

// Spec returns ToolSpec.
func (t *NATSTool) Spec() envs.ToolSpec { return t.ToolSpec }

// ErrRemote is a call whose service did not answer in its tries.
var ErrRemote = errors.New("tool service did not answer")

// Call sends the arguments and returns the reply's content, or its error.
func (t *NATSTool) Call(ctx context.Context, args map[string]any) (string, error) {
	body, err := json.Marshal(args)
	if err != nil {
		return "", fmt.Errorf("%w: %v", envs.ErrBadArguments, err)
	}
	try := t.TryTimeout
	if try <= 0 {
		try = 2 * time.Second
	}
	retries := t.Retries
	if retries <= 0 {
		retries = 2
	}
	var last error
	for attempt := 0; attempt <= retries; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, try)
		msg, err := t.NC.RequestWithContext(tctx, t.Subject, body)
		cancel()
		if err == nil {
			var rep Reply
			if err := json.Unmarshal(msg.Data, &rep); err != nil {
				return "", fmt.Errorf("tool %s: reply is not a tool reply: %w", t.ToolSpec.Name, err)
			}
			if rep.Error != "" {
				return "", errors.New(rep.Error)
			}
			return rep.Content, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		last = err
		if errors.Is(err, nats.ErrNoResponders) {
			select { // a worker may be starting: a short pause before the next try
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
	}
	return "", fmt.Errorf("%w: %s on %s, %d tries: %v", ErrRemote, t.ToolSpec.Name, t.Subject, retries+1, last)
}

// NATSTools returns NATSTool callers of the given tools' specs on <prefix>.<name>.
func NATSTools(nc *nats.Conn, prefix string, tools []envs.Tool, tryTimeout time.Duration, retries int) []envs.Tool {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	out := make([]envs.Tool, len(tools))
	for i, t := range tools {
		out[i] = &NATSTool{NC: nc, Subject: prefix + "." + t.Spec().Name, ToolSpec: t.Spec(), TryTimeout: tryTimeout, Retries: retries}
	}
	return out
}
