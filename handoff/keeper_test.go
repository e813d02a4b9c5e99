package handoff

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/internal/warn"
	"github.com/tierlimit/tierlimit/ring"
)

// routerWindow is the counting window of every store in these tests.
const routerWindow = time.Minute

// routerT0 is the time of the first count in these tests.
var routerT0 = time.Unix(1_700_000_000, 0)

// peerMap is a fake PeerSource.
type peerMap map[string]forward.Peer

func (m peerMap) Peer(name string) (forward.Peer, bool) {
	p, ok := m[name]
	return p, ok
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

// moverPeer is a fake peer that keeps what it is moved, and can fail.
type moverPeer struct {
	// mu guards the fields below.
	mu       sync.Mutex
	err      error
	handed   map[string]bucket.Count
	copies   map[string]bucket.Count
	handoffs int
}

func newMoverPeer() *moverPeer {
	return &moverPeer{handed: map[string]bucket.Count{}, copies: map[string]bucket.Count{}}
}

func (p *moverPeer) Check(context.Context, []forward.Item) ([]forward.Result, error) {
	return nil, errors.New("not used")
}

func (p *moverPeer) Handoff(_ context.Context, _ string, _ time.Duration, counts []bucket.Count) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.handoffs++
	for _, c := range counts {
		p.handed[c.Key] = c
	}
	return nil
}

func (p *moverPeer) Backup(_ context.Context, _, _ string, _ time.Duration, counts []bucket.Count) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	for _, c := range counts {
		p.copies[c.Key] = c
	}
	return nil
}

func (p *moverPeer) got(key string) (handed, copied bucket.Count) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.handed[key], p.copies[key]
}

// keeperFixture is node "a" of a ring, with its store, its owed hits, its
// Keeper and a fake peer "b".
type keeperFixture struct {
	k           *Keeper
	ring        *ring.Ring
	store, owed *bucket.Store
	b           *moverPeer
}

func newKeeperFixture(t *testing.T, members ...string) keeperFixture {
	t.Helper()
	f := keeperFixture{ring: ring.New(), store: bucket.New(bucket.Config{Window: routerWindow, TrackChanges: true}),
		owed: bucket.New(bucket.Config{Window: routerWindow}), b: newMoverPeer()}
	f.ring.Set(members)
	f.k = New(Config{Self: "a", Boot: "boot-a", Ring: f.ring, Store: f.store, Owed: f.owed, Peers: peerMap{"b": f.b},
		Clock: func() time.Time { return routerT0 }})
	f.k.Members(t.Context(), nil, nil)
	return f
}

// backUp runs a backup round and waits for its sends.
func (f keeperFixture) backUp(t *testing.T) {
	f.k.backUp(t.Context())
	f.k.flushes.Wait()
}

// used returns how many hits the store counts for key at routerT0.
func used(s *bucket.Store, key string) int {
	return 10 - s.Take(routerT0, key, 0, 10).Remaining
}

func TestKeeperHandsKeysToTheirNewOwner(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	mine, theirs := keyOwnedBy(t, f.ring, "a"), keyOwnedBy(t, f.ring, "b")
	f.store.Take(routerT0, mine, 5, 10)
	f.store.Take(routerT0, theirs, 3, 10) // counted here while a peer's ring was behind

	f.k.Tidy(t.Context())
	handed, _ := f.b.got(theirs)
	assert.Equal(t, bucket.Count{Key: theirs, Start: routerT0, Current: 3}, handed, "b got its key's count")
	assert.Equal(t, 5, used(f.store, mine), "a key this node owns stays")
	assert.Equal(t, 0, used(f.store, theirs), "the handed key left the store")

	// b is down: the count stays here, whole, for the next hand-off.
	f.b.mu.Lock()
	f.b.err = errors.New("down")
	f.b.mu.Unlock()
	f.store.Take(routerT0, theirs, 2, 10)
	f.k.Tidy(t.Context())
	assert.Equal(t, 2, used(f.store, theirs))
}

// levelCounter counts the log records by level and message.
type levelCounter struct {
	mu *sync.Mutex
	n  map[string]int // "WARN could not move counts to peer": 2
}

func newLevelCounter() levelCounter { return levelCounter{mu: &sync.Mutex{}, n: map[string]int{}} }

func (c levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c levelCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c levelCounter) WithGroup(string) slog.Handler            { return c }
func (c levelCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[r.Level.String()+" "+r.Message]++
	return nil
}

func (c levelCounter) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// A crashed peer is sent a backup every 100 ms until failure detection
// drops it: a Warn a second about it, as the Router's, and the rest at
// Debug.
func TestKeeperWarnsOfAFailingPeerOnceASecond(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	logs := newLevelCounter()
	f.k.log = slog.New(logs)
	now := routerT0
	f.k.clock = func() time.Time { return now }
	mine := keyOwnedBy(t, f.ring, "a")
	f.b.mu.Lock()
	f.b.err = errors.New("connection refused")
	f.b.mu.Unlock()
	for i := range 10 { // one second of backups
		f.store.Take(routerT0, mine, 1, 20)
		f.backUp(t)
		assert.Equal(t, 1, logs.count("WARN could not move counts to peer"), "backup %d", i)
		now = now.Add(99 * time.Millisecond)
	}
	assert.Equal(t, 9, logs.count("DEBUG could not move counts to peer"))

	now = routerT0.Add(warn.Every)
	f.store.Take(routerT0, mine, 1, 20)
	f.backUp(t)
	assert.Equal(t, 2, logs.count("WARN could not move counts to peer"), "a second later, the next")

	f.b.mu.Lock()
	f.b.err = nil
	f.b.mu.Unlock()
	f.backUp(t)
	_, copied := f.b.got(mine)
	assert.Equal(t, uint64(11), copied.Current, "every hit reached the copy once b answered")
}

func TestKeeperBacksUpChangedKeysAndRestoresAFailedMembersCopies(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	mine := keyOwnedBy(t, f.ring, "a")
	f.store.Take(routerT0, mine, 4, 10)
	f.backUp(t)
	_, copied := f.b.got(mine)
	assert.Equal(t, bucket.Count{Key: mine, Start: routerT0, Current: 4}, copied, "b, which would own it without a, has the copy")
	f.backUp(t)

	// a holds copies of b's counts; b fails: a takes them over.
	theirs := keyOwnedBy(t, f.ring, "b")
	require.NoError(t, f.k.Copies("b", "b1", []bucket.Count{{Key: theirs, Start: routerT0, Current: 7}}))
	assert.Equal(t, 1, f.k.CopiesOf("b"))
	f.ring.Set([]string{"a"})
	f.k.Members(t.Context(), []string{"b"}, nil)
	assert.Equal(t, 7, used(f.store, theirs), "b's count, restored")
	assert.Zero(t, f.k.BackupLen(), "the failed member's copies are used")
}

// TestKeeperTakesOverBeforeTheRingMoves: TakeOver counts a failed
// member's copies and the hits owed to its keys at once, while the ring
// still holds it and with no call to anyone; the Members that follows the
// ring's change finds nothing more to restore, and hits owed to a member
// that did not fail stay owed.
func TestKeeperTakesOverBeforeTheRingMoves(t *testing.T) {
	f := newKeeperFixture(t, "a", "b", "c")
	after := ring.New()
	after.Set([]string{"a", "c"})
	theirs := ""
	for i := 0; theirs == ""; i++ {
		require.Less(t, i, 100_000, "no key of b's that a takes over")
		if k := "user-" + strconv.Itoa(i); must(f.ring.Owner(k)) == "b" && must(after.Owner(k)) == "a" {
			theirs = k
		}
	}
	others := keyOwnedBy(t, f.ring, "c")
	require.NoError(t, f.k.Copies("b", "b1", []bucket.Count{{Key: theirs, Start: routerT0, Current: 7}}))
	f.owed.Add(routerT0, bucket.Count{Key: theirs, Start: routerT0, Current: 2})
	f.owed.Add(routerT0, bucket.Count{Key: others, Start: routerT0, Current: 1})

	f.k.TakeOver([]string{"b"})
	assert.Equal(t, 9, used(f.store, theirs), "b's copy and the hits owed to it, counted")
	assert.Zero(t, f.k.CopiesOf("b"))
	assert.Equal(t, 1, used(f.owed, others), "owed to c, alive: still owed")
	assert.Zero(t, used(f.owed, theirs))

	f.ring.Set([]string{"a", "c"})
	f.k.Members(t.Context(), []string{"b"}, nil)
	assert.Equal(t, 9, used(f.store, theirs), "counted once")
}

// TestKeeperRestoresARestartedMembersCopies: b crashed and came back under
// its name before anyone saw it fail. Its first backup from the new process
// carries a new boot id: the copies from its old process go back to b, to
// be added to what it counted since, and the new copies replace them.
func TestKeeperRestoresARestartedMembersCopies(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	theirs, other := keyOwnedBy(t, f.ring, "b"), ""
	for i := 0; other == ""; i++ {
		if k := "other-" + strconv.Itoa(i); must(f.ring.Owner(k)) == "b" {
			other = k
		}
	}
	require.NoError(t, f.k.Copies("b", "boot-1", []bucket.Count{{Key: theirs, Start: routerT0, Current: 7}, {Key: other, Start: routerT0, Current: 3}}))
	require.NoError(t, f.k.Copies("b", "boot-1", []bucket.Count{{Key: theirs, Start: routerT0, Current: 8}}))
	require.NoError(t, f.k.Copies("b", "", []bucket.Count{{Key: theirs, Start: routerT0, Current: 8}})) // a sender without boot ids changes nothing
	handed, _ := f.b.got(theirs)
	assert.Zero(t, handed, "the same process: nothing goes back")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); f.k.Run(ctx) }()
	require.NoError(t, f.k.Copies("b", "boot-2", []bucket.Count{{Key: theirs, Start: routerT0, Current: 1}}))
	require.Eventually(t, func() bool {
		h1, _ := f.b.got(theirs)
		h2, _ := f.b.got(other)
		return h1.Current == 8 && h2.Current == 3
	}, 5*time.Second, time.Millisecond, "the old process's copies did not go back to b")
	assert.Equal(t, 1, f.k.CopiesOf("b"), "the new process's copy replaces the old ones")
	cancel()
	<-done
}

// TestKeeperLeaveSendsCopiesNotYetGivenBack: copies of a restarted
// member's old process that Run has not sent yet go with the hand-off of a
// node that leaves.
func TestKeeperLeaveSendsCopiesNotYetGivenBack(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	theirs := keyOwnedBy(t, f.ring, "b")
	require.NoError(t, f.k.Copies("b", "boot-1", []bucket.Count{{Key: theirs, Start: routerT0, Current: 7}}))
	require.NoError(t, f.k.Copies("b", "boot-2", nil)) // b restarted; Run is not running
	require.NoError(t, f.k.Leave(t.Context()))
	handed, _ := f.b.got(theirs)
	assert.Equal(t, uint64(7), handed.Current, "the old process's count went back to b")
}

// TestKeeperSettlesOwedHits: hits admitted by local decisions go to the
// key's owner each round, with the ring unchanged; while the owner cannot
// take them they stay owed, whole.
func TestKeeperSettlesOwedHits(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	theirs := keyOwnedBy(t, f.ring, "b")
	f.b.mu.Lock()
	f.b.err = errors.New("down")
	f.b.mu.Unlock()
	f.owed.Add(routerT0, bucket.Count{Key: theirs, Start: routerT0, Current: 3})
	f.k.settle(t.Context())
	assert.Equal(t, 3, used(f.owed, theirs), "b is down: still owed")

	f.b.mu.Lock()
	f.b.err = nil
	f.b.mu.Unlock()
	f.owed.Add(routerT0, bucket.Count{Key: theirs, Start: routerT0, Current: 1})
	f.k.settle(t.Context())
	handed, _ := f.b.got(theirs)
	assert.Equal(t, uint64(4), handed.Current, "all 4 owed hits went to b")
	assert.True(t, handed.Start.IsZero(), "owed hits go as counted now, in the owner's frame: %v", handed.Start)
	assert.Zero(t, f.owed.Len(), "nothing owed any more")
	assert.Zero(t, used(f.store, theirs), "nor counted here")
}

// TestKeeperSettleWaitsForHeldKeys: the owed hits of a key Hold holds (a
// check of it given up on may still be counted at the owner) stay owed
// until it lets go; the others go at once.
func TestKeeperSettleWaitsForHeldKeys(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	var held, free string
	for i := 0; held == "" || free == ""; i++ {
		if k := "user-" + strconv.Itoa(i); must(f.ring.Owner(k)) == "b" {
			if held == "" {
				held = k
			} else {
				free = k
			}
		}
	}
	var holding atomic.Bool
	holding.Store(true)
	f.k.hold = func(key string) bool { return key == held && holding.Load() }
	for _, k := range []string{held, free} {
		f.owed.Add(routerT0, bucket.Count{Key: k, Start: routerT0, Current: 2})
	}
	f.k.settle(t.Context())
	h, _ := f.b.got(free)
	assert.Equal(t, uint64(2), h.Current, "the free key's hits went to b")
	h, _ = f.b.got(held)
	assert.Zero(t, h.Current, "the held key's hits went too early")
	assert.Equal(t, 2, used(f.owed, held), "the held key's hits are still owed")

	holding.Store(false)
	f.k.settle(t.Context())
	h, _ = f.b.got(held)
	assert.Equal(t, uint64(2), h.Current, "let go: its hits went to b")
	assert.Zero(t, f.owed.Len())
}

// must returns owner, ignoring ok.
func must(owner string, _ bool) string { return owner }

func TestKeeperLeaveHandsEverythingOver(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	mine := keyOwnedBy(t, f.ring, "a")
	f.store.Take(routerT0, mine, 6, 10)
	require.NoError(t, f.k.Leave(t.Context()))
	handed, _ := f.b.got(mine)
	assert.Equal(t, uint64(6), handed.Current)
	assert.Zero(t, f.store.Len())
	require.NoError(t, f.k.Copies("b", "b1", []bucket.Count{{Key: keyOwnedBy(t, f.ring, "b"), Start: routerT0, Current: 1}}))
	assert.Zero(t, f.k.BackupLen(), "a leaving node takes no more copies")

	alone := newKeeperFixture(t, "a")
	alone.store.Take(routerT0, "k", 1, 10)
	assert.NoError(t, alone.k.Leave(t.Context()), "the last member has nobody to hand to")
}

// stuckMover is a peer whose backups hang until the test ends, whatever
// their deadline: an heir that does not answer.
type stuckMover struct {
	*moverPeer
	release chan struct{}
}

func (p *stuckMover) Backup(context.Context, string, string, time.Duration, []bucket.Count) error {
	<-p.release
	return errors.New("too late")
}

// keyWithHeir returns a key that rg gives to owner and heirs, rg without
// owner, gives to heir.
func keyWithHeir(t *testing.T, rg *ring.Ring, owner, heir string) string {
	t.Helper()
	without := ring.New()
	without.Set(slices.DeleteFunc(rg.Members(), func(m string) bool { return m == owner }))
	for i := range 100_000 {
		k := "user-" + strconv.Itoa(i)
		if must(rg.Owner(k)) == owner && must(without.Owner(k)) == heir {
			return k
		}
	}
	require.FailNow(t, "no key found")
	return ""
}

// TestKeeperAStuckHeirHoldsBackNoOther: each heir has its own queue of
// backups, so one that does not answer delays no other: a healthy heir
// gets every round's copies while the stuck one's first call still hangs.
func TestKeeperAStuckHeirHoldsBackNoOther(t *testing.T) {
	rg := ring.New()
	rg.Set([]string{"a", "b", "c"})
	store := bucket.New(bucket.Config{Window: routerWindow, TrackChanges: true})
	b := &stuckMover{moverPeer: newMoverPeer(), release: make(chan struct{})}
	c := newMoverPeer()
	k := New(Config{Self: "a", Ring: rg, Store: store, Peers: peerMap{"b": b, "c": c},
		BackupInterval: 5 * time.Millisecond})
	k.Members(t.Context(), nil, nil)
	toB, toC := keyWithHeir(t, rg, "a", "b"), keyWithHeir(t, rg, "a", "c")

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	defer func() { close(b.release); cancel(); <-done }()

	for n := range uint64(5) {
		store.Take(routerT0, toB, 1, 100)
		store.Take(routerT0, toC, 1, 100)
		require.Eventually(t, func() bool { _, got := c.got(toC); return got.Current == n+1 },
			5*time.Second, time.Millisecond, "round %d's copy did not reach the healthy heir", n)
	}
}

// TestKeeperDropsCopiesOfKeysThatMoved: when a key moves away from a
// member, the copy this node holds of the member's count is stale (the
// count went with the key), so it is dropped, and refused if it comes
// again: if the member fails later, the stale copy must not be added to
// the key's new owner's count.
func TestKeeperDropsCopiesOfKeysThatMoved(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	c := newMoverPeer()
	f.k.peers = peerMap{"b": f.b, "c": c}
	bigger := ring.New()
	bigger.Set([]string{"a", "b", "c"})
	moving, staying := "", ""
	for i := 0; moving == "" || staying == ""; i++ {
		k := "user-" + strconv.Itoa(i)
		if must(f.ring.Owner(k)) != "b" {
			continue
		}
		switch must(bigger.Owner(k)) {
		case "c":
			moving = k
		case "b":
			staying = k
		}
	}
	require.NoError(t, f.k.Copies("b", "b1", []bucket.Count{
		{Key: moving, Start: routerT0, Current: 9}, {Key: staying, Start: routerT0, Current: 2}}))
	require.Equal(t, 2, f.k.CopiesOf("b"))

	f.ring.Set(bigger.Members()) // c joins; moving is c's now, with b's count handed to it
	f.k.Members(t.Context(), nil, nil)
	assert.Equal(t, 1, f.k.CopiesOf("b"), "the moved key's copy is dropped")
	require.NoError(t, f.k.Copies("b", "b1", []bucket.Count{{Key: moving, Start: routerT0, Current: 9}}))
	assert.Equal(t, 1, f.k.CopiesOf("b"), "b's ring was behind: a copy of a key it no longer owns is not kept")

	f.ring.Set([]string{"a", "c"}) // b fails
	f.k.Members(t.Context(), []string{"b"}, nil)
	handed, _ := c.got(moving)
	assert.Zero(t, handed.Current, "c's count of the moved key is not added to")
	assert.Zero(t, used(f.store, moving))
	if must(f.ring.Owner(staying)) == "a" {
		assert.Equal(t, 2, used(f.store, staying), "the key that stayed is restored here")
	} else {
		h, _ := c.got(staying)
		assert.Equal(t, uint64(2), h.Current, "the key that stayed is restored at c")
	}
}

// TestKeeperTakesCopiesOnlyFromMembers: a name that is not in the ring
// cannot make this node keep copies (without a cluster key anyone who
// reaches the port could grow the table without bound), and copies of
// members that are gone are dropped.
func TestKeeperTakesCopiesOnlyFromMembers(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	for i := range 100 {
		err := f.k.Copies("stranger-"+strconv.Itoa(i), "x", []bucket.Count{{Key: "k", Start: routerT0, Current: 1}})
		require.ErrorIs(t, err, ErrNotMember)
	}
	assert.Zero(t, f.k.BackupLen())
}

// TestKeeperKeepsALeaversCopiesUntilItsHandOffLands: the copies of a
// member that leaves are counted at once for the keys this node owns now,
// so the new owner does not start from nothing while the hand-off is on its
// way; the hand-off then adds only what each copy missed, and a key whose
// hand-off never comes keeps its copy's count, none of it twice. The copies
// of keys another member owns now wait for their hand-off, and are
// restored after leaveGrace if it does not come.
func TestKeeperKeepsALeaversCopiesUntilItsHandOffLands(t *testing.T) {
	f := newKeeperFixture(t, "a", "b", "c")
	c := newMoverPeer()
	f.k.peers = peerMap{"b": f.b, "c": c}
	now := routerT0
	f.k.clock = func() time.Time { return now }
	without := ring.New()
	without.Set([]string{"a", "c"})
	var handed, lost, elsewhere string
	for i := 0; handed == "" || lost == "" || elsewhere == ""; i++ {
		k := "user-" + strconv.Itoa(i)
		if must(f.ring.Owner(k)) != "b" {
			continue
		}
		switch {
		case must(without.Owner(k)) == "c":
			elsewhere = k
		case handed == "":
			handed = k
		case lost == "":
			lost = k
		}
	}
	require.NoError(t, f.k.Copies("b", "b1", []bucket.Count{
		{Key: handed, Start: routerT0, Current: 5}, {Key: lost, Start: routerT0, Current: 7},
		{Key: elsewhere, Start: routerT0, Current: 3}}))

	f.ring.Set([]string{"a", "c"}) // b leaves
	f.k.Members(t.Context(), nil, []string{"b"})
	assert.Equal(t, 5, used(f.store, handed), "counted from the copy at once")
	assert.Equal(t, 7, used(f.store, lost))
	assert.Equal(t, 1, f.k.BackupLen(), "c's key's copy waits for b's hand-off to c")
	f.k.Handed("b", []bucket.Count{{Key: handed, Start: routerT0, Current: 6}})
	assert.Equal(t, 6, used(f.store, handed), "the hand-off adds the one hit the copy missed")

	now = now.Add(leaveGrace)
	f.k.expireLeavers(t.Context())
	assert.Equal(t, 7, used(f.store, lost), "no hand-off came: the copy's count, once")
	assert.Equal(t, 6, used(f.store, handed), "not twice")
	h, _ := c.got(elsewhere)
	assert.Equal(t, uint64(3), h.Current, "the other key's copy restored at its owner")
	assert.Zero(t, f.k.BackupLen())
	f.k.Handed("b", []bucket.Count{{Key: lost, Start: routerT0, Current: 2}})
	assert.Equal(t, 9, used(f.store, lost), "a hand-off later than leaveGrace is added whole: refused early, never admitted past the limit")
}
