package toolnet

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// The test binary doubles as the helper processes: a NATS tools worker whose calc hangs (to be killed
// mid-call), and an MCP stdio server of calc.
const (
	envHangWorker = "SPARROW_TOOLNET_HANG_WORKER" // NATS URL
	envMCPStdio   = "SPARROW_TOOLNET_MCP_STDIO"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(envHangWorker); url != "" {
		os.Exit(hangWorker(url))
	}
	if os.Getenv(envMCPStdio) != "" {
		if err := ServeMCPStdio(context.Background(), calcTools(), envs.ToolLimits{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func calcTools() []envs.Tool { return []envs.Tool{envs.Calculator{}} }

// hangTool is calc that announces the call on "test.started" and never answers.
type hangTool struct{ nc *nats.Conn }

func (h hangTool) Spec() envs.ToolSpec { return envs.Calculator{}.Spec() }
func (h hangTool) Call(ctx context.Context, _ map[string]any) (string, error) {
	_ = h.nc.Publish("test.started", []byte(fmt.Sprint(os.Getpid())))
	_ = h.nc.Flush()
	<-ctx.Done()
	return "", ctx.Err()
}

func hangWorker(url string) int {
	nc, err := nats.Connect(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := Serve(context.Background(), nc, []envs.Tool{hangTool{nc}}, ServeOptions{Limits: envs.ToolLimits{Timeout: time.Hour}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = nc.Publish("test.ready", nil)
	_ = nc.Flush()
	select {}
}

// embeddedNATS starts a nats-server in process on 127.0.0.1.
func embeddedNATS(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// smallEngine is a tiny random policy: the tests force its tokens, so only the engine's mechanics matter.
func smallEngine(t *testing.T) (*model.Engine, *data.Tokenizer) {
	t.Helper()
	cfg := configs.DefaultModel()
	cfg.HiddenSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads = 32, 2, 2
	cfg.QLoraRank, cfg.KVLoraRank, cfg.QKNopeHeadDim, cfg.QKRopeHeadDim, cfg.VHeadDim = 16, 16, 8, 8, 8
	cfg.IntermediateSize, cfg.MoEIntermediateSize, cfg.NRoutedExperts, cfg.NGroup, cfg.TopkGroup = 64, 16, 4, 2, 1
	cfg.MaxPositionEmbeddings = 1024
	p := model.NewParams(cfg)
	p.Init(3)
	tok, err := data.NewTokenizer(cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	return model.NewEngine(p), tok
}

// forcedEpisode runs one episode of task in env whose policy writes the worked conversation of the local
// calc environment (the EOS after a call block is the loop's to insert).
func forcedEpisode(t *testing.T, eng *model.Engine, tok *data.Tokenizer, local, env envs.ToolEnv, task envs.Task, lim envs.ToolLimits) data.Trajectory {
	t.Helper()
	conv, err := local.Episode(context.Background(), task, -1)
	if err != nil {
		t.Fatal(err)
	}
	ids, mask, err := data.EncodeForTraining(tok, conv, envs.ToolEncodeOptions())
	if err != nil {
		t.Fatal(err)
	}
	var script []int32
	for k, id := range ids {
		if mask[k] == 1 && !(id == data.EOS && k+1 < len(ids)) {
			script = append(script, id)
		}
	}
	gs := rollout.NewGroupSampler(eng, tok, env, "w", rollout.SamplerConfig{Params: rollout.SamplingParams{Temperature: 1, TopP: 1}, GroupSize: 1,
		MaxNewTokens: 400, Episode: rollout.EpisodeConfig{Drawer: &rollout.ForcedDrawer{Tokens: script}, Limits: lim}})
	g, err := gs.Sample(context.Background(), task, "g", 0, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	tr := g.Trajectories[0]
	if err := tr.Validate(eng.Cfg.VocabSize); err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestNATSToolWorkerKilledMidCall: a calc episode whose tool runs as a NATS service in another process; the
// worker is killed (SIGKILL) while it holds the call; the call's try times out, the retry reaches a worker
// started after the kill, and the episode ends cleanly with the right result. With no worker left at all
// the call fails after its tries, the policy reads an error result and the episode still ends cleanly.
func TestNATSToolWorkerKilledMidCall(t *testing.T) {
	url := embeddedNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	started, err := nc.SubscribeSync("test.started")
	if err != nil {
		t.Fatal(err)
	}
	ready, err := nc.SubscribeSync("test.ready")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHangWorker+"="+url)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if _, err := ready.NextMsg(20 * time.Second); err != nil {
		t.Fatalf("the tools worker process did not come up: %v", err)
	}

	eng, tok := smallEngine(t)
	fam, err := envs.New("calc", envs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	local := fam.(envs.ToolEnv)
	task := fam.Sample(rand.New(rand.NewPCG(3, 3)), data.SplitTrain)
	remote := WithTools(local, NATSTools(nc, "", local.Tools(), 500*time.Millisecond, 8))

	// kill the worker once it holds the call, then start a healthy one in this process
	go func() {
		if _, err := started.NextMsg(20 * time.Second); err != nil {
			return
		}
		_ = cmd.Process.Kill()
		wc, err := nats.Connect(url)
		if err != nil {
			return
		}
		t.Cleanup(wc.Close)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		_, _ = Serve(ctx, wc, local.Tools(), ServeOptions{})
	}()
	start := time.Now()
	tr := forcedEpisode(t, eng, tok, local, remote, task, envs.ToolLimits{Timeout: 10 * time.Second})
	text := tok.Decode(tr.CompletionTokens)
	if !strings.Contains(text, "<result>"+task.Answer+"</result>") || tr.RewardParts["tool_errors"] != 0 || tr.RewardParts["correct"] != 1 || tr.FinishReason != "stop" {
		t.Fatalf("after the kill: parts %v finish %s\n%s", tr.RewardParts, tr.FinishReason, text)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Errorf("the episode took %s: the killed worker's try should have timed out first", time.Since(start))
	}

	// no worker at all: an error result after the tries, the episode goes on to its end
	nc2, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	lonely := WithTools(local, []envs.Tool{&NATSTool{NC: nc2, Subject: "sparrow.nobody.calc", ToolSpec: envs.Calculator{}.Spec(), TryTimeout: 100 * time.Millisecond, Retries: 2}})
	tr = forcedEpisode(t, eng, tok, local, lonely, task, envs.ToolLimits{Timeout: 5 * time.Second})
	text = tok.Decode(tr.CompletionTokens)
	if tr.RewardParts["tool_errors"] != 1 || tr.FinishReason != "stop" || !strings.Contains(text, "<result>error: tool service did not answer: calc on sparrow.nobody.calc, 3 tries") {
		t.Fatalf("no worker: parts %v finish %s\n%s", tr.RewardParts, tr.FinishReason, text)
	}
}

// TestMCPServerAnswers: an MCP server of calc started by the test, over stdio (this test binary as the
// server's command) and over streamable HTTP on 127.0.0.1, lists calc with its schema and answers calls; an
// episode whose calc is the MCP server's ends with the right result.
func TestMCPServerAnswers(t *testing.T) {
	srv := httptest.NewServer(MCPHandler(calcTools(), envs.ToolLimits{}))
	defer srv.Close()
	t.Setenv(envMCPStdio, "1")
	eng, tok := smallEngine(t)
	fam, err := envs.New("calc", envs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	local := fam.(envs.ToolEnv)
	task := fam.Sample(rand.New(rand.NewPCG(4, 4)), data.SplitTrain)
	for _, target := range []string{os.Args[0] + " -test.run=^$", srv.URL} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := ConnectMCP(ctx, target)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", target, err)
		}
		if len(c.Tools) != 1 || c.Tools[0].Spec().Name != "calc" || !sameJSON(t, c.Tools[0].Spec().Parameters, (envs.Calculator{}).Spec().Parameters) {
			t.Fatalf("%s: tools %+v", target, c.Tools)
		}
		for _, call := range []struct{ args, want string }{{`{"expr": "12*12+1"}`, "145"}, {`{"expr": "1+"}`, "error: bad arguments: expression ends early"}} {
			r := envs.CallTool(ctx, c.Tools, "calc", call.args, envs.ToolLimits{})
			if r.Content != call.want {
				t.Errorf("%s: calc(%s) = %q, want %q", target, call.args, r.Content, call.want)
			}
		}
		tr := forcedEpisode(t, eng, tok, local, WithTools(local, c.Tools), task, envs.ToolLimits{})
		if tr.RewardParts["correct"] != 1 || tr.RewardParts["tool_errors"] != 0 {
			t.Errorf("%s: episode parts %v", target, tr.RewardParts)
		}
		_ = c.Close()
		cancel()
	}
}

// sameJSON reports whether two JSON texts hold the same value (the SDK reorders a schema's keys).
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}
