// telemetry.go: the registry and the HTTP server of /metrics, and the loopback rule of its address.

package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the metrics are served.
const Path = "/metrics"

// ErrNotLoopback is the error of an address whose host is not a loopback address, without AllowRemote.
var ErrNotLoopback = errors.New("telemetry: the metrics address is not a loopback address")

// Telemetry owns a process's Prometheus registry and serves it.
type Telemetry struct {
	// Registry holds the process's collectors; register more with it before Serve.
	Registry *prometheus.Registry
	// AllowRemote lets Serve bind a host that is not a loopback address (/metrics has no authentication).
	AllowRemote bool
	// Log receives the server's start and errors; nil is slog.Default().
	Log *slog.Logger
}

// New returns a Telemetry whose registry has the Go runtime and process collectors.
func New() *Telemetry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Telemetry{Registry: reg}
}

// Handler serves the registry in the Prometheus exposition formats.
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{Registry: t.Registry, ErrorLog: errorLog{t.log()}})
}

func (t *Telemetry) log() *slog.Logger {
	if t.Log == nil {
		return slog.Default()
	}
	return t.Log
}

// ListenAddr returns the address Serve binds for addr: ":9090" and "9090" become "127.0.0.1:9090"; a
// loopback host ("localhost", 127.0.0.0/8, "::1") is kept; any other host is ErrNotLoopback unless
// allowRemote.
func ListenAddr(addr string, allowRemote bool) (string, error) {
	if addr == "" {
		return "", errors.New("telemetry: empty metrics address (want [HOST]:PORT)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if _, perr := net.LookupPort("tcp", addr); perr != nil {
			return "", fmt.Errorf("telemetry: metrics address %q: want [HOST]:PORT: %w", addr, err)
		}
		host, port = "", addr // a bare port
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return "", fmt.Errorf("telemetry: metrics address %q: %w", addr, err)
	}
	switch {
	case host == "":
		host = "127.0.0.1"
	case host == "localhost":
	case isLoopback(host):
	case !allowRemote:
		return "", fmt.Errorf("%w: %q binds host %s, which other machines may reach, and /metrics has no authentication: "+
			"allow it explicitly (--metrics-allow-remote), or use a loopback host (127.0.0.1:%s)", ErrNotLoopback, addr, host, port)
	}
	return net.JoinHostPort(host, port), nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Server is a running /metrics endpoint.
type Server struct {
	srv   *http.Server
	addr  net.Addr
	done  chan struct{}
	once  sync.Once
	close error
}

// Serve listens on addr (ListenAddr's rule) and serves /metrics until ctx ends or Close. It returns once
// the listener is bound, so an address in use is its error; port 0 picks a free port (Server.Addr).
func (t *Telemetry) Serve(ctx context.Context, addr string) (*Server, error) {
	bind, err := ListenAddr(addr, t.AllowRemote)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("telemetry: metrics endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, t.Handler())
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr(), done: make(chan struct{})}
	log := t.log()
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("telemetry: metrics endpoint stopped", "addr", s.addr.String(), "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	log.Info("telemetry: serving Prometheus metrics", "url", s.URL())
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.addr }

// URL is the endpoint's http URL.
func (s *Server) URL() string { return "http://" + s.addr.String() + Path }

// Close stops the server and waits for it.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.close = fmt.Errorf("telemetry: closing the metrics endpoint: %w", err)
		}
		<-s.done
	})
	return s.close
}

// errorLog adapts slog to promhttp's error logger.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Println(v ...any) { e.log.Error("telemetry: " + fmt.Sprint(v...)) }
