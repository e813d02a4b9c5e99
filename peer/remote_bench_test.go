package peer

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/ownership"
	"github.com/tierlimit/tierlimit/ring"
)

// singlePeer is a PeerSource with one peer.
type singlePeer struct {
	name string
	peer forward.Peer
}

func (s singlePeer) Peer(name string) (forward.Peer, bool) {
	if name == s.name {
		return s.peer, true
	}
	return nil, false
}

// remoteFixture is two nodes, "a" and "b", on loopback: b serves its store
// over real gRPC, a routes through a Router to b.
type remoteFixture struct {
	router *ownership.Router
	client *Client
	keys   []string // keys that b owns
}

func newRemoteFixture(b *testing.B) remoteFixture {
	b.Helper()
	srvCreds, cliCreds, err := Credentials("")
	require.NoError(b, err)
	addr := serveTCP(b, srvCreds, newOwner(time.Minute))
	c, err := NewClient(addr, cliCreds)
	require.NoError(b, err)
	b.Cleanup(func() { _ = c.Close() })

	rg := ring.New()
	rg.Set([]string{"a", "b"})
	r := ownership.NewRouter(ownership.RouterConfig{
		Self: "a", Ring: rg,
		Local:          bucket.New(bucket.Config{Window: time.Minute}),
		Fallback:       bucket.New(bucket.Config{Window: time.Minute}),
		Peers:          singlePeer{name: "b", peer: c},
		ForwardTimeout: time.Second, // measure the round trip, never a fallback
		LeaseTTL:       -1,          // and every check's: a lease would answer most of them here
	})
	b.Cleanup(r.Close)
	var keys []string
	for i := 0; len(keys) < 1024; i++ {
		k := fmt.Sprintf("key-%d", i)
		if o, _ := rg.Owner(k); o == "b" {
			keys = append(keys, k)
		}
	}
	// Connect and warm up outside the measurement.
	for _, k := range keys[:16] {
		r.Check(b.Context(), time.Now(), k, 1<<30)
	}
	return remoteFixture{router: r, client: c, keys: keys}
}

// BenchmarkRemoteCheck measures a check for a key owned by another node,
// through the Router, its Batcher and real gRPC on loopback, without
// leases, so that every check pays the round trip (ownership's
// BenchmarkRouterCheck/leased measures a check a lease answers):
//
//   - latency: one caller at a time (low load); reports p50 and p99.
//   - coalesced: 64 concurrent callers through the Router's batcher.
//   - unbatched: 64 concurrent callers, one unary RPC per check on the same
//     connection, as a limiter without coalescing would do (and as the
//     Client did before it kept a stream).
//   - unbatched-stream: 64 concurrent callers, one Client.Check per check:
//     one message each way on the Client's one stream.
//
// Run: go test -run '^$' -bench RemoteCheck -benchtime 3s ./peer
func BenchmarkRemoteCheck(b *testing.B) {
	b.Run("latency", func(b *testing.B) {
		f := newRemoteFixture(b)
		lat := make([]time.Duration, 0, 1<<16)
		i := 0
		for b.Loop() {
			start := time.Now()
			d := f.router.Check(context.Background(), start, f.keys[i%len(f.keys)], 1<<30)
			if len(lat) < cap(lat) {
				lat = append(lat, time.Since(start))
			}
			if !d.Allowed {
				b.Fatal("refused: the benchmark's limit is too low")
			}
			i++
		}
		reportPercentiles(b, lat)
	})
	b.Run("coalesced", func(b *testing.B) {
		f := newRemoteFixture(b)
		var next atomic.Uint64
		b.SetParallelism(32) // 64 goroutines on 2 CPUs
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := f.keys[next.Add(1)%uint64(len(f.keys))]
				f.router.Check(context.Background(), time.Now(), k, 1<<30)
			}
		})
	})
	unbatched := func(check func(*Client, context.Context, []forward.Item) ([]forward.Result, error)) func(b *testing.B) {
		return func(b *testing.B) {
			f := newRemoteFixture(b)
			var next atomic.Uint64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				items := make([]forward.Item, 1)
				for pb.Next() {
					items[0] = forward.Item{Key: f.keys[next.Add(1)%uint64(len(f.keys))], Hits: 1, Limit: 1 << 30, Window: time.Minute}
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					if _, err := check(f.client, ctx, items); err != nil {
						b.Error(err)
					}
					cancel()
				}
			})
		}
	}
	b.Run("unbatched", unbatched(checkUnary))
	b.Run("unbatched-stream", unbatched((*Client).Check))
}

// checkUnary is Client.Check as one unary RPC, the way the Client worked
// before it kept a stream.
func checkUnary(c *Client, ctx context.Context, items []forward.Item) ([]forward.Result, error) {
	return c.checkUnary(ctx, newRequest(items))
}

// reportPercentiles adds p50 and p99 of lat, in microseconds, to b's output.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Microsecond)
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
