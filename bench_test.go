package tierlimit

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tierlimit/tierlimit/tierlimittest"
)

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
	b.Run("bare", func(b *testing.B) { tierlimittest.BenchServe(b, tierlimittest.Bare(), "big-1") })
	b.Run("middleware", func(b *testing.B) { tierlimittest.BenchServe(b, lim.Middleware(tierlimittest.Bare()), "big-1") })

	// With the queue: a slot free for every request (the fast path).
	queued, err := New(Config{TiersFile: path, NodeName: "bench-queue", Capacity: 1_000_000, QueueWait: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = queued.Close(b.Context()) })
	b.Run("middleware-queue", func(b *testing.B) { tierlimittest.BenchServe(b, queued.Middleware(tierlimittest.Bare()), "big-1") })
}
