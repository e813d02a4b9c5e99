package tierlimit

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/health"
	"github.com/tierlimit/tierlimit/ring"
)

// spread sends n requests for key from workers clients, round-robin over
// nodes, and returns how many were admitted and the X-RateLimit-Limit values
// seen.
func spread(t *testing.T, nodes []*node, key string, n, workers int) (int, map[string]int) {
	t.Helper()
	var admitted atomic.Int64
	var mu sync.Mutex
	limits := map[string]int{}
	work := make(chan int, n)
	for i := range n {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range work {
				code, limit := get(t, nodes[i%len(nodes)], key)
				if code == http.StatusOK {
					admitted.Add(1)
				} else {
					assert.Equal(t, http.StatusTooManyRequests, code)
				}
				mu.Lock()
				limits[limit]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return int(admitted.Load()), limits
}

// leasesOut returns the leases the nodes hold, and those ended whose hits
// are still on their way back.
func leasesOut(nodes []*node) int {
	n := 0
	for _, nd := range nodes {
		held, returning := nd.router.Leases()
		n += held + returning
	}
	return n
}

// waitLeasesBack waits until no node holds a lease or has hits on their
// way back: within a lease's time (1 s) of the last check.
func waitLeasesBack(t *testing.T, nodes []*node) {
	t.Helper()
	require.Eventually(t, func() bool { return leasesOut(nodes) == 0 }, 5*time.Second, 10*time.Millisecond,
		"leases still out")
}

// waitSettled waits until no node's ring changed too recently for it to
// grant leases (2 s after the last change of members).
func waitSettled(t *testing.T, nodes []*node) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, nd := range nodes {
			if nd.owner.Settling(time.Now()) {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "the ring did not settle")
}

// leaseDecisions sums tierlimit_lease_decisions_total over nodes.
func leaseDecisions(t *testing.T, nodes []*node) float64 {
	t.Helper()
	s := 0.0
	for _, nd := range nodes {
		s += metricValue(t, nd.cfg.Registerer.(prometheus.Gatherer), "tierlimit_lease_decisions_total")
	}
	return s
}

// TestClusterLeasesKeepAKeyExact: an enterprise key hit from 48 clients
// over 3 nodes is mostly admitted from leases, never past its limit, and
// takes exactly its limit once the leases are back.
func TestClusterLeasesKeepAKeyExact(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	waitSettled(t, c.nodes)
	const key, limit = "enterprise-7", 1500

	admitted, limits := spread(t, c.nodes, key, 2000, 48)
	assert.LessOrEqual(t, admitted, limit, "admitted of 2000")
	assert.Equal(t, map[string]int{strconv.Itoa(limit): 2000}, limits)
	leased := leaseDecisions(t, c.nodes)
	t.Logf("admitted %d of 2000 at once; %.0f from leases", admitted, leased)
	assert.Greater(t, leased, 500.0, "checks admitted from leases: most of the non-owners' share")

	waitLeasesBack(t, c.nodes)
	more, _ := spread(t, c.nodes, key, 600, 48)
	assert.Equal(t, limit, admitted+more, "admitted in all, once the leases were back")
	for _, n := range c.nodes {
		assert.Zero(t, n.fallback.Len(), "%s decided locally", n.name)
	}
}

// TestClusterDegradedRevokesLeases: a new health state ends every lease
// on each node as the node learns it, so DEGRADED takes hold at the
// gossip's speed, and what the leases had left is credited back.
func TestClusterDegradedRevokesLeases(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	waitSettled(t, c.nodes)
	const key = "enterprise-3"
	admitted, _ := spread(t, c.nodes, key, 600, 24)
	require.Equal(t, 600, admitted)
	held := 0
	for _, nd := range c.nodes {
		h, _ := nd.router.Leases()
		held += h
	}
	require.Positive(t, held, "no lease out: the test proves nothing")

	setHealth(t, c.nodes[0], "DEGRADED")
	for _, nd := range c.nodes {
		require.Eventually(t, func() bool {
			if nd.health.Current().Status != health.Degraded {
				return false
			}
			h, _ := nd.router.Leases()
			return h == 0
		}, 5*time.Second, time.Millisecond, "%s still holds a lease after DEGRADED", nd.name)
	}
	// From now on every node decides under 1000, counting the 600.
	more, limits := spread(t, c.nodes, key, 600, 24)
	assert.Equal(t, map[string]int{"1000": 600}, limits, "limits seen after DEGRADED")
	assert.LessOrEqual(t, admitted+more, 1000)
	waitLeasesBack(t, c.nodes)
	last, _ := spread(t, c.nodes, key, 600, 24)
	assert.Equal(t, 1000, admitted+more+last, "admitted in all under DEGRADED's 1000")
}

// TestClusterOwnerKilledWhileLeasesOut: the owner of a key dies while the
// other nodes hold leases on it. They spend the leases until they end,
// then decide locally until the death is detected; the new owner starts
// from the copy, in which the leases were counted, takes back what they had
// left, and adds the hits decided locally, once they land: the key still
// gets its limit, no more.
func TestClusterOwnerKilledWhileLeasesOut(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	var key string
	for i := range 50 {
		if k := "pro-" + strconv.Itoa(i); c.owner(k) == 2 {
			key = k
			break
		}
	}
	require.NotEmpty(t, key)
	survivors := c.nodes[:2]
	waitSettled(t, c.nodes)
	admitted, _ := spread(t, survivors, key, 60, 8)
	require.Equal(t, 60, admitted)
	require.Positive(t, leasesOut(survivors), "no lease out: the test proves nothing")
	c.backedUp(2, []string{key})

	c.nodes[2].kill()
	more, _ := spread(t, survivors, key, 40, 8) // while the owner is dead and not yet detected
	c.waitMembers(2, survivors...)
	waitLeasesBack(t, survivors)
	// The hits decided locally reach the new owner's count once a node
	// sees the ring move on, each node on its own (design.md's F): until
	// then the new owner could admit them again. Every hit admitted so far
	// must land there.
	newOwner := c.nodes[c.owner(key)]
	require.Eventually(t, func() bool {
		return newOwner.store.Take(time.Now(), key, 0, 150).Remaining <= 150-(admitted+more)
	}, 5*time.Second, 10*time.Millisecond, "the %d hits admitted are not all counted at the new owner %s", admitted+more, newOwner.name)
	last, _ := spread(t, survivors, key, 200, 8)
	total := admitted + more + last
	t.Logf("admitted %d + %d while the owner was dead + %d after", admitted, more, last)
	assert.LessOrEqual(t, total, 150, "admitted in all across the owner's death")
	assert.GreaterOrEqual(t, total, 150-15, "the leases' hits were not credited back")
}

// TestClusterBurstOverAllNodesGetsTheWholeLimit: fresh keys hit in a burst,
// round-robin over all three nodes by 32 clients, each get exactly their
// limit: leases parked at nodes when the burst reaches the limit are spent
// by the burst's next requests there, and the last hits of a window are
// decided at the owner. (A benchmark outside the project once measured 18
// of 20 and 1467 of 1500 here.)
func TestClusterBurstOverAllNodesGetsTheWholeLimit(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true, perTier: 100})
	waitSettled(t, c.nodes)
	for _, tt := range []struct {
		tier       string
		keys, hits int
		limit      int64
	}{{"free", 100, 40, 20}, {"enterprise", 10, 1700, 1500}} {
		counts := make([]atomic.Int64, tt.keys)
		work := make(chan [2]int, tt.keys*tt.hits)
		for h := range tt.hits {
			for k := range tt.keys {
				work <- [2]int{k, h}
			}
		}
		close(work)
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for w := range work {
					code, _ := get(t, c.nodes[(w[0]+w[1])%3], tt.tier+"-"+strconv.Itoa(w[0]))
					if code == http.StatusOK {
						counts[w[0]].Add(1)
					}
				}
			})
		}
		wg.Wait()
		for k := range counts {
			assert.Equal(t, tt.limit, counts[k].Load(), "%s-%d admitted", tt.tier, k)
		}
	}
}

// TestClusterCrashedLeaseHolderIsCreditedBack: a node that holds a lease
// on a key it does not own crashes (or restarts: its new process holds
// nothing) with hits of the lease unspent. Its owner takes what the holder
// last said was left off the key's count when it sees the member go (or
// come back with another boot id): the key still gets its whole limit in
// the window, not that much less.
func TestClusterCrashedLeaseHolderIsCreditedBack(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "crash", true: "restart"}[restart], func(t *testing.T) {
			c := startCluster(t, 3, clusterOpts{steady: true})
			var key string
			for i := range 50 {
				if k := "pro-" + strconv.Itoa(i); c.owner(k) == 0 {
					key = k
					break
				}
			}
			require.NotEmpty(t, key)
			owner, holder := c.nodes[0], c.nodes[2]
			waitSettled(t, c.nodes)
			spent := 0
			for range 10 {
				if code, _ := get(t, holder, key); code == http.StatusOK {
					spent++
				}
			}
			require.Equal(t, 10, spent)
			require.Eventually(t, func() bool {
				left := holder.router.LeaseHits()
				return left > 0 && owner.owner.Unspent() == left
			}, 5*time.Second, 10*time.Millisecond, "the owner never heard what the holder's lease has left")
			t.Logf("the holder has %d hits left in its lease", holder.router.LeaseHits())

			if restart {
				c.restart(2, false, true)
				c.waitMembers(3)
			} else {
				holder.kill()
				c.waitMembers(2, c.nodes[:2]...)
			}
			require.Equal(t, 0, c.owner(key), "the key moved: the test proves nothing")
			require.Eventually(t, func() bool { return owner.owner.Unspent() == 0 }, 10*time.Second, 10*time.Millisecond,
				"the owner still counts the lease as out")
			admitted := 0
			for range 200 {
				if code, _ := get(t, owner, key); code == http.StatusOK {
					admitted++
				}
			}
			assert.Equal(t, 150-spent, admitted, "admitted after the holder's %s", map[bool]string{false: "crash", true: "restart"}[restart])
		})
	}
}

// TestClusterNewOwnerCountsTheCopyAsTheRingMoves: the member that takes
// over a failed member's key counts the key's copy as its ring drops the
// dead member, not when its keeper gets to it on a goroutine of its own,
// milliseconds later (5 and 20 of 20 requests sent in those milliseconds
// were admitted before). The dead member's host swallows connections, as
// a crashed machine's does, and the new owner owes it a hit of another
// key: the failure looked like this when it showed. A key the dead owner
// had used up must stay used up at its new owner.
func TestClusterNewOwnerCountsTheCopyAsTheRingMoves(t *testing.T) {
	var hang atomic.Pointer[string] // a gRPC address whose dials hang
	c := startCluster(t, 3, clusterOpts{steady: true, tune: func(_ int, cfg *Config) {
		dial := cfg.PeerDialer
		cfg.PeerDialer = func(ctx context.Context, addr string) (net.Conn, error) {
			if a := hang.Load(); a != nil && *a == addr {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return dial(ctx, addr)
		}
	}})
	after := ring.New()
	after.Set([]string{c.nodes[0].name, c.nodes[1].name})
	var key, other string // both owned by node 2; key goes to heir
	var heir *node
	for i := 0; key == "" || other == ""; i++ {
		k := "pro-" + strconv.Itoa(i%50)
		require.Less(t, i, 50, "no two pro keys of node 2 with the same heir")
		if c.owner(k) != 2 {
			continue
		}
		name, _ := after.Owner(k)
		switch {
		case key == "":
			key = k
			heir = c.nodes[slices.IndexFunc(c.nodes, func(n *node) bool { return n.name == name })]
		case name == heir.name:
			other = k
		}
	}
	waitSettled(t, c.nodes)
	for range 150 {
		code, _ := get(t, c.nodes[2], key)
		require.Equal(t, http.StatusOK, code)
	}
	c.backedUp(2, []string{key})

	addr := c.nodes[2].endpoint.Addr().String()
	hang.Store(&addr)
	c.nodes[2].kill()
	// A hit on another of the dead owner's keys, decided at the heir once
	// the forward gives up: owed to the dead owner, whom the heir's keeper
	// then tries to pay every round, waiting each time for a dial that
	// hangs.
	code, _ := get(t, heir, other)
	require.Equal(t, http.StatusOK, code)
	require.Eventually(t, func() bool { return heir.ring.Len() == 2 }, 15*time.Second, time.Millisecond,
		"%s still has the dead member in its ring", heir.name)
	admitted := 0
	for range 20 {
		if code, _ := get(t, heir, key); code == http.StatusOK {
			admitted++
		}
	}
	assert.Zero(t, admitted, "admitted at the new owner %s of a key used up before its owner died", heir.name)
}
