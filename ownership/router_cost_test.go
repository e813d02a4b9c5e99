package ownership

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/ring"
)

// TestRouterCostSpendsLeasesInCostUnits: a cost is one check of that many
// hits at the owner, all or nothing; a lease then pays for the next costs
// that fit in it; a refund goes back to the lease of the same window, and
// a charge beyond the estimate comes out of the lease or is owed to the
// owner.
func TestRouterCostSpendsLeasesInCostUnits(t *testing.T) {
	owner := newOwnerPeer(3)
	owed := bucket.New(bucket.Config{Window: routerWindow})
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": owner, "c": &batchPeer{}},
		func(c *RouterConfig) { c.Owed = owed })
	key := keyOwnedBy(t, r.ring, "b")
	ck := config.CostKey(key)
	now := routerT0

	d := r.TakeCost(t.Context(), now, key, 100, 6000)
	require.True(t, d.Allowed)
	sent := owner.sent()
	require.Len(t, sent, 1)
	assert.Equal(t, ck, sent[0].Key, "counted under the key's cost counter")
	assert.Equal(t, 100, sent[0].Hits, "the whole cost in one item")
	assert.Equal(t, 100+200, owner.used(ck, 6000), "the cost and a first lease of two more such costs")
	assert.Zero(t, owner.used(key, 6000), "the key's requests are another count")

	// The lease holds 200: a cost of 5 comes from it.
	require.True(t, r.TakeCost(t.Context(), now, key, 5, 6000).Allowed)
	assert.Len(t, owner.sent(), 1, "paid from the lease")
	ls := r.book.leases.get(ck)
	require.NotNil(t, ls)
	assert.Equal(t, int64(195), ls.left.Load())

	// A refund in the lease's window goes back to it; in another, nowhere.
	r.SettleCost(t.Context(), now, key, d.ResetAt, -60)
	assert.Equal(t, int64(255), ls.left.Load())
	r.SettleCost(t.Context(), now, key, d.ResetAt.Add(-routerWindow), -60)
	assert.Equal(t, int64(255), ls.left.Load(), "not the lease's window")
	r.givesMu.Lock()
	require.Len(t, r.refunds, 1, "for the owner, once")
	assert.Equal(t, 60, r.refunds[0].Refund)
	assert.Equal(t, d.ResetAt.Add(-2*routerWindow), r.refunds[0].GiveBackStart, "the window it was reserved in")
	r.givesMu.Unlock()

	// A charge the lease holds comes out of it; a bigger one is owed.
	r.SettleCost(t.Context(), now, key, d.ResetAt, 50)
	assert.Equal(t, int64(205), ls.left.Load())
	r.SettleCost(t.Context(), now, key, d.ResetAt, 400)
	assert.Equal(t, int64(205), ls.left.Load())
	owes := owed.Take(now, ck, 0, 1<<30)
	assert.Equal(t, 400, 1<<30-owes.Remaining, "owed to the owner's count")

	// A cost too big for what is left is refused whole: nothing counted.
	before := owner.used(ck, 6000)
	d = r.TakeCost(t.Context(), now, key, 6000, 6000)
	assert.False(t, d.Allowed)
	assert.Equal(t, before, owner.used(ck, 6000), "a refused cost counts nothing")
	// A cost of 0 counts nothing and is not refused while the key has room.
	assert.True(t, r.TakeCost(t.Context(), now, key, 0, 6000).Allowed)
}

// TestRouterCostOfOwnedKeys: at the owner, a cost is counted, refunded and
// charged in its own store.
func TestRouterCostOfOwnedKeys(t *testing.T) {
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": &batchPeer{}}, nil)
	key := keyOwnedBy(t, r.ring, "a")
	ck := config.CostKey(key)
	now := routerT0
	used := func() int { return 1000 - r.local.Take(now, ck, 0, 1000).Remaining }

	d := r.TakeCost(t.Context(), now, key, 300, 1000)
	require.True(t, d.Allowed)
	assert.Equal(t, 300, used())
	r.SettleCost(t.Context(), now, key, d.ResetAt, -200)
	assert.Equal(t, 100, used())
	r.SettleCost(t.Context(), now, key, d.ResetAt, 1500)
	assert.Equal(t, 1000, used(), "charged whatever the limit: 100 + 1500, and the store reads at most the limit")
	assert.False(t, r.TakeCost(t.Context(), now, key, 1, 1000).Allowed)
	assert.True(t, r.Check(t.Context(), now, key, 10).Allowed, "requests are counted apart")
	r.Refund(t.Context(), now, key, d.ResetAt)
	assert.Equal(t, 10, r.local.Take(now, key, 0, 10).Remaining, "the request's hit given back")
}

// TestRouterSlots: a slot of a key another node owns is taken there, with
// this node as its holder, and given back there; when the owner cannot be
// reached, a slot is taken here within this node's share, and the one the
// owner may have taken late is given back to it.
func TestRouterSlots(t *testing.T) {
	owner := newOwnerPeer(3)
	owner.from = forward.Holder{Name: "a", Boot: "1"}
	down := &batchPeer{block: true}
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": owner, "c": down},
		func(c *RouterConfig) { c.ForwardTimeout = 20 * time.Millisecond })
	key := keyOwnedBy(t, r.ring, "b")
	now := routerT0
	until := now.Add(time.Hour)

	id1, held := r.Acquire(t.Context(), now, key, 2, until)
	require.NotZero(t, id1)
	assert.Equal(t, 1, held)
	id2, _ := r.Acquire(t.Context(), now, key, 2, until)
	require.NotZero(t, id2)
	id3, held := r.Acquire(t.Context(), now, key, 2, until)
	assert.Zero(t, id3, "the owner holds 2 of 2")
	assert.Equal(t, 2, held)
	assert.Equal(t, 2, owner.owner.Slots().Held(now, key))

	r.Release(t.Context(), key, id1)
	assert.Equal(t, 1, owner.owner.Slots().Held(now, key), "given back at once")
	r.Release(t.Context(), key, id1)
	assert.Equal(t, 1, owner.owner.Slots().Held(now, key), "twice is once")

	// The owner's holder table: the slot is this node's.
	owner.owner.Members(now, map[string]string{"a": "1", "b": "1", "c": "1"})
	owner.owner.Members(now, map[string]string{"a": "2", "b": "1", "c": "1"})
	assert.Zero(t, owner.owner.Slots().Held(now, key), "a's slots are given back when a restarts (or fails)")
	assert.Equal(t, int64(1), owner.owner.SlotsFreed())

	// c never answers: slots of c's keys are taken here, within a's share
	// of the limit (ceil(3/3) = 1), and the ask that timed out is given
	// back to c.
	other := keyOwnedBy(t, r.ring, "c")
	id, _ := r.Acquire(t.Context(), now, other, 3, until)
	require.NotZero(t, id, "taken here")
	id2, _ = r.Acquire(t.Context(), now, other, 3, until)
	assert.Zero(t, id2, "beyond this node's share")
	_, fallback := r.SlotsHeld(now)
	assert.Equal(t, 1, fallback)
	r.Release(t.Context(), other, id)
	_, fallback = r.SlotsHeld(now)
	assert.Zero(t, fallback)
	require.Eventually(t, func() bool {
		r.givesMu.Lock()
		defer r.givesMu.Unlock()
		return len(r.releases) >= 1+firstSlotWant
	}, 5*time.Second, time.Millisecond, "the asks c may still take are given back to it")
	r.givesMu.Lock()
	for i, rl := range r.releases[:1+firstSlotWant] { // one ask: the job's slot and the lease it asked for
		assert.Equal(t, "c", rl.owner)
		assert.Equal(t, r.releases[0].id+uint64(i), rl.id)
	}
	r.givesMu.Unlock()
}

// TestRouterHandsSlotsToTheKeysNewOwner: when the ring gives a key to
// another member, the slots this node holds for it go there under their
// holders, held whatever the limit; a release then reaches the new owner.
func TestRouterHandsSlotsToTheKeysNewOwner(t *testing.T) {
	owner := newOwnerPeer(2)
	r := newTestRouter(t, []string{"a"}, peerMap{"b": owner}, func(c *RouterConfig) { c.Holder = "a\x001" })
	now := time.Now()
	r.ring.Set([]string{"a", "b"})
	key := keyOwnedBy(t, r.ring, "b")
	r.ring.Set([]string{"a"})
	id, _ := r.Acquire(t.Context(), now, key, 1, now.Add(time.Hour))
	require.NotZero(t, id, "taken here, the owner")
	owner.owner.Slots().AcquireID(now, key, "b\x001", 99, 1, now.Add(time.Hour))

	r.ring.Set([]string{"a", "b"})
	assert.Equal(t, 1, r.HandOffSlots(t.Context()))
	assert.Equal(t, 2, owner.owner.Slots().Held(now, key), "held at b beside its own, whatever the limit of 1")
	_, held := r.SlotsHeld(now)
	assert.Zero(t, held)
	assert.Equal(t, 1, owner.owner.Slots().ReleaseHolder("a\x001"), "still a's")

	owner.owner.Slots().Put(bucket.Slot{Key: key, ID: id, Holder: "a\x001", Until: now.Add(time.Hour)})
	r.Release(t.Context(), key, id)
	assert.Equal(t, 1, owner.owner.Slots().Held(now, key), "the release went to the key's owner now")
}

// TestRouterLeasesSlots: with a job's slot, a node asks for a few more of
// a key with room; its next jobs take them without asking, their ends give
// them back to the lease, and a lease left idle goes back to the owner. A
// key with little room is not leased.
func TestRouterLeasesSlots(t *testing.T) {
	owner := newOwnerPeer(2)
	owner.owner.ttl = time.Second
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": owner}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	now := owner.clock()
	until := now.Add(time.Hour)
	slots := owner.owner.Slots()

	id1, _ := r.Acquire(t.Context(), now, key, 100, until)
	require.NotZero(t, id1)
	require.Len(t, owner.sent(), 1)
	assert.Equal(t, firstSlotWant, owner.sent()[0].WantSlots)
	assert.Equal(t, 1+firstSlotWant, slots.Held(now, key), "the job's slot and the lease's, all held at the owner")

	id2, held := r.Acquire(t.Context(), now, key, 100, until)
	id3, _ := r.Acquire(t.Context(), now, key, 100, until)
	require.NotZero(t, id2)
	require.NotZero(t, id3)
	assert.Len(t, owner.sent(), 1, "from the lease, without asking")
	assert.Equal(t, 99, held, "what this node knows: all but its one free slot may be held")

	id4, _ := r.Acquire(t.Context(), now, key, 100, until)
	require.NotZero(t, id4)
	require.Len(t, owner.sent(), 2, "the lease ran dry: asked again, for more")
	assert.Equal(t, firstSlotWant, owner.sent()[1].WantSlots)

	r.Release(t.Context(), key, id2)
	r.Release(t.Context(), key, id3)
	assert.Equal(t, 4+firstSlotWant, slots.Held(now, key), "given back to the lease, still held at the owner")
	r.Release(t.Context(), key, id1)
	r.Release(t.Context(), key, id4)
	assert.Equal(t, 2+firstSlotWant, slots.Held(now, key), "the jobs' own slots went back to the owner")

	r.sweepSlotLeases(time.Now().Add(2 * time.Second)) // the Router's clock: when the jobs ended
	r.give(t.Context(), now, nil)
	assert.Zero(t, slots.Held(now, key), "an idle lease goes back whole")

	// 2 jobs at most, over 2 members: never leased.
	small := keyOwnedBy(t, r.ring, "b") + "x"
	for o, _ := r.ring.Owner(small); o != "b"; o, _ = r.ring.Owner(small) {
		small += "x"
	}
	id, _ := r.Acquire(t.Context(), now, small, 2, until)
	require.NotZero(t, id)
	assert.Equal(t, 1, slots.Held(now, small), "no lease of a small limit")
}

// BenchmarkRouterCostAndSlots: what the cluster path adds for a tier's
// cost and concurrency at a node that does not own the keys, once it holds
// leases: a cost taken from a lease in cost units, and a job's slot taken
// from a lease of slots and given back to it.
func BenchmarkRouterCostAndSlots(b *testing.B) {
	owner := newOwnerPeer(2)
	owner.now.Store(nil) // the real clock
	rg := ring.New()
	rg.Set([]string{"a", "b"})
	r := NewRouter(RouterConfig{
		Self: "a", Ring: rg,
		Local:    bucket.New(bucket.Config{Window: routerWindow}),
		Fallback: bucket.New(bucket.Config{Window: routerWindow}),
		Peers:    peerMap{"b": owner},
	})
	defer r.Close()
	var keys []string
	for i := 0; len(keys) < 1024; i++ {
		if k := "user-" + strconv.Itoa(i); func() bool { o, _ := rg.Owner(k); return o == "b" }() {
			keys = append(keys, k)
		}
	}
	ctx := context.Background()
	b.Run("cost leased", func(b *testing.B) {
		for _, k := range keys {
			r.TakeCost(ctx, time.Now(), k, 10, 1<<30)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				r.TakeCost(ctx, time.Now(), keys[i&1023], 10, 1<<30)
				i++
			}
		})
	})
	b.Run("slot leased", func(b *testing.B) {
		until := time.Now().Add(time.Hour)
		for _, k := range keys {
			id, _ := r.Acquire(ctx, time.Now(), k, 1<<20, until)
			r.Release(ctx, k, id)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				k := keys[i&1023]
				id, _ := r.Acquire(ctx, time.Now(), k, 1<<20, until)
				r.Release(ctx, k, id)
				i++
			}
		})
	})
}

// TestRouterCostLeaseCoversTheNextJobs: a lease in cost units is asked for
// big enough for the next jobs of that cost, not sized by the rate alone,
// so that jobs of a large cost are not each sent to the owner.
func TestRouterCostLeaseCoversTheNextJobs(t *testing.T) {
	owner := newOwnerPeer(2)
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": owner}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	now := routerT0
	require.True(t, r.TakeCost(t.Context(), now, key, 70, 90000).Allowed)
	require.Len(t, owner.sent(), 1)
	assert.Equal(t, 140, owner.sent()[0].Want, "two more jobs of 70")
	require.True(t, r.TakeCost(t.Context(), now, key, 70, 90000).Allowed)
	require.True(t, r.TakeCost(t.Context(), now, key, 70, 90000).Allowed)
	for _, it := range owner.sent()[1:] {
		assert.Zero(t, it.Hits, "both from the lease: only a renewal, off the request path, may follow")
	}
}

// TestRouterReannouncesSlotsToTheNewOwner: when a key's owner drops out of
// the ring, the slots this node's jobs hold there are announced to the
// key's new owner, under this node's name, and their release goes there.
func TestRouterReannouncesSlotsToTheNewOwner(t *testing.T) {
	b, c := newOwnerPeer(3), newOwnerPeer(2)
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": b, "c": c}, func(cfg *RouterConfig) {
		cfg.Holder = "a\x001"
		cfg.LeaseTTL = -1
	})
	two := ring.New()
	two.Set([]string{"a", "c"})
	key := ""
	for i := 0; key == ""; i++ {
		k := "user-" + strconv.Itoa(i)
		if o, _ := r.ring.Owner(k); o == "b" {
			if o2, _ := two.Owner(k); o2 == "c" {
				key = k
			}
		}
	}
	now := time.Now()
	id, _ := r.Acquire(t.Context(), now, key, 2, now.Add(time.Hour))
	require.NotZero(t, id)
	require.Equal(t, 1, b.owner.Slots().Held(now, key))

	assert.Zero(t, r.ReannounceSlots(t.Context()), "the ring did not change")
	r.ring.Set([]string{"a", "c"}) // b failed
	assert.Equal(t, 1, r.ReannounceSlots(t.Context()))
	assert.Equal(t, 1, c.owner.Slots().Held(now, key), "held at the new owner")
	assert.Equal(t, 1, c.owner.Slots().ReleaseHolder("a\x001"), "as a's")
	c.owner.Slots().Put(bucket.Slot{Key: key, ID: id, Holder: "a\x001", Until: now.Add(time.Hour)})
	assert.Zero(t, r.ReannounceSlots(t.Context()), "announced once")
	r.Release(t.Context(), key, id)
	assert.Zero(t, c.owner.Slots().Held(now, key), "the job's end gives it back at the new owner")
}
