package natsbus

// policy_test.go: the policy that travels with the weights (Policy in the weights header) and the attention
// that travels with every group (HdrAttention): the header round-trips and is checked; a worker refuses a
// policy its config contradicts and stops when the learner's policy changes mid-stage; the learner refuses a
// group decoded with another attention than its policy's.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

var (
	densePolicy  = Policy{Attention: configs.AttentionDense}
	sparsePolicy = Policy{Attention: configs.AttentionSparse, SparseTopK: 8}
	keepPolicy   = Policy{Attention: configs.AttentionSparse, SparseTopK: 8, KeepSelection: true}
)

// TestWeightsPolicyHeader: the policy comes back from the encoded weights; an invalid or missing one is
// refused when encoding would let it through.
func TestWeightsPolicyHeader(t *testing.T) {
	p := model.NewParams(configs.Default().Model)
	p.Init(1)
	cases := []struct {
		name string
		pol  Policy
		err  string // "" = valid
	}{
		{"dense", densePolicy, ""},
		{"sparse", sparsePolicy, ""},
		{"sparse with keep_selection", keepPolicy, ""},
		{"no attention (an older learner)", Policy{}, "no attention"},
		{"unknown attention", Policy{Attention: "half"}, `attention "half"`},
		{"sparse without top-k", Policy{Attention: configs.AttentionSparse}, "sparse_topk > 0"},
		{"dense with keep_selection", Policy{Attention: configs.AttentionDense, KeepSelection: true}, "both are for sparse attention"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, pol, err := DecodeWeights(EncodeWeights(p, c.pol))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("DecodeWeights = %v, want an error containing %q", err, c.err)
				}
				if verr := c.pol.Validate(); verr == nil {
					t.Fatal("Validate accepts what DecodeWeights refuses")
				}
				return
			}
			if err != nil || pol != c.pol || q.Data[0][3] != p.Data[0][3] {
				t.Fatalf("DecodeWeights = policy %+v, %v; want %+v and the same values", pol, err, c.pol)
			}
		})
	}
	if _, err := NewWeightPublisher(context.Background(), nil, NewNames("x", "rl"), testBus(), Policy{}, quiet()); err == nil {
		t.Fatal("NewWeightPublisher accepted a policy without attention")
	}
}

// TestCheckPolicy: a worker follows the learner's policy unless its config contradicts it.
func TestCheckPolicy(t *testing.T) {
	cases := []struct {
		name      string
		attention string // the worker config's ("" = cannot tell)
		keep      bool   // the worker config's rl.keep_selection
		pol       Policy // the learner's
		err       string
	}{
		{"dense follows dense", configs.AttentionDense, false, densePolicy, ""},
		{"sparse follows sparse", configs.AttentionSparse, false, sparsePolicy, ""},
		{"unknown follows sparse", "", false, sparsePolicy, ""},
		{"unknown follows keep_selection", "", true, keepPolicy, ""},
		{"dense config, sparse learner", configs.AttentionDense, false, sparsePolicy, "config says dense"},
		{"sparse config, dense learner", configs.AttentionSparse, false, densePolicy, "config says sparse"},
		{"keep_selection only in the learner", configs.AttentionSparse, false, keepPolicy, "rl.keep_selection false"},
		{"keep_selection only in the worker", configs.AttentionSparse, true, sparsePolicy, "rl.keep_selection true"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := WorkerOptions{Attention: c.attention, AttentionWhy: "test"}
			o.RL.KeepSelection = c.keep
			err := o.checkPolicy(c.pol)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("checkPolicy(%+v) = %v, want %q", c.pol, err, c.err)
			}
		})
	}
}

// TestWorkersStopWhenPolicyChanges: workers that run a sparse policy stop with an error when a later version
// of the weights says dense (they never decode one policy's groups with another's attention).
func TestWorkersStopWhenPolicyChanges(t *testing.T) {
	e := embedded(t, EmbeddedOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := testBus()
	nc, err := Connect(ConnOptions{URL: e.URL(), Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := NewNames("pol", "rl")
	cfg := configs.Default().Model
	p := model.NewParams(cfg)
	p.Init(2)
	sparsePub, err := NewWeightPublisher(ctx, nc, names, b, sparsePolicy, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sparsePub.Publish(ctx, 0, p); err != nil {
		t.Fatal(err)
	}
	fam, err := envs.New("math", envs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rc := configs.Default().RL
	rc.Bus = b
	done := make(chan error, 1)
	var rep WorkerReport
	go func() {
		var err error
		rep, err = RunWorkers(ctx, WorkerOptions{Conn: ConnOptions{URL: e.URL()}, Names: names, RL: rc, Family: fam, Workers: 1, Log: quiet()})
		done <- err
	}()
	// the workers are up once their heartbeat says version 0
	hb, err := WatchHeartbeats(nc, names, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	for deadline := time.Now().Add(30 * time.Second); len(hb.Live()) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat from the workers after 30 s")
		}
	}
	densePub, err := NewWeightPublisher(ctx, nc, names, b, densePolicy, quiet())
	if err != nil {
		t.Fatal(err)
	}
	p.Data[0][0]++
	if _, err := densePub.Publish(ctx, 1, p); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("workers still running 30 s after the policy changed")
	}
	if err == nil || !strings.Contains(err.Error(), "changed its policy") || rep.Policy != sparsePolicy {
		t.Fatalf("RunWorkers = %v (policy %+v), want an error saying the learner changed its policy from %+v", err, rep.Policy, sparsePolicy)
	}
}

// TestLearnerRefusesOtherAttention: a learner refuses (and counts) a group decoded with another attention
// than its policy's and Collect fails naming both; a group without the header (an older worker, dense)
// trains a dense policy only.
func TestLearnerRefusesOtherAttention(t *testing.T) {
	cases := []struct {
		learner, worker string
		ok              bool
	}{
		{configs.AttentionSparse, configs.AttentionSparse, true},
		{configs.AttentionDense, configs.AttentionDense, true},
		{configs.AttentionDense, "", true},
		{configs.AttentionSparse, configs.AttentionDense, false},
		{configs.AttentionSparse, "", false},
		{configs.AttentionDense, configs.AttentionSparse, false},
	}
	e := embedded(t, EmbeddedOptions{})
	for i, c := range cases {
		t.Run(c.learner+"/"+c.worker, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			nc, err := Connect(ConnOptions{URL: e.URL(), Log: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			names := NewNames("att", string(rune('a'+i)))
			l, err := NewLearner(ctx, nc, names, testBus(), 272, 0, quiet())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			l.SetAttention(c.learner)
			w, err := NewWorkerClient(ctx, nc, names, testBus(), 272, "w", quiet())
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.Attention = c.worker
			if err := l.Dispatch(ctx, 0, []rollout.Job{job("g0", 0)}); err != nil {
				t.Fatal(err)
			}
			j, err := w.NextJob(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Publish(ctx, group(j.GroupID, 5)); err != nil {
				t.Fatal(err)
			}
			got, err := l.Collect(ctx, 1)
			if c.ok {
				if err != nil || len(got) != 1 || len(got[0].Trajectories) != 2 {
					t.Fatalf("Collect = %v, %v; want group g0", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "g0") || !strings.Contains(err.Error(), "policy runs "+c.learner) {
				t.Fatalf("Collect = %v, %v; want an error naming g0 and the policy's %s attention", got, err, c.learner)
			}
			if n := l.Counts()[CountAttention]; n != 1 {
				t.Fatalf("%s counted %d times, want 1", CountAttention, n)
			}
		})
	}
}
