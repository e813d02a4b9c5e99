package ownership

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/ring"
)

// routerWindow is the counting window of every store in Router tests.
const routerWindow = time.Minute

// routerT0 is the time of the first check in Router tests.
var routerT0 = time.Unix(1_700_000_000, 0)

// peerMap is a fake PeerSource.
type peerMap map[string]forward.Peer

func (m peerMap) Peer(name string) (forward.Peer, bool) {
	p, ok := m[name]
	return p, ok
}

// eventLog is a fake Observer that records every event.
type eventLog struct {
	// mu guards the fields below.
	mu        sync.Mutex
	forwarded []error
	fallbacks []string
	cacheHits int
	leaseHits int
	granted   int            // hits granted, renewals included
	renewals  int            // grants that renewed a lease
	ended     map[string]int // leases ended, by why
	returned  map[string]int // hits given back, by why
}

func (e *eventLog) Forwarded(_ string, _ time.Duration, err error) {
	e.mu.Lock()
	e.forwarded = append(e.forwarded, err)
	e.mu.Unlock()
}

func (e *eventLog) Fallback(reason string) {
	e.mu.Lock()
	e.fallbacks = append(e.fallbacks, reason)
	e.mu.Unlock()
}

func (e *eventLog) OverLimitCacheHit() {
	e.mu.Lock()
	e.cacheHits++
	e.mu.Unlock()
}

func (e *eventLog) LeaseDecision() {
	e.mu.Lock()
	e.leaseHits++
	e.mu.Unlock()
}

func (e *eventLog) LeaseGranted(hits int, renewal bool) {
	e.mu.Lock()
	e.granted += hits
	if renewal {
		e.renewals++
	}
	e.mu.Unlock()
}

func (e *eventLog) LeaseEnded(why string, unused int) {
	e.mu.Lock()
	if e.ended == nil {
		e.ended = make(map[string]int)
		e.returned = make(map[string]int)
	}
	e.ended[why]++
	e.returned[why] += unused
	e.mu.Unlock()
}

func (e *eventLog) reasons() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.fallbacks...)
}

// testRouter is a Router for node "a" of a ring of members, with its
// stores and events at hand.
type testRouter struct {
	*Router
	ring   *ring.Ring
	local  *bucket.Store
	events *eventLog
}

// newTestRouter returns a Router for node "a" of members, reaching peers
// through peers; edit, if not nil, adjusts its config. It is closed when the
// test ends.
func newTestRouter(t *testing.T, members []string, peers peerMap, edit func(*RouterConfig)) testRouter {
	t.Helper()
	rg := ring.New()
	rg.Set(members)
	tr := testRouter{
		ring:   rg,
		local:  bucket.New(bucket.Config{Window: routerWindow}),
		events: &eventLog{},
	}
	cfg := RouterConfig{
		Self:     "a",
		Ring:     rg,
		Local:    tr.local,
		Fallback: bucket.New(bucket.Config{Window: routerWindow}),
		Owed:     bucket.New(bucket.Config{Window: routerWindow}),
		Peers:    peers,
		Observer: tr.events,
		// Generous, so that a check on a loaded machine (-race) never
		// falls back unasked: tests of the deadline set their own.
		ForwardTimeoutMax: time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	tr.Router = NewRouter(cfg)
	t.Cleanup(tr.Close)
	return tr
}

// keyOwnedBy returns a key that rg gives to member.
func keyOwnedBy(t *testing.T, rg *ring.Ring, member string) string {
	t.Helper()
	for i := range 100_000 {
		k := "user-" + strconv.Itoa(i)
		if o, _ := rg.Owner(k); o == member {
			return k
		}
	}
	require.FailNow(t, "no key found", "no key owned by %s in %v", member, rg.Members())
	return ""
}

// admitted runs n checks of key at now and returns how many were allowed.
func admitted(t *testing.T, r *Router, now time.Time, key string, limit, n int) int {
	t.Helper()
	got := 0
	for range n {
		if r.Check(t.Context(), now, key, limit).Allowed {
			got++
		}
	}
	return got
}

func TestRouterCountsOwnedKeysLocally(t *testing.T) {
	tests := []struct {
		name    string
		members []string
	}{
		{"owned by self", []string{"a", "b", "c"}},
		{"empty ring", nil},
		{"alone", []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, c := &batchPeer{}, &batchPeer{}
			r := newTestRouter(t, tc.members, peerMap{"b": b, "c": c}, nil)
			key := "user-0"
			if len(tc.members) > 0 {
				key = keyOwnedBy(t, r.ring, "a")
			}
			assert.Equal(t, 5, admitted(t, r.Router, routerT0, key, 5, 8), "checks of %s admitted under limit 5", key)
			assert.False(t, r.local.Take(routerT0, key, 1, 5).Allowed, "the local store did not hold the count")
			assert.Empty(t, b.callSizes(), "peer b was called")
			assert.Empty(t, c.callSizes(), "peer c was called")
			assert.Empty(t, r.events.reasons(), "fallbacks")
		})
	}
}

func TestRouterForwardsToOwner(t *testing.T) {
	reset := routerT0.Add(routerWindow)
	peer := &batchPeer{answer: func(it forward.Item) bucket.Decision {
		return bucket.Decision{Allowed: true, Limit: it.Limit, Remaining: 3, ResetAt: reset}
	}}
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": peer, "c": &batchPeer{}}, nil)
	key := keyOwnedBy(t, r.ring, "b")

	got := r.Check(t.Context(), routerT0, key, 7)
	assert.Equal(t, bucket.Decision{Allowed: true, Limit: 7, Remaining: 3, ResetAt: reset}, got, "Check(t0, %q, 7)", key)
	items := peer.items()
	require.Len(t, items, 1)
	assert.False(t, items[0].Deadline.IsZero(), "the item carries its deadline")
	items[0].Deadline = time.Time{}
	assert.Equal(t, []forward.Item{{Key: key, Hits: 1, Limit: 7, Window: routerWindow, Want: firstWant}}, items, "items sent to the owner")
	assert.Equal(t, 0, r.local.Len(), "a forwarded key was counted locally")
	assert.Empty(t, r.events.reasons(), "fallbacks")
	assert.Equal(t, []error{nil}, r.events.forwarded, "forward events")
}

func TestRouterFallsBackToLocalShareOnTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := &batchPeer{block: true}
		r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": peer}, func(cfg *RouterConfig) {
			cfg.ForwardTimeoutMax = 0 // the default
		})
		key := keyOwnedBy(t, r.ring, "b")

		start := time.Now()
		d := r.Check(t.Context(), routerT0, key, 10)
		assert.Equal(t, DefaultForwardTimeoutMax, time.Since(start), "Check with the owner hanging returned after (the adaptive deadline starts at its maximum)")
		assert.True(t, d.Allowed, "first fallback check: %+v", d)
		assert.Equal(t, 4, d.Limit, "limit of a fallback decision: ceil(10 / 3 members)")

		// One check at a time, each letting its call reach the breaker
		// before the next (the Batcher reports a call late once its checks
		// gave up, and leaves it to wait for a late answer): calls that
		// miss their deadline count a failure every lateWeight in a row,
		// and three failures open it.
		late := lateWeight * forward.DefaultBreakerFailures
		got := 1
		for range late + 2 {
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
			if r.Check(t.Context(), routerT0, key, 10).Allowed {
				got++
			}
		}
		// The share of 10 across 3 members is 4.
		assert.Equal(t, 4, got, "checks admitted locally under limit 10 with 3 members")
		assert.Equal(t, 0, r.local.Len(), "a fallback was counted in the owned store")
		assert.Len(t, peer.callSizes(), late, "calls to the hanging owner")

		reasons := r.events.reasons()
		require.Len(t, reasons, late+3)
		for i, reason := range reasons[:late] {
			assert.Equal(t, FallbackTimeout, reason, "reason of fallback %d, before the breaker opened", i)
		}
		for i, reason := range reasons[late:] {
			assert.Equal(t, FallbackBreakerOpen, reason, "reason of fallback %d", late+i)
		}
	})
}

// TestRouterBreakerCountsCallsNotWaiters: many checks waiting on one slow
// call to a live peer are one failure when it fails, not one each, so a
// burst of checks does not trip the breaker of a peer that is merely slow
// for a moment.
func TestRouterBreakerCountsCallsNotWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := &batchPeer{block: true}
		r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, func(c *RouterConfig) {
			c.ForwardTimeout = 5 * time.Millisecond
			c.Batch.Timeout = 50 * time.Millisecond
		})
		key := keyOwnedBy(t, r.ring, "b")

		// The first check's call hangs; 20 more queue behind it, and each
		// caller gives up at its own 5ms deadline.
		var wg sync.WaitGroup
		for range 21 {
			wg.Go(func() { r.Check(t.Context(), routerT0, key, 100) })
		}
		wg.Wait()
		assert.Equal(t, map[string]forward.BreakerState{"b": forward.BreakerClosed}, r.Breakers(time.Now()),
			"checks that gave up while the call was in flight were held against the peer")
		assert.Len(t, r.events.reasons(), 21, "fallbacks")
		for _, reason := range r.events.reasons() {
			assert.Equal(t, FallbackTimeout, reason)
		}

		time.Sleep(50 * time.Millisecond) // the hanging call fails
		synctest.Wait()
		assert.Equal(t, map[string]forward.BreakerState{"b": forward.BreakerClosed}, r.Breakers(time.Now()),
			"one failed call opened a breaker that needs 3")
		assert.Len(t, peer.callSizes(), 1, "calls to the owner: the checks queued behind the first call had all given up")
	})
}

// clockAt is a settable clock for Router breakers.
type clockAt struct{ t atomic.Int64 }

func (c *clockAt) set(t time.Time)  { c.t.Store(t.UnixNano()) }
func (c *clockAt) now() time.Time   { return time.Unix(0, c.t.Load()) }
func newClock(t time.Time) *clockAt { c := &clockAt{}; c.set(t); return c }

func TestRouterBreakerSkipsFailingPeer(t *testing.T) {
	errDown := errors.New("connection refused")
	peer := &batchPeer{}
	peer.setErr(errDown)
	clock := newClock(routerT0)
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, func(c *RouterConfig) {
		c.Breaker = forward.BreakerConfig{Failures: 2, Cooldown: time.Second}
		c.Clock = clock.now
	})
	key := keyOwnedBy(t, r.ring, "b")

	steps := []struct {
		at        time.Duration
		peerUp    bool
		wantCalls int
		wantWhy   string // "" when the owner answered
	}{
		{0, false, 1, FallbackError},
		{0, false, 2, FallbackError}, // opens the breaker
		{0, false, 2, FallbackBreakerOpen},
		{999 * time.Millisecond, false, 2, FallbackBreakerOpen},
		{time.Second, false, 3, FallbackError}, // the probe fails: open again
		{time.Second + 500*time.Millisecond, true, 3, FallbackBreakerOpen},
		{2 * time.Second, true, 4, ""}, // the probe succeeds: closed
		{2 * time.Second, true, 5, ""},
	}
	for i, s := range steps {
		if s.peerUp {
			peer.setErr(nil)
		}
		clock.set(routerT0.Add(s.at))
		before := len(r.events.reasons())
		r.Check(t.Context(), routerT0.Add(s.at), key, 100)
		assert.Len(t, peer.callSizes(), s.wantCalls, "step %d: calls to the owner after Check(t0+%v)", i, s.at)
		reasons := r.events.reasons()
		if s.wantWhy == "" {
			assert.Len(t, reasons, before, "step %d: Check(t0+%v) fell back: %v", i, s.at, reasons[before:])
		} else if assert.Len(t, reasons, before+1, "step %d: Check(t0+%v) did not fall back", i, s.at) {
			assert.Equal(t, s.wantWhy, reasons[before], "step %d: fallback reason of Check(t0+%v)", i, s.at)
		}
	}
}

func TestRouterOverLimitCache(t *testing.T) {
	reset := routerT0.Add(routerWindow)
	var retryAt time.Time // set before each Check, which hands it to the peer's goroutine
	peer := &batchPeer{answer: func(it forward.Item) bucket.Decision {
		return bucket.Decision{Limit: it.Limit, ResetAt: reset, RetryAt: retryAt}
	}}
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, nil)
	key := keyOwnedBy(t, r.ring, "b")

	retryAt = routerT0.Add(10 * time.Second)
	first := r.Check(t.Context(), routerT0, key, 5)
	want := bucket.Decision{Limit: 5, ResetAt: reset, RetryAt: retryAt}
	assert.Equal(t, want, first, "Check(t0) answered by the owner")

	steps := []struct {
		at        time.Duration
		limit     int
		clear     bool
		peerRetry time.Duration // the owner refuses until t0+peerRetry
		wantCalls int
	}{
		{0, 5, false, 10 * time.Second, 1},
		{5 * time.Second, 5, false, 10 * time.Second, 1},
		{5 * time.Second, 3, false, 10 * time.Second, 1},  // a lower limit is refused too
		{5 * time.Second, 6, false, 10 * time.Second, 2},  // a higher limit might fit: ask
		{9 * time.Second, 5, false, 10 * time.Second, 2},  // the limit-6 refusal covers limit 5
		{10 * time.Second, 5, false, 20 * time.Second, 3}, // RetryAt passed: ask again
		{11 * time.Second, 5, false, 20 * time.Second, 3},
		{11 * time.Second, 5, true, 20 * time.Second, 4}, // ClearOverLimit: ask again
	}
	for i, s := range steps {
		if s.clear {
			r.ClearOverLimit()
		}
		retryAt = routerT0.Add(s.peerRetry)
		now := routerT0.Add(s.at)
		d := r.Check(t.Context(), now, key, s.limit)
		assert.False(t, d.Allowed, "step %d: Check(t0+%v, limit %d) = %+v", i, s.at, s.limit, d)
		assert.Equal(t, s.limit, d.Limit, "step %d: Limit", i)
		assert.Equal(t, 0, d.Remaining, "step %d: Remaining", i)
		assert.Equal(t, reset, d.ResetAt, "step %d: ResetAt", i)
		assert.True(t, d.RetryAt.After(now), "step %d: RetryAt %v not after now %v", i, d.RetryAt, now)
		assert.Len(t, peer.callSizes(), s.wantCalls, "step %d: calls to the owner after Check(t0+%v, limit %d)", i, s.at, s.limit)
	}
	assert.Equal(t, 5, r.events.cacheHits, "over-limit cache hits")
}

func TestRouterDoesNotCacheAdmissions(t *testing.T) {
	peer := &batchPeer{answer: func(it forward.Item) bucket.Decision {
		return bucket.Decision{Allowed: true, Limit: it.Limit, Remaining: 1}
	}}
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	for range 3 {
		r.Check(t.Context(), routerT0, key, 5)
	}
	assert.Len(t, peer.callSizes(), 3, "calls to the owner for 3 admitted checks")
	assert.Equal(t, 0, r.book.answers.len(), "cached refusals")
}

// TestRouterKeepsOnlyAnswersThatMatter: an admission that leaves the key
// more than the members deciding locally would spend changes no later
// decision, so it is not kept; one that leaves less is.
func TestRouterKeepsOnlyAnswersThatMatter(t *testing.T) {
	left := 100
	peer := &batchPeer{answer: func(it forward.Item) bucket.Decision {
		return bucket.Decision{Allowed: true, Limit: it.Limit, Remaining: left, ResetAt: routerT0.Add(time.Minute)}
	}}
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": peer}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	require.True(t, r.Check(t.Context(), routerT0, key, 150).Allowed)
	assert.Equal(t, 0, r.book.answers.len(), "100 left: each of 2 members' part is 50, the share ceil(150/3) anyway")
	left = 98
	require.True(t, r.Check(t.Context(), routerT0, key, 150).Allowed)
	assert.Equal(t, 1, r.book.answers.len(), "98 left: a part of 49, less than the share")
}

func TestRouterUnknownPeer(t *testing.T) {
	r := newTestRouter(t, []string{"a", "b"}, peerMap{}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	assert.Equal(t, 2, admitted(t, r.Router, routerT0, key, 3, 5), "admitted locally under limit 3 with 2 members")
	assert.Equal(t, []string{FallbackNoPeer, FallbackNoPeer, FallbackNoPeer, FallbackNoPeer, FallbackNoPeer}, r.events.reasons())
}

func TestRouterCallerGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := &batchPeer{block: true}
		r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, func(c *RouterConfig) {
			c.Breaker.Failures = 1
		})
		key := keyOwnedBy(t, r.ring, "b")
		ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
		defer cancel()

		start := time.Now()
		d := r.Check(ctx, routerT0, key, 10)
		assert.Equal(t, time.Millisecond, time.Since(start), "Check returned after")
		assert.True(t, d.Allowed, "a check whose caller gave up: %+v", d)
		assert.Equal(t, []string{FallbackCanceled}, r.events.reasons())
		r.mu.RLock()
		l := r.links["b"]
		r.mu.RUnlock()
		require.NotNil(t, l)
		assert.Equal(t, forward.BreakerClosed, l.breaker.State(routerT0), "the caller giving up was held against the peer")
	})
}

func TestRouterForget(t *testing.T) {
	peer := &batchPeer{}
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	r.Check(t.Context(), routerT0, key, 10)

	r.mu.RLock()
	old := r.links["b"]
	r.mu.RUnlock()
	require.NotNil(t, old, "no link to b after a forward")

	r.Forget("b")
	_, err := old.batcher.Check(t.Context(), batchItem(1))
	assert.ErrorIs(t, err, forward.ErrClosed, "Check on the forgotten peer's batcher")
	r.mu.RLock()
	_, kept := r.links["b"]
	r.mu.RUnlock()
	assert.False(t, kept, "Forget kept the link")
	r.Forget("b") // forgetting twice is harmless

	r.Check(t.Context(), routerT0, key, 10)
	assert.Len(t, peer.callSizes(), 2, "calls to b: the check after Forget should reach it afresh")
}

func TestRouterClose(t *testing.T) {
	peer := &batchPeer{}
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, nil)
	owned, remote := keyOwnedBy(t, r.ring, "a"), keyOwnedBy(t, r.ring, "b")
	r.Check(t.Context(), routerT0, remote, 10)
	r.Close()

	assert.True(t, r.Check(t.Context(), routerT0, owned, 10).Allowed)
	assert.Equal(t, 1, r.local.Len(), "owned keys counted after Close")
	d := r.Check(t.Context(), routerT0, remote, 10)
	assert.True(t, d.Allowed)
	assert.Equal(t, 5, d.Limit, "a check after Close is decided against the local share")
	assert.Equal(t, []string{FallbackClosed}, r.events.reasons())
	assert.Len(t, peer.callSizes(), 1, "calls to b")
	r.Close() // closing twice is harmless
}

func TestRouterLogsWarnsSparinglyWithoutKeys(t *testing.T) {
	var buf bytes.Buffer
	peer := &batchPeer{}
	peer.setErr(errors.New("down"))
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, func(c *RouterConfig) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	key := keyOwnedBy(t, r.ring, "b")
	for i := range 100 {
		r.Check(t.Context(), routerT0.Add(time.Duration(i)*time.Millisecond), key, 10) // 100 checks in 0.1s
	}
	r.Check(t.Context(), routerT0.Add(time.Second), key, 10)

	out := buf.String()
	assert.NotContains(t, out, key, "the log holds the raw key")
	assert.Contains(t, out, "key_hash="+config.KeyHash(key))
	assert.Equal(t, 2, strings.Count(out, "deciding locally"), "fallback warnings for 101 fallbacks over 1s:\n%s", out)
	assert.Equal(t, 1, strings.Count(out, "skipping it for a while"), "breaker warnings:\n%s", out)
	assert.Contains(t, out, "suppressed=99", "the second warning counts those held back")
}

func TestNewRouterPanicsOnMissingDependency(t *testing.T) {
	store := bucket.New(bucket.Config{Window: routerWindow})
	full := RouterConfig{Self: "a", Ring: ring.New(), Local: store, Fallback: store, Peers: peerMap{}}
	tests := []struct {
		name string
		edit func(*RouterConfig)
	}{
		{"nil Ring", func(c *RouterConfig) { c.Ring = nil }},
		{"nil Local", func(c *RouterConfig) { c.Local = nil }},
		{"nil Fallback", func(c *RouterConfig) { c.Fallback = nil }},
		{"nil Peers", func(c *RouterConfig) { c.Peers = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := full
			tc.edit(&cfg)
			assert.Panics(t, func() { NewRouter(cfg) })
		})
	}
	assert.NotPanics(t, func() { NewRouter(full).Close() })
}

func TestRouterConcurrentChecks(t *testing.T) {
	peer := &batchPeer{}
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": peer, "c": peer}, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := "user-" + strconv.Itoa(g*1000+i)
				d := r.Check(t.Context(), routerT0, key, 10)
				assert.True(t, d.Allowed, "Check(%q) = %+v", key, d)
				if i%50 == 0 {
					r.ClearOverLimit()
				}
			}
		})
	}
	wg.Go(func() { r.Forget("c") })
	wg.Wait()
}

func BenchmarkRouterCheck(b *testing.B) {
	rg := ring.New()
	rg.Set([]string{"a", "b"})
	r := NewRouter(RouterConfig{
		Self:     "a",
		Ring:     rg,
		Local:    bucket.New(bucket.Config{Window: routerWindow}),
		Fallback: bucket.New(bucket.Config{Window: routerWindow}),
		Peers:    peerMap{"b": instantPeer{}},
	})
	defer r.Close()
	var owned, remote []string
	for i := 0; len(owned) < 1024 || len(remote) < 1024; i++ {
		k := "user-" + strconv.Itoa(i)
		if o, _ := rg.Owner(k); o == "a" {
			owned = append(owned, k)
		} else {
			remote = append(remote, k)
		}
	}
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		keys []string
	}{{"owned", owned[:1024]}, {"forwarded", remote[:1024]}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r.Check(ctx, routerT0, bc.keys[i&1023], 1<<30)
					i++
				}
			})
		})
	}
	b.Run("leased", func(b *testing.B) {
		// A real owner, on the real clock: each key's first check brings a
		// lease, and renewals go out in the background as leases run low.
		owner := newOwnerPeer(2)
		owner.now.Store(nil)
		lr := NewRouter(RouterConfig{
			Self:     "a",
			Ring:     rg,
			Local:    bucket.New(bucket.Config{Window: routerWindow}),
			Fallback: bucket.New(bucket.Config{Window: routerWindow}),
			Peers:    peerMap{"b": owner},
		})
		defer lr.Close()
		for _, k := range remote[:1024] {
			lr.Check(ctx, time.Now(), k, 1<<30)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				lr.Check(ctx, time.Now(), remote[i&1023], 1<<30)
				i++
			}
		})
		b.StopTimer()
		held, _ := lr.Leases()
		require.Equal(b, 1024, held)
	})
	b.Run("refused from cache", func(b *testing.B) {
		key := remote[0]
		r.book.answers.put(key, 10, bucket.Decision{RetryAt: routerT0.Add(time.Hour)}, routerT0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.Check(ctx, routerT0, key, 10)
			}
		})
	})
}

func TestRouterBreakersReportsEachPeer(t *testing.T) {
	b := &batchPeer{}
	b.setErr(errors.New("peer down"))
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": b}, nil)
	now := routerT0
	assert.Empty(t, r.Breakers(now), "no peer has been used yet")
	key := keyOwnedBy(t, r.ring, "b")
	for range forward.DefaultBreakerFailures {
		r.Check(t.Context(), now, key, 10)
	}
	assert.Equal(t, map[string]forward.BreakerState{"b": forward.BreakerOpen}, r.Breakers(now))
	r.Forget("b")
	assert.Empty(t, r.Breakers(now))
}

func TestRouterShare(t *testing.T) {
	r := newTestRouter(t, []string{"a"}, peerMap{}, nil)
	tests := []struct {
		alive, known, limit, want int
	}{
		{1, 1, 20, 20},  // alone and the whole cluster
		{2, 3, 20, 20},  // a strict majority keeps full limits
		{1, 3, 20, 7},   // the lone side of 2+1: ceil(20/3)
		{2, 4, 20, 10},  // each side of 2+2
		{1, 2, 1, 1},    // never below 1
		{3, 7, 150, 65}, // ceil(150×3/7)
		{0, 0, 20, 20},  // nothing known yet
	}
	for _, tt := range tests {
		r.SetShare(tt.alive, tt.known)
		d := r.Check(t.Context(), routerT0, "k-"+strconv.Itoa(tt.alive)+"-"+strconv.Itoa(tt.known)+"-"+strconv.Itoa(tt.limit), tt.limit)
		assert.Equal(t, tt.want, d.Limit, "SetShare(%d, %d), then Check with limit %d", tt.alive, tt.known, tt.limit)
	}
}

// TestRouterLocalDecisionsSpendWhatTheOwnerSaidWasLeft: when the owner
// stops answering, the members deciding locally share what the owner last
// said the key had left, not a share of the whole limit each; and the last
// hits of a window, which the owner leases to nobody, they leave to it.
func TestRouterLocalDecisionsSpendWhatTheOwnerSaidWasLeft(t *testing.T) {
	left := 10
	peer := &batchPeer{answer: func(it forward.Item) bucket.Decision {
		return bucket.Decision{Allowed: true, Limit: it.Limit, Remaining: left, ResetAt: routerT0.Add(time.Minute)}
	}}
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": peer}, func(cfg *RouterConfig) { cfg.LeaseTTL = -1 })
	key := keyOwnedBy(t, r.ring, "b")
	require.True(t, r.Check(t.Context(), routerT0, key, 150).Allowed, "the owner answers: 10 left")
	near := key + "-near"
	for o, _ := r.ring.Owner(near); o != "b"; o, _ = r.ring.Owner(near) {
		near += "x"
	}
	left = 5
	require.True(t, r.Check(t.Context(), routerT0, near, 150).Allowed, "the owner answers: 5 left")

	peer.setErr(errors.New("owner down"))
	admitted := 0
	for range 20 {
		if d := r.Check(t.Context(), routerT0.Add(time.Second), key, 150); d.Allowed {
			admitted++
		} else {
			assert.Equal(t, 5, d.Limit, "the header tells the budget this node applies: its part of the 10 left")
			assert.Zero(t, d.Remaining)
			assert.Equal(t, routerT0.Add(time.Second+forward.DefaultBreakerCooldown), d.RetryAt,
				"retry when the owner will be asked again, not when this node's own count frees room")
		}
	}
	assert.Equal(t, 5, admitted, "half of the 10 left, for one of the two members that may decide locally; not a share of 150")
	owed := r.owed.Take(routerT0.Add(time.Second), key, 0, 150)
	assert.Equal(t, 145, owed.Remaining, "the 5 hits admitted here are owed to the owner")
	for range 5 {
		assert.False(t, r.Check(t.Context(), routerT0.Add(time.Second), near, 150).Allowed,
			"5 left, fewer than 2 per member: the owner's to decide")
	}

	// A key the owner never spoke of gets the share of the whole limit.
	other := keyOwnedBy(t, r.ring, "b") + "-other"
	for o, _ := r.ring.Owner(other); o != "b"; o, _ = r.ring.Owner(other) {
		other += "x"
	}
	admitted = 0
	for range 60 {
		if r.Check(t.Context(), routerT0.Add(time.Second), other, 150).Allowed {
			admitted++
		}
	}
	assert.Equal(t, 50, admitted, "ceil(150/3)")
}

// TestRouterCheckPathSaysHowItDecided: each way a check can be decided is
// reported as its own path.
func TestRouterCheckPathSaysHowItDecided(t *testing.T) {
	reset := routerT0.Add(routerWindow)
	refusing := &batchPeer{answer: func(it forward.Item) bucket.Decision {
		return bucket.Decision{Limit: it.Limit, ResetAt: reset, RetryAt: reset}
	}}
	// b grants leases, c refuses every key, d cannot be reached.
	r := newTestRouter(t, []string{"a", "b", "c", "d"}, peerMap{"b": newOwnerPeer(4), "c": refusing}, nil)
	own, leased, refused, unreachable := keyOwnedBy(t, r.ring, "a"), keyOwnedBy(t, r.ring, "b"),
		keyOwnedBy(t, r.ring, "c"), keyOwnedBy(t, r.ring, "d")
	names := r.Paths()
	require.Equal(t, []string{"local", "lease", "forwarded", "cached", "fallback"}, names)

	steps := []struct {
		key  string
		want int
	}{
		{own, PathLocal},
		{leased, PathForwarded}, // and comes back with a lease
		{leased, PathLease},
		{refused, PathForwarded}, // refused, and the refusal remembered
		{refused, PathCached},
		{unreachable, PathFallback},
	}
	for i, s := range steps {
		_, got := r.CheckPath(t.Context(), routerT0, s.key, 150)
		require.Less(t, got, len(names), "step %d: CheckPath(%q) path index", i, s.key)
		assert.Equal(t, names[s.want], names[got], "step %d: CheckPath(%q) path", i, s.key)
	}
}

// racingPeers is a PeerSource whose first lookup of a name returns old
// and, as a member whose address changed would, has the Router forget the
// name before the lookup returns: the lookup raced with Forget.
type racingPeers struct {
	r        *Router
	old, cur forward.Peer
	lookups  atomic.Int32
}

func (p *racingPeers) Peer(name string) (forward.Peer, bool) {
	if p.lookups.Add(1) == 1 {
		p.r.Forget(name) // the address changed meanwhile: old is released
		return p.old, true
	}
	return p.cur, true
}

func TestRouterDoesNotLinkAPeerForgottenDuringItsLookup(t *testing.T) {
	old := &batchPeer{err: errors.New("released client")}
	cur := &batchPeer{}
	src := &racingPeers{old: old, cur: cur}
	rg := ring.New()
	rg.Set([]string{"a", "b"})
	r := NewRouter(RouterConfig{Self: "a", Ring: rg, LeaseTTL: -1,
		Local:    bucket.New(bucket.Config{Window: routerWindow}),
		Fallback: bucket.New(bucket.Config{Window: routerWindow}),
		Peers:    src})
	t.Cleanup(r.Close)
	src.r = r
	key := keyOwnedBy(t, rg, "b")

	for i := range 3 {
		_, path := r.CheckPath(t.Context(), routerT0, key, 10)
		assert.Equal(t, PathForwarded, path, "check %d goes to the current client", i)
	}
	assert.Empty(t, old.calls, "nothing is sent on the client released during the lookup")
	assert.Len(t, cur.calls, 3)
}

// TestRouterOwesLocalHitsInTheOwnersWindow: hits admitted on this node's
// own are owed to the owner's count in the owner's window frame, when the
// owner said where its window lies, so that adding them there does not
// move the key's window on (which refused the next window's first hits for
// seconds after an owner's stall).
func TestRouterOwesLocalHitsInTheOwnersWindow(t *testing.T) {
	ownerStart := routerT0.Add(-20 * time.Second) // the owner's window began before this node saw the key
	peer := &batchPeer{answer: func(it forward.Item) bucket.Decision {
		return bucket.Decision{Allowed: true, Limit: it.Limit, Remaining: 40, ResetAt: ownerStart.Add(routerWindow)}
	}}
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": peer}, func(cfg *RouterConfig) { cfg.LeaseTTL = -1 })
	key := keyOwnedBy(t, r.ring, "b")
	require.True(t, r.Check(t.Context(), routerT0, key, 150).Allowed)
	peer.setErr(errors.New("owner down"))

	owedStart := func(now time.Time) time.Time {
		d, path := r.CheckPath(t.Context(), now, key, 150)
		require.Equal(t, PathFallback, path)
		require.True(t, d.Allowed)
		counts := r.owed.Drain(func(string) bool { return false })
		require.Len(t, counts, 1)
		return counts[0].Start
	}
	assert.Equal(t, ownerStart, owedStart(routerT0.Add(time.Second)), "in the owner's window, not one starting now")
	assert.Equal(t, ownerStart, owedStart(routerT0.Add(30*time.Second)))
}
