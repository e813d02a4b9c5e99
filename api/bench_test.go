package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/health"
)

// discardWriter is a ResponseWriter that keeps nothing but its header map,
// so the benchmarks measure the handler, not the recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

var okBody = []byte(`{"ok":true}`)

func bare() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(okBody)
	})
}

func benchHandler(b *testing.B, h http.Handler) {
	r := httptest.NewRequest(http.MethodGet, "/test", nil)
	r.Header.Set("X-API-Key", "pro-1")
	w := &discardWriter{h: make(http.Header, 8)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

// BenchmarkBareHandler is the floor: the same handler with no limiter.
func BenchmarkBareHandler(b *testing.B) { benchHandler(b, bare()) }

// BenchmarkMiddleware is the bare handler behind the limiter, with a limit
// high enough that every request is admitted. The difference from
// BenchmarkBareHandler is what the middleware adds per request.
func BenchmarkMiddleware(b *testing.B) {
	hugeKeys := fakeKeys{"pro-1": {Name: "pro", Limit: 1 << 30, Burst: 1 << 30, Degraded: 1 << 30}}
	lim := NewLimiter(Config{
		Keys: hugeKeys, Checker: Local{Store: bucket.New(bucket.Config{Window: time.Minute})},
		Health: health.NewHolder("a"), Window: time.Minute,
	})
	benchHandler(b, lim.Middleware(bare()))
}
