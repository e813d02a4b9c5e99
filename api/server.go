package api

import (
	"crypto/sha256"
	"log/slog"
	"net/http"
	"time"
)

// NewHTTPServer returns the http.Server a node serves h with: bounded
// header, read, write and idle times, a 16 KiB header limit, and the
// server's own errors logged to log at Warn.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// ServerConfig configures the HTTP handler of a node. Limiter, Health and
// AdminToken are required.
type ServerConfig struct {
	// Limiter guards GET /test.
	Limiter *Limiter
	// AdminToken is the bearer token for /system/*; it must not be empty.
	AdminToken string
	// NodeName names this node in responses.
	NodeName string
	// Members lists the cluster for GET /system/cluster. Nil shows this node
	// alone.
	Members func() []Member
	// Ready reports whether the node should receive traffic (config loaded,
	// cluster joined). Nil means always ready.
	Ready func() error
	// Metrics serves GET /metrics. Nil answers 404.
	Metrics http.Handler
	// Logger receives admin events. Nil discards.
	Logger *slog.Logger
}

// TestResponse is the body of a successful GET /test.
type TestResponse struct {
	OK     bool   `json:"ok"`
	Tier   string `json:"tier"`
	Status string `json:"status"`
	Node   string `json:"node"`
}

// NewHandler returns the node's HTTP handler:
//
//	GET  /test            demo endpoint behind the rate limiter
//	GET  /system/health   current health state (admin token)
//	POST /system/health   set NORMAL or DEGRADED (admin token)
//	GET  /system/cluster  members and which one answered (admin token)
//	GET  /livez, /readyz  probes, never rate limited
//	GET  /metrics         Prometheus text format
//
// It panics if Limiter is nil or AdminToken is empty.
func NewHandler(cfg ServerConfig) http.Handler {
	if cfg.Limiter == nil || cfg.AdminToken == "" {
		panic("api: ServerConfig needs Limiter and AdminToken")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lim := cfg.Limiter
	a := &admin{
		tokenSum: sha256.Sum256([]byte(cfg.AdminToken)),
		health:   lim.health,
		node:     cfg.NodeName,
		members:  cfg.Members,
		now:      lim.now,
		logf:     log.Info,
	}
	mux := http.NewServeMux()
	mux.Handle("/test", lim.Middleware(testHandler(lim.keys, lim, cfg.NodeName)))
	mux.HandleFunc("/system/health", a.requireToken(a.serveHealth))
	mux.HandleFunc("/system/cluster", a.requireToken(a.serveCluster))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Ready != nil {
			if err := cfg.Ready(); err != nil {
				writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if cfg.Metrics != nil {
		mux.Handle("/metrics", cfg.Metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
	})
	return mux
}

// testHandler answers GET /test for a request the middleware admitted.
func testHandler(keys Keys, lim *Limiter, node string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		tier, _ := keys.Lookup(r.Header.Get("X-API-Key"))
		writeJSON(w, http.StatusOK, TestResponse{OK: true, Tier: tier.Name, Status: lim.health.Status().String(), Node: node})
	})
}
