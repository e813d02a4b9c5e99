package api

import (
	"log/slog"
	"net/http"
	"time"
)

// NewHTTPServer returns an http.Server for h with bounded header, read,
// write and idle times, a 16 KiB header limit, and the server's own errors
// logged to log at Warn. cmd/node serves with it; so can an embedding
// service.
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

// ReadyHandler answers a readiness probe: 200 {"status":"ready"} when
// ready returns nil, else 503 with its error in the JSON error body (code
// not_ready).
func ReadyHandler(ready func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := ready(); err != nil {
			WriteError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}
