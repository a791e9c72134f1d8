// Tests of `trainer dashboard`: it serves the page and its APIs on a loopback port until its context ends,
// and refuses a host other machines may reach without --allow-remote.

package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/internal/dashboard"
)

func TestDashboardServesUntilStopped(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serveDashboard(ctx, []string{dir}, "127.0.0.1:0", false, func(u string) { urls <- u }) }()
	var url string
	select {
	case url = <-urls:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("no URL within 10 s")
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("URL %q: want http://127.0.0.1:PORT/", url)
	}
	for path, want := range map[string]string{"": "uPlot", "api/runs": `"runs"`} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %s: %.200s", url+path, resp.Status, body)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still serving 10 s after its context ended")
	}
}

func TestDashboardRefusesRemoteHost(t *testing.T) {
	err := serveDashboard(context.Background(), []string{t.TempDir()}, "0.0.0.0:0", false, func(string) { t.Error("served") })
	if !errors.Is(err, dashboard.ErrNotLoopback) {
		t.Errorf("0.0.0.0:0 without --allow-remote: %v; want ErrNotLoopback", err)
	}
	cmd := newDashboardCmd()
	cmd.SetArgs([]string{})
	if err := cmd.Execute(); err == nil {
		t.Error("dashboard without a run directory: no error")
	}
}
