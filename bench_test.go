package tierlimit

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing but its header map,
// so the benchmarks measure the handler, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// benchServe serves one request with an API key through h per iteration.
func benchServe(b *testing.B, h http.Handler) {
	r := httptest.NewRequest(http.MethodGet, "/v1/transcribe", nil)
	r.Header.Set("X-API-Key", "big-1")
	w := &discardWriter{h: make(http.Header, 8)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

var okBody = []byte(`{"ok":true}`)

func bareHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(okBody)
	})
}

// BenchmarkLimiter compares a bare handler with the same handler behind a
// single-node Limiter built by New from a tiers file, with a limit that
// never binds: the difference is what the middleware adds per request,
// the key store's lookup in the reloadable file included.
func BenchmarkLimiter(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tiers.json")
	writeTiers(b, path, `{"window_seconds": 60, "tiers": {"big": {"limit": 1000000000}}, "api_keys": {"big-1": "big"}}`)
	lim, err := New(Config{TiersFile: path, NodeName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = lim.Close(b.Context()) })
	b.Run("bare", func(b *testing.B) { benchServe(b, bareHandler()) })
	b.Run("middleware", func(b *testing.B) { benchServe(b, lim.Middleware(bareHandler())) })
}
