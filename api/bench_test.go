package api

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
	"github.com/tierlimit/tierlimit/tierlimittest"
)

// BenchmarkBareHandler is the floor: the same handler with no limiter.
func BenchmarkBareHandler(b *testing.B) { tierlimittest.BenchServe(b, tierlimittest.Bare(), "pro-1") }

// BenchmarkMiddleware is the bare handler behind the limiter, with a limit
// high enough that every request is admitted. The difference from
// BenchmarkBareHandler is what the middleware adds per request.
func BenchmarkMiddleware(b *testing.B) {
	hugeKeys := fakeKeys{"pro-1": {Name: "pro", Limit: 1 << 30, Burst: 1 << 30, Degraded: 1 << 30}}
	lim := NewLimiter(Config{
		Keys: hugeKeys, Checker: Local{Store: bucket.New(bucket.Config{Window: time.Minute})},
		Health: health.NewHolder("a"), Window: time.Minute,
	})
	tierlimittest.BenchServe(b, lim.Middleware(tierlimittest.Bare()), "pro-1")
}

// BenchmarkMiddlewareRefused is the limiter refusing every request: the
// answer a key over its limit gets for most of its requests.
func BenchmarkMiddlewareRefused(b *testing.B) {
	tinyKeys := fakeKeys{"pro-1": {Name: "pro", Limit: 1, Burst: 1, Degraded: 1}}
	lim := NewLimiter(Config{
		Keys: tinyKeys, Checker: Local{Store: bucket.New(bucket.Config{Window: time.Hour})},
		Health: health.NewHolder("a"), Window: time.Hour,
	})
	tierlimittest.BenchServe(b, lim.Middleware(tierlimittest.Bare()), "pro-1")
}

// BenchmarkMiddlewareMetrics is BenchmarkMiddleware with the decision
// metrics on, registered as a node registers them: the difference from
// BenchmarkMiddleware is what counting and timing each decision costs.
func BenchmarkMiddlewareMetrics(b *testing.B) {
	hugeKeys := fakeKeys{"pro-1": {Name: "pro", Limit: 1 << 30, Burst: 1 << 30, Degraded: 1 << 30}}
	m := NewMetrics([]string{"pro"})
	prometheus.NewRegistry().MustRegister(m)
	lim := NewLimiter(Config{
		Keys: hugeKeys, Checker: Local{Store: bucket.New(bucket.Config{Window: time.Minute})},
		Health: health.NewHolder("a"), Window: time.Minute, Metrics: m,
	})
	tierlimittest.BenchServe(b, lim.Middleware(tierlimittest.Bare()), "pro-1")
}

// BenchmarkMiddlewareCostAndConcurrency is BenchmarkMiddleware for a tier
// that also limits cost and concurrency, neither binding: each request
// reserves its estimate (the tier's default), takes a slot, and settles
// and gives it back when the handler returns. The difference from
// BenchmarkMiddleware is what the two limits add per request.
func BenchmarkMiddlewareCostAndConcurrency(b *testing.B) {
	huge := config.Limits{Limit: 1 << 30, Burst: 1 << 30, Degraded: 1 << 30}
	keys := fakeKeys{"pro-1": {Name: "pro", Limit: 1 << 30, Burst: 1 << 30, Degraded: 1 << 30,
		Cost: huge, CostEstimate: 10, Concurrency: huge}}
	local := Local{
		Store: bucket.New(bucket.Config{Window: time.Minute}),
		Slots: bucket.NewSlots(),
	}
	lim := NewLimiter(Config{
		Keys: keys, Checker: local, Spender: local, CostUnit: "s",
		Health: health.NewHolder("a"), Window: time.Minute,
	})
	tierlimittest.BenchServe(b, lim.Middleware(tierlimittest.Bare()), "pro-1")
}
