package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health tracks the readiness of the appliance's components for /readyz.
type Health struct {
	mu    sync.Mutex
	ready map[string]bool
}

// NewHealth returns a Health with no components, which is not ready.
func NewHealth() *Health { return &Health{ready: map[string]bool{}} }

// SetReady records whether component name (e.g. "capture", a sink name) is ready.
func (h *Health) SetReady(name string, ok bool) {
	h.mu.Lock()
	h.ready[name] = ok
	h.mu.Unlock()
}

// Ready reports whether every known component is ready (and at least one is known); when
// not, reason names the components that are not.
func (h *Health) Ready() (ok bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ready) == 0 {
		return false, "starting"
	}
	var down []string
	for name, ok := range h.ready {
		if !ok {
			down = append(down, name)
		}
	}
	if len(down) == 0 {
		return true, ""
	}
	sort.Strings(down)
	return false, "not ready: " + strings.Join(down, ", ")
}

// Handler serves /metrics (from m's registry), /healthz (200 while the process lives) and
// /readyz (200 when h is ready, else 503 with the reason) — the latter fits a load
// balancer health check.
func Handler(m *Metrics, h *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, reason := h.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, reason)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Serve listens on addr and serves Handler(m, h) until ctx ends, then shuts down gracefully.
// A listen failure is returned at once.
func Serve(ctx context.Context, addr string, m *Metrics, h *Health, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, m, h, log)
}

// ServeListener is Serve on an existing listener.
func ServeListener(ctx context.Context, ln net.Listener, m *Metrics, h *Health, log *slog.Logger) error {
	srv := &http.Server{Handler: Handler(m, h), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if log != nil {
		log.Info("serving metrics", "addr", ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down metrics server: %w", err)
	}
	return nil
}
