package ownership

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
)

func TestGrantSize(t *testing.T) {
	tests := []struct {
		want, remaining, members, granted int
	}{
		{want: 100, remaining: 1499, members: 3, granted: 100},
		{want: 1000, remaining: 1499, members: 3, granted: 249}, // remaining / (2 × 3)
		{want: 4, remaining: 19, members: 3, granted: 3},
		{want: 4, remaining: 6, members: 3, granted: 1},
		{want: 4, remaining: 5, members: 3, granted: 0}, // near the limit: every check to the owner
		{want: 4, remaining: 0, members: 3, granted: 0},
		{want: 4, remaining: 1000, members: 1, granted: 0}, // alone: nobody to lease to
		{want: 0, remaining: 1000, members: 3, granted: 0},
		{want: 500, remaining: 1000, members: 10, granted: 50},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.granted, grantSize(tt.want, tt.remaining, tt.members), "grantSize(%d, %d, %d)", tt.want, tt.remaining, tt.members)
	}
}

// TestOwnerDecide steps an Owner of a 3-member ring through one key's
// checks, renewals and give-backs under limit 150, on a fake clock: what it
// grants is counted at once, never past the limit, and a lease never
// outlasts its window.
func TestOwnerDecide(t *testing.T) {
	store := bucket.New(bucket.Config{Window: routerWindow})
	members := 3
	o := NewOwner(store, func() int { return members }, time.Second)
	t0 := routerT0
	end := t0.Add(routerWindow) // the key's window starts with its first hit
	item := func(hits, want int) forward.Item {
		return forward.Item{Key: "k", Hits: hits, Limit: 150, Window: routerWindow, Want: want}
	}
	steps := []struct {
		name      string
		at        time.Duration
		it        forward.Item
		allowed   bool
		remaining int // after the hit and the grant
		granted   int
		leaseFor  time.Duration
	}{
		{"a check with a lease asked", 0, item(1, 4), true, 145, 4, time.Second},
		{"a big want is cut to remaining/(2N)", time.Second, item(1, 1000), true, 120, 24, time.Second},
		{"a renewal counts no hit", 2 * time.Second, item(0, 30), true, 100, 20, time.Second},
		{"give 20 back", 3 * time.Second, forward.Item{Key: "k", Limit: 150, Window: routerWindow, GiveBack: 20, GiveBackStart: t0}, true, 120, 0, 0}, // the renewal's lease
		{"no lease asked", 4 * time.Second, item(1, 0), true, 119, 0, 0},
		{"near the window's end the lease is shorter", routerWindow - 300*time.Millisecond, item(1, 6), true, 112, 6, 300 * time.Millisecond},
		{"too near the end: none", routerWindow - 5*time.Millisecond, item(1, 6), true, 111, 0, 0},
	}
	ids := make([]uint64, len(steps))
	for i, st := range steps {
		now := t0.Add(st.at)
		if st.it.GiveBack > 0 {
			st.it.LeaseID = ids[2]
		}
		r := o.Decide(now, st.it)
		ids[i] = r.LeaseID
		assert.Equal(t, r.Granted > 0, r.LeaseID != 0, "%s: a grant, and only a grant, has a lease id", st.name)
		assert.Equal(t, st.allowed, r.Allowed, st.name)
		assert.Equal(t, st.remaining, r.Remaining, st.name)
		assert.Equal(t, st.granted, r.Granted, st.name)
		assert.Equal(t, st.leaseFor, r.LeaseFor, st.name)
		assert.Equal(t, end, r.ResetAt, st.name)
		if r.Granted > 0 {
			assert.False(t, now.Add(r.LeaseFor).After(end), "%s: a lease past its window", st.name)
		}
	}

	// For a while after the ring changes nothing is granted: counts of keys
	// this node took on may still be on their way.
	o.Moved(t0.Add(10 * time.Second))
	r := o.Decide(t0.Add(11*time.Second), item(1, 6))
	assert.True(t, r.Allowed)
	assert.Zero(t, r.Granted, "1 s after a change of members")
	assert.Equal(t, 6, o.Decide(t0.Add(12*time.Second+time.Millisecond), item(1, 6)).Granted, "settled")

	// Near the limit nothing is granted: the last hits are decided here.
	o2 := NewOwner(bucket.New(bucket.Config{Window: routerWindow}), func() int { return members }, time.Second)
	got := 0
	for i := range 30 {
		r := o2.Decide(t0, forward.Item{Key: "free", Hits: 1, Limit: 20, Window: routerWindow, Want: 4})
		if r.Allowed {
			got += 1 + r.Granted
		}
		if r.Granted > 0 {
			assert.GreaterOrEqual(t, r.Remaining, 0, "check %d", i)
		}
	}
	assert.Equal(t, 20, got, "hits admitted and granted under limit 20")

	// A refused hit gets no lease; nor does anything on a lone node or with
	// leases off.
	assert.Zero(t, o2.Decide(t0, forward.Item{Key: "free", Hits: 1, Limit: 20, Window: routerWindow, Want: 4}).Granted)
	members = 1
	assert.Zero(t, o.Decide(t0.Add(5*time.Second), item(1, 4)).Granted, "alone")
	members = 3
	off := NewOwner(bucket.New(bucket.Config{Window: routerWindow}), func() int { return 3 }, -1)
	assert.Zero(t, off.Decide(t0, item(1, 4)).Granted, "leases off")
}

// TestOwnerTakesEachLeaseBackOnce: a give-back takes back at most what its
// lease has out, once per nonce, so one sent again (its answer was lost) or
// forged takes nothing; a renewal adds to the lease it names, also one
// granted while the lease's give-back was on its way, which a later
// give-back of the same lease then takes back.
func TestOwnerTakesEachLeaseBackOnce(t *testing.T) {
	store := bucket.New(bucket.Config{Window: routerWindow})
	o := NewOwner(store, func() int { return 3 }, time.Second)
	t0 := routerT0
	ask := func(at time.Duration, id uint64, want int) forward.Result {
		return o.Decide(t0.Add(at), forward.Item{Key: "k", Limit: 150, Window: routerWindow, Want: want, LeaseID: id})
	}
	give := func(at time.Duration, id uint64, n int, nonce uint64) int {
		return o.Decide(t0.Add(at), forward.Item{Key: "k", Limit: 150, Window: routerWindow, LeaseID: id,
			GiveBack: n, GiveBackStart: t0, GiveBackNonce: nonce}).TookBack
	}
	first := ask(0, 0, 10)
	require.Equal(t, 10, first.Granted)
	require.NotZero(t, first.LeaseID)
	renewed := ask(time.Millisecond, first.LeaseID, 10)
	require.Equal(t, 10, renewed.Granted)
	assert.Equal(t, first.LeaseID, renewed.LeaseID, "a renewal keeps the lease's id")
	other := ask(2*time.Millisecond, 0, 5)
	require.Equal(t, 5, other.Granted)
	assert.NotEqual(t, first.LeaseID, other.LeaseID, "another lease, another id")
	assert.Equal(t, 2, o.Leases())
	used := func() int { return 150 - store.Take(t0.Add(3*time.Millisecond), "k", 0, 150).Remaining }
	require.Equal(t, 25, used())

	steps := []struct {
		name      string
		id        uint64
		give      int
		nonce     uint64
		took      int
		countLeft int // hits counted afterwards
	}{
		{"the first lease ends with 5 unused", first.LeaseID, 5, 1, 5, 20},
		{"sent again: the same nonce", first.LeaseID, 5, 1, 0, 20},
		{"a renewal granted meanwhile is given back later", first.LeaseID, 10, 2, 10, 10},
		{"a third give-back takes what is still out, no more", first.LeaseID, 15, 3, 5, 5},
		{"really nothing", first.LeaseID, 15, 4, 0, 5},
		{"a forged id", other.LeaseID ^ 1, 1 << 20, 5, 0, 5},
		{"no id", 0, 1 << 20, 6, 0, 5},
		{"more than the other lease has out", other.LeaseID, 1 << 20, 7, 5, 0},
	}
	for i, st := range steps {
		assert.Equal(t, st.took, give(time.Duration(10+i)*time.Millisecond, st.id, st.give, st.nonce), st.name)
		assert.Equal(t, st.countLeft, used(), st.name)
	}
}

// TestOwnerCountsNothingPastItsDeadline: an item that reaches the owner
// later than its deadline plus the clock offset was decided by its sender
// already (the owner was paused, say): counting it would count a hit the
// client was refused, or one already owed. Within the offset it counts; a
// give-back in a late item is still taken.
func TestOwnerCountsNothingPastItsDeadline(t *testing.T) {
	store := bucket.New(bucket.Config{Window: routerWindow})
	o := NewOwner(store, func() int { return 3 }, time.Second)
	o.SetMaxClockOffset(100 * time.Millisecond)
	t0 := routerT0
	used := func() int { return 150 - store.Take(t0, "k", 0, 150).Remaining }
	check := func(deadline time.Time, want int) forward.Result {
		return o.Decide(t0, forward.Item{Key: "k", Hits: 1, Limit: 150, Window: routerWindow, Want: want, Deadline: deadline})
	}

	r := check(t0.Add(-100*time.Millisecond), 8)
	assert.True(t, r.Allowed, "late by no more than the offset")
	assert.Equal(t, 8, r.Granted)
	assert.Equal(t, 9, used())

	r = check(t0.Add(-101*time.Millisecond), 8)
	assert.True(t, r.Expired)
	assert.False(t, r.Allowed)
	assert.Zero(t, r.Granted)
	assert.Equal(t, 9, used(), "nothing counted for a check past its deadline")

	late := forward.Item{Key: "k", Limit: 150, Window: routerWindow, Deadline: t0.Add(-4 * time.Second),
		LeaseID: check(time.Time{}, 8).LeaseID, GiveBack: 8, GiveBackStart: t0}
	require.Equal(t, 18, used())
	r = o.Decide(t0, late)
	assert.True(t, r.Expired)
	assert.Equal(t, 8, r.TookBack, "the give-back is taken all the same")
	assert.Equal(t, 10, used())
}

// TestOwnerCreditsBackWhatAFailedHolderHadLeft: when the holder of a lease
// fails or restarts, the owner takes off the key's count what the holder
// last said the lease had left (its report, plus grants since), once; it
// never takes it for gone while it was not known alive, nor credits a lease
// whose holder the call did not name.
func TestOwnerCreditsBackWhatAFailedHolderHadLeft(t *testing.T) {
	a1, a2, b := forward.Holder{Name: "a", Boot: "boot-1"}, forward.Holder{Name: "a", Boot: "boot-2"}, forward.Holder{Name: "b", Boot: "boot-b"}
	tests := []struct {
		name    string
		known   map[string]string // the members before
		now     map[string]string // and after
		from    forward.Holder
		report  int // -1: none
		credit  int // what the owner takes back
		kept    int // the leases it still keeps a record of
		granted int
	}{
		{"a fails after saying 6 of 10 are left", map[string]string{"a": "boot-1", "b": "boot-b"}, map[string]string{"b": "boot-b"}, a1, 6, 6, 0, 10},
		{"a restarts", map[string]string{"a": "boot-1"}, map[string]string{"a": "boot-2"}, a1, 6, 6, 0, 10},
		{"no report: the whole grant", map[string]string{"a": "boot-1"}, map[string]string{}, a1, -1, 10, 0, 10},
		{"a report of more than was granted", map[string]string{"a": "boot-1"}, map[string]string{}, a1, 50, 10, 0, 10},
		{"another member fails", map[string]string{"a": "boot-1", "b": "boot-b"}, map[string]string{"a": "boot-1"}, a1, 6, 0, 1, 10},
		{"the new process's lease stays", map[string]string{"a": "boot-1"}, map[string]string{"a": "boot-2"}, a2, 6, 0, 1, 10},
		{"a holder never known alive", map[string]string{"b": "boot-b"}, map[string]string{}, a1, 6, 0, 1, 10},
		{"a call that named nobody", map[string]string{"a": "boot-1"}, map[string]string{}, forward.Holder{}, 6, 0, 1, 10},
		{"b spent it all", map[string]string{"b": "boot-b"}, map[string]string{}, b, 0, 0, 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := bucket.New(bucket.Config{Window: routerWindow})
			o := NewOwner(store, func() int { return 3 }, time.Second)
			t0 := routerT0
			used := func() int { return 150 - store.Take(t0.Add(time.Second), "k", 0, 150).Remaining }
			o.Members(t0, tt.known)
			r := o.Decide(t0, forward.Item{Key: "k", Hits: 1, Limit: 150, Window: routerWindow, Want: 10, From: tt.from})
			require.Equal(t, tt.granted, r.Granted)
			require.Equal(t, 11, used())
			if tt.report >= 0 {
				o.Decide(t0, forward.Item{Key: "k", Limit: 150, Window: routerWindow, LeaseID: r.LeaseID, GiveBackStart: t0, Left: tt.report, Reported: true})
			}
			o.Members(t0.Add(time.Second), tt.now)
			assert.Equal(t, 11-tt.credit, used(), "the count after")
			assert.Equal(t, int64(tt.credit), o.Credited())
			assert.Equal(t, tt.kept, o.Leases())
			o.Members(t0.Add(2*time.Second), map[string]string{}) // everyone gone: nothing is credited twice
			if tt.kept == 0 {
				assert.Equal(t, 11-tt.credit, used(), "credited twice")
			}
		})
	}
}

// TestOwnerReportThenGiveBack: a give-back after a report takes what it
// gives off what the lease has left too, so a later failure of its holder
// credits only the rest.
func TestOwnerReportThenGiveBack(t *testing.T) {
	store := bucket.New(bucket.Config{Window: routerWindow})
	o := NewOwner(store, func() int { return 3 }, time.Second)
	t0 := routerT0
	a := forward.Holder{Name: "a", Boot: "boot-1"}
	o.Members(t0, map[string]string{"a": "boot-1"})
	r := o.Decide(t0, forward.Item{Key: "k", Hits: 1, Limit: 150, Window: routerWindow, Want: 10, From: a})
	require.Equal(t, 10, r.Granted)
	o.Decide(t0, forward.Item{Key: "k", Limit: 150, Window: routerWindow, LeaseID: r.LeaseID, GiveBackStart: t0, Left: 6, Reported: true})
	g := o.Decide(t0, forward.Item{Key: "k", Limit: 150, Window: routerWindow, LeaseID: r.LeaseID, GiveBack: 4, GiveBackStart: t0, GiveBackNonce: 7})
	require.Equal(t, 4, g.TookBack)
	o.Members(t0.Add(time.Second), map[string]string{})
	assert.Equal(t, int64(2), o.Credited())
	assert.Equal(t, 145, store.Take(t0.Add(time.Second), "k", 0, 150).Remaining)
}
