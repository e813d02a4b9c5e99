package ownership

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
)

// newTestBook returns a book with leases of ttl, in routerWindow windows.
func newTestBook() *book {
	return &book{leases: newLeases(100), answers: newAnswers(100, routerWindow), leaseTTL: time.Second, window: routerWindow}
}

// TestBookSteps drives the pure core of the remote path through one key's
// life on a fake clock, as x/time/rate's tests do: what it answers without
// the owner, what it asks for, what ends and what goes back, at each step.
func TestBookSteps(t *testing.T) {
	b := newTestBook()
	t0 := routerT0
	end := t0.Add(routerWindow)
	const key, members = "k", 3
	grant := func(granted, remaining int, id uint64) forward.Result {
		return forward.Result{Decision: bucket.Decision{Allowed: true, Limit: 150, Remaining: remaining, ResetAt: end},
			Granted: granted, LeaseFor: time.Second, WindowLeft: routerWindow, LeaseID: id}
	}

	// Nothing known: ask the owner, for a first lease.
	got := b.check(t0, key, 1, 150)
	assert.Equal(t, pathAsk, got.path)
	assert.Nil(t, got.held)
	want, id, asking := b.ask(t0, key, 1, 150)
	assert.Equal(t, firstWant, want)
	assert.Zero(t, id, "a new lease")
	require.NotNil(t, asking)
	w2, _, other := b.ask(t0, key, 1, 150)
	assert.Zero(t, w2, "one ask per key at a time")
	assert.Nil(t, other)

	// The owner admits the hit and grants 8: the decision tells what the
	// owner had left plus what this node now holds.
	d, ended := b.answered(t0, key, 150, members, grant(8, 100, 42))
	asking.renewing.Store(false)
	assert.Empty(t, ended)
	assert.Equal(t, 108, d.Remaining)

	steps := []struct {
		name      string
		at        time.Duration
		limit     int
		path      int
		remaining int  // when answered
		renew     bool // a renewal is due
		why       string
		gives     int // hits the ending gives back
	}{
		{"from the lease", time.Millisecond, 150, PathLease, 7, false, "", 0},
		{"again", 2 * time.Millisecond, 150, PathLease, 6, false, "", 0},
		{"", 3 * time.Millisecond, 150, PathLease, 5, false, "", 0},
		{"", 4 * time.Millisecond, 150, PathLease, 4, false, "", 0},
		{"", 5 * time.Millisecond, 150, PathLease, 3, false, "", 0},
		{"three quarters spent: renew", 6 * time.Millisecond, 150, PathLease, 2, true, "", 0},
		{"a renewal in flight: not twice", 7 * time.Millisecond, 150, PathLease, 1, false, "", 0},
		{"a new limit revokes the lease", 8 * time.Millisecond, 100, pathAsk, 0, false, LeaseRevoked, 1},
	}
	for _, st := range steps {
		got := b.check(t0.Add(st.at), key, 1, st.limit)
		assert.Equal(t, st.path, got.path, "%s: path", st.name)
		if st.path == PathLease {
			assert.Equal(t, st.remaining, got.d.Remaining, "%s: Remaining is what this node holds", st.name)
		}
		assert.Equal(t, st.renew, got.renew != nil, "%s: renewal", st.name)
		if st.why == "" {
			assert.Nil(t, got.ended, st.name)
			continue
		}
		require.NotNil(t, got.ended, st.name)
		assert.Equal(t, st.why, got.ended.why, st.name)
		assert.Equal(t, giveBack{key: key, id: 42, limit: 150, start: t0, hits: st.gives}, got.ended.give, st.name)
	}

	// A lease that runs out of time ends, and what it left goes back.
	_, _, asking = b.ask(t0, key, 1, 150)
	require.NotNil(t, asking)
	b.answered(t0, key, 150, members, grant(8, 100, 43))
	asking.renewing.Store(false)
	got = b.check(t0.Add(2*time.Second), key, 1, 150)
	assert.Equal(t, pathAsk, got.path)
	require.NotNil(t, got.ended)
	assert.Equal(t, LeaseExpired, got.ended.why)
	assert.Equal(t, 8, got.ended.give.hits)

	// A refusal is remembered: the key is refused without the owner until
	// it lifts.
	refused := bucket.Decision{Limit: 150, ResetAt: end, RetryAt: t0.Add(10 * time.Second)}
	_, ended = b.answered(t0.Add(3*time.Second), key, 150, members, forward.Result{Decision: refused})
	assert.Empty(t, ended)
	assert.Equal(t, PathCached, b.check(t0.Add(9*time.Second), key, 1, 150).path)
	assert.Equal(t, pathAsk, b.check(t0.Add(10*time.Second), key, 1, 150).path, "it lifted")
}

// TestBookBudget steps the rule for a local decision when the owner cannot
// be reached: the share of the limit, or each non-owner's part of what the
// owner last said was left, and nothing of a window's last 2 × members
// hits.
func TestBookBudget(t *testing.T) {
	t0 := routerT0
	end := t0.Add(routerWindow)
	withLease := func(rest int) *lease {
		l := newLease(forward.Result{Decision: bucket.Decision{Allowed: true, Remaining: rest, ResetAt: end},
			Granted: 4, LeaseFor: time.Second, WindowLeft: routerWindow}, 150, t0, routerWindow)
		l.drain()
		return l
	}
	tests := []struct {
		name      string
		members   int
		answer    int // what the owner last said was left; -1: nothing said
		held      *lease
		limit     int
		budget    int
		untilSaid bool
	}{
		{"alone: the whole limit", 1, -1, nil, 150, 150, false},
		{"nothing said: the share", 3, -1, nil, 150, 50, false},
		{"the owner said 40 left: half each for the 2 others", 3, 40, nil, 150, 20, true},
		{"the owner said 200 left: the share still bounds", 3, 200, nil, 150, 50, true},
		{"the last 2 × 3 hits are the owner's", 3, 5, nil, 150, 0, true},
		{"6 left: 3 each", 3, 6, nil, 150, 3, true},
		{"a spent lease: its part of the rest at the last grant", 3, -1, withLease(25), 150, 13, true},
		{"a spent lease near the end", 3, -1, withLease(5), 150, 0, true},
		{"a lease under another limit says nothing", 3, -1, withLease(5), 100, 34, false},
		{"ten members, 90 left: 10 each", 10, 90, nil, 150, 10, true},
	}
	for _, tt := range tests {
		b := newTestBook()
		if tt.answer >= 0 {
			b.answers.put("k", tt.limit, bucket.Decision{Allowed: true, Limit: tt.limit, Remaining: tt.answer, ResetAt: end}, t0)
		}
		budget, until := b.budget(t0.Add(time.Second), "k", tt.limit, tt.members, tt.held)
		assert.Equal(t, tt.budget, budget, tt.name)
		assert.Equal(t, tt.untilSaid, !until.IsZero(), "%s: until", tt.name)
	}
}

// TestBookBudgetAfterARefusalLifted: once the owner refused a key, the key
// had nothing left; what its window frees before it ends is the owner's to
// decide, so a local decision admits none of it, though the refusal itself
// no longer answers checks once it lifts.
func TestBookBudgetAfterARefusalLifted(t *testing.T) {
	b := newTestBook()
	t0 := routerT0
	end := t0.Add(routerWindow)
	b.answers.put("k", 150, bucket.Decision{Limit: 150, ResetAt: end, RetryAt: t0.Add(500 * time.Millisecond)}, t0)
	assert.Equal(t, PathCached, b.check(t0.Add(100*time.Millisecond), "k", 1, 150).path, "the refusal holds")
	assert.Equal(t, pathAsk, b.check(t0.Add(time.Second), "k", 1, 150).path, "it lifted: ask the owner")
	budget, until := b.budget(t0.Add(time.Second), "k", 150, 3, nil)
	assert.Zero(t, budget, "without the owner, none of what the window frees")
	assert.Equal(t, end, until)
	budget, _ = b.budget(end, "k", 150, 3, nil)
	assert.Equal(t, 50, budget, "a new window: the share again")
}

// TestBookPrepaid: hits the owner counted for checks this node refused
// (its answer came too late) are this node's to admit: added to the key's
// lease of that window, or a lease of their own, which a later grant
// carries on (given back under no lease id, they would take nothing).
func TestBookPrepaid(t *testing.T) {
	t0 := routerT0
	end := t0.Add(routerWindow)
	counted := forward.Result{Decision: bucket.Decision{Allowed: true, Limit: 150, Remaining: 40, ResetAt: end}}
	grant := forward.Result{Decision: bucket.Decision{Allowed: true, Limit: 150, Remaining: 30, ResetAt: end},
		Granted: 5, LeaseFor: time.Second, WindowLeft: routerWindow, LeaseID: 7}

	t.Run("a lease of their own, carried by the next grant", func(t *testing.T) {
		b := newTestBook()
		assert.Empty(t, b.prepaid(t0, "k", 150, counted, 2))
		got := b.check(t0, "k", 1, 150)
		require.Equal(t, PathLease, got.path, "admitted from the prepaid hits")
		assert.Equal(t, 1, got.d.Remaining)
		assert.Empty(t, b.granted(t0, "k", 150, 3, grant))
		ls := b.leases.get("k")
		require.NotNil(t, ls)
		assert.Equal(t, uint64(7), ls.id)
		assert.Equal(t, int64(5+1), ls.left.Load(), "the grant and the prepaid hit left")
	})
	t.Run("added to the lease of that window", func(t *testing.T) {
		b := newTestBook()
		b.granted(t0, "k", 150, 3, grant)
		b.prepaid(t0, "k", 150, counted, 3)
		assert.Equal(t, int64(8), b.leases.get("k").left.Load())
		b.prepaid(t0, "k", 100, counted, 3) // under another limit: a lease of its own
		assert.Equal(t, int64(3), b.leases.get("k").left.Load())
	})
	t.Run("too near the window's end, or leases off: lost", func(t *testing.T) {
		b := newTestBook()
		b.prepaid(end.Add(-time.Millisecond), "k", 150, counted, 2)
		assert.Nil(t, b.leases.get("k"))
		off := &book{answers: newAnswers(100, routerWindow), leaseTTL: time.Second, window: routerWindow}
		assert.Empty(t, off.prepaid(t0, "k", 150, counted, 2))
	})
}
