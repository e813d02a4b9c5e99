package api

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// MaxHeaderBytes is the most a request's line and headers may hold, in
// bytes, on a server from NewHTTPServer: a request with more gets 431 in
// the JSON error shape (code headers_too_large) before any handler runs.
const MaxHeaderBytes = 16 << 10

// readLimit is what net/http itself reads of a request's head at most
// (MaxHeaderBytes of its own, plus 4 KiB it allows on top); a head larger
// than that gets net/http's own plain-text 431.
const readLimit = 64 << 10

// NewHTTPServer returns an http.Server for h with bounded header, read,
// write and idle times, a MaxHeaderBytes header limit, and the server's
// own errors logged to log at Warn. cmd/node serves with it; so can an
// embedding service.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           limitHeaders(h),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    readLimit,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// limitHeaders refuses a request whose line and headers hold more than
// MaxHeaderBytes, counted as they came on the wire, with 431.
func limitHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 // "GET /x HTTP/1.1\r\n"
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4 // "K: v\r\n"
			}
		}
		if n > MaxHeaderBytes {
			WriteError(w, http.StatusRequestHeaderFieldsTooLarge, "headers_too_large",
				"the request line and headers hold "+strconv.Itoa(n)+" bytes, more than the "+strconv.Itoa(MaxHeaderBytes)+" allowed")
			return
		}
		h.ServeHTTP(w, r)
	})
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
