package ownership

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tierlimit/tierlimit/forward"
)

// pingPeer is a Peer that answers pings unless it is down.
type pingPeer struct {
	batchPeer
	down  atomic.Bool
	pings atomic.Int32
}

func (p *pingPeer) Ping(context.Context) error {
	p.pings.Add(1)
	if p.down.Load() {
		return errors.New("unreachable")
	}
	return nil
}

// TestRouterReachableFallsWithoutContact steps a Router of a 3-member ring
// through a cut on a fake clock: a member counts as reachable while it
// answered within FenceAfter, whether or not any check was forwarded to it;
// one that stops answering drops out within FenceAfter, and comes back with
// its next answer.
func TestRouterReachableFallsWithoutContact(t *testing.T) {
	b, c := &pingPeer{}, &pingPeer{}
	c.down.Store(true)
	now := routerT0
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": b, "c": c}, func(cfg *RouterConfig) {
		cfg.Clock = func() time.Time { return now }
	})
	step := func(d time.Duration) {
		now = now.Add(d)
		r.ping(t.Context(), now)
		r.pings.Wait()
	}
	assert.Equal(t, 3, r.Reachable(now), "members that just joined count")
	steps := []struct {
		name      string
		after     time.Duration
		cDown     bool
		bDown     bool
		reachable int
	}{
		{"first ping round: c does not answer", PingEvery, true, false, 3},
		{"c's grace is not over", FenceAfter - PingEvery - time.Millisecond, true, false, 3},
		{"c has not answered for FenceAfter", time.Millisecond, true, false, 2},
		{"b is cut too", PingEvery, true, true, 2},
		{"b's last answer ages", FenceAfter - 2*PingEvery, true, true, 2},
		{"alone", PingEvery, true, true, 1},
		{"c answers again", PingEvery, false, true, 2},
	}
	for _, st := range steps {
		c.down.Store(st.cDown)
		b.down.Store(st.bDown)
		step(st.after)
		assert.Equal(t, st.reachable, r.Reachable(now), st.name)
	}

	// A forward that lands is contact, as a ping is.
	r.Heard("b", now)
	assert.Equal(t, 3, r.Reachable(now), "b's answer to a call counts")
	b.pings.Store(0)
	step(PingEvery / 2)
	assert.Zero(t, b.pings.Load(), "a member heard from lately is not pinged")
}

// TestRouterWithoutPingersCountsPeersByBreakers: a Peer that cannot be
// pinged counts as reachable while its breaker is closed, as before.
func TestRouterWithoutPingersCountsPeersByBreakers(t *testing.T) {
	now := routerT0
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": &batchPeer{}}, func(cfg *RouterConfig) {
		cfg.Clock = func() time.Time { return now }
	})
	now = now.Add(10 * FenceAfter)
	r.ping(t.Context(), now)
	r.pings.Wait()
	assert.Equal(t, 2, r.Reachable(now))
}

// TestRouterCountsASlowMemberAsReachable: a member whose forwards time out
// (its breaker open) but that answers its pings is slow, not cut off: it
// still counts, so slowness does not cut every limit to this side's share.
func TestRouterCountsASlowMemberAsReachable(t *testing.T) {
	b, c := &pingPeer{}, &pingPeer{}
	now := routerT0
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": b, "c": c}, func(cfg *RouterConfig) {
		cfg.Clock = func() time.Time { return now }
	})
	l, _ := r.link("b")
	for range 3 {
		l.breaker.Failure(now)
	}
	assert.NotEqual(t, forward.BreakerClosed, l.breaker.State(now), "b's forwards failed")
	now = now.Add(FenceAfter)
	r.ping(t.Context(), now)
	r.pings.Wait()
	assert.Equal(t, 3, r.Reachable(now), "b answers its pings")
}

// TestPingIntervalGrowsWithTheCluster: up to pingPeers other members each
// is pinged every PingEvery; beyond, the interval grows so that a node
// sends about pingPeers pings per PingEvery, and the fence follows.
func TestPingIntervalGrowsWithTheCluster(t *testing.T) {
	for _, tt := range []struct {
		members         int
		interval, fence time.Duration
	}{
		{1, PingEvery, FenceAfter},
		{3, PingEvery, FenceAfter},
		{6, PingEvery, FenceAfter},
		{7, 2 * PingEvery, 2 * FenceAfter},
		{30, 6 * PingEvery, 6 * FenceAfter},
		{60, 12 * PingEvery, 12 * FenceAfter},
	} {
		assert.Equal(t, tt.interval, pingInterval(tt.members), "pingInterval(%d)", tt.members)
		assert.Equal(t, tt.fence, fenceAfter(tt.members), "fenceAfter(%d)", tt.members)
		pings := float64(tt.members-1) / pingInterval(tt.members).Seconds()
		assert.LessOrEqual(t, pings, float64(pingPeers)/PingEvery.Seconds(), "pings a second at %d members", tt.members)
	}
}
