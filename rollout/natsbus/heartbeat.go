// heartbeat.go: worker heartbeats (core NATS on sparrow.<run>.hb.<stage>, not stored) and the learner's
// view of the live workers and their throughput. A worker silent for three periods is reported gone.

package natsbus

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Beat is one heartbeat.
type Beat struct {
	Worker  string    `json:"worker"` // process id: host-pid
	Workers int       `json:"workers"`
	Groups  int64     `json:"groups"` // published since start
	Tokens  int64     `json:"tokens"`
	Version int64     `json:"policy_version"`
	Time    time.Time `json:"time"`
}

// StartHeartbeat publishes beat() every period until the returned stop is called.
func StartHeartbeat(nc *nats.Conn, n Names, every time.Duration, beat func() Beat) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	send := func() {
		b := beat()
		b.Time = time.Now()
		data, _ := json.Marshal(b)
		_ = nc.Publish(n.HeartbeatSubject(), data)
	}
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		send()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				send()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// WorkerStatus is one live worker process as the learner sees it.
type WorkerStatus struct {
	Worker     string  `json:"worker"`
	Workers    int     `json:"workers"`
	Groups     int64   `json:"groups"`
	GroupsPerS float64 `json:"groups_per_s"`
	TokensPerS float64 `json:"tokens_per_s"`
	Version    int64   `json:"policy_version"`
	AgoS       float64 `json:"last_seen_s"`
}

type beatState struct {
	first, last Beat
	seen        time.Time
}

// Heartbeats tracks the workers' heartbeats.
type Heartbeats struct {
	sub     *nats.Subscription
	timeout time.Duration
	mu      sync.Mutex
	m       map[string]*beatState
}

// WatchHeartbeats subscribes to the stage's heartbeats; timeout is the silence after which a worker is gone.
func WatchHeartbeats(nc *nats.Conn, n Names, timeout time.Duration) (*Heartbeats, error) {
	h := &Heartbeats{timeout: timeout, m: map[string]*beatState{}}
	sub, err := nc.Subscribe(n.HeartbeatSubject(), func(msg *nats.Msg) {
		var b Beat
		if json.Unmarshal(msg.Data, &b) != nil || b.Worker == "" {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		st, ok := h.m[b.Worker]
		if !ok {
			st = &beatState{first: b}
			h.m[b.Worker] = st
		}
		st.last, st.seen = b, time.Now()
	})
	if err != nil {
		return nil, fmt.Errorf("natsbus: subscribing to heartbeats: %w", err)
	}
	h.sub = sub
	return h, nil
}

// Live returns the workers heard from within the timeout, by id.
func (h *Heartbeats) Live() []WorkerStatus {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []WorkerStatus
	for id, st := range h.m {
		ago := time.Since(st.seen)
		if ago > h.timeout {
			continue
		}
		ws := WorkerStatus{Worker: id, Workers: st.last.Workers, Groups: st.last.Groups, Version: st.last.Version, AgoS: round1(ago.Seconds())}
		if dt := st.last.Time.Sub(st.first.Time).Seconds(); dt > 0 {
			ws.GroupsPerS = float64(st.last.Groups-st.first.Groups) / dt
			ws.TokensPerS = float64(st.last.Tokens-st.first.Tokens) / dt
		}
		out = append(out, ws)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Worker < out[j].Worker })
	return out
}

// Summary is a one-line report of the live workers: "2 [host-1 (2 workers, 0.8 groups/s, v3), ...]".
func (h *Heartbeats) Summary() string {
	live := h.Live()
	parts := make([]string, len(live))
	for i, w := range live {
		parts[i] = fmt.Sprintf("%s (%d workers, %.2f groups/s, v%d)", w.Worker, w.Workers, w.GroupsPerS, w.Version)
	}
	return fmt.Sprintf("%d [%s]", len(live), strings.Join(parts, ", "))
}

// Close unsubscribes.
func (h *Heartbeats) Close() {
	if h != nil && h.sub != nil {
		_ = h.sub.Unsubscribe()
	}
}
