package ownership

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
)

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

func (p *moverPeer) Check(context.Context, []Item) ([]Result, error) {
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
	ring        *Ring
	store, owed *bucket.Store
	b           *moverPeer
}

func newKeeperFixture(t *testing.T, members ...string) keeperFixture {
	t.Helper()
	f := keeperFixture{ring: NewRing(), store: bucket.New(bucket.Config{Window: routerWindow, TrackChanges: true}),
		owed: bucket.New(bucket.Config{Window: routerWindow}), b: newMoverPeer()}
	f.ring.Set(members)
	f.k = NewKeeper(KeeperConfig{Self: "a", Boot: "boot-a", Ring: f.ring, Store: f.store, Owed: f.owed, Peers: peerMap{"b": f.b},
		Clock: func() time.Time { return routerT0 }})
	f.k.Members(t.Context(), nil, nil)
	return f
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
		f.k.backUp(t.Context())
		assert.Equal(t, 1, logs.count("WARN could not move counts to peer"), "backup %d", i)
		now = now.Add(99 * time.Millisecond)
	}
	assert.Equal(t, 9, logs.count("DEBUG could not move counts to peer"))

	now = routerT0.Add(warnEvery)
	f.store.Take(routerT0, mine, 1, 20)
	f.k.backUp(t.Context())
	assert.Equal(t, 2, logs.count("WARN could not move counts to peer"), "a second later, the next")

	f.b.mu.Lock()
	f.b.err = nil
	f.b.mu.Unlock()
	f.k.backUp(t.Context())
	_, copied := f.b.got(mine)
	assert.Equal(t, uint64(11), copied.Current, "every hit reached the copy once b answered")
}

func TestKeeperBacksUpChangedKeysAndRestoresAFailedMembersCopies(t *testing.T) {
	f := newKeeperFixture(t, "a", "b")
	mine := keyOwnedBy(t, f.ring, "a")
	f.store.Take(routerT0, mine, 4, 10)
	f.k.backUp(t.Context())
	_, copied := f.b.got(mine)
	assert.Equal(t, bucket.Count{Key: mine, Start: routerT0, Current: 4}, copied, "b, which would own it without a, has the copy")
	f.k.backUp(t.Context())

	// a holds copies of b's counts; b fails: a takes them over.
	theirs := keyOwnedBy(t, f.ring, "b")
	f.k.Copies("b", "b1", []bucket.Count{{Key: theirs, Start: routerT0, Current: 7}})
	f.k.Copies("c", "c1", []bucket.Count{{Key: "c-key", Start: routerT0, Current: 1}})
	assert.Equal(t, 1, f.k.CopiesOf("b"))
	f.ring.Set([]string{"a"})
	f.k.Members(t.Context(), []string{"b"}, []string{"c"})
	assert.Equal(t, 7, used(f.store, theirs), "b's count, restored")
	assert.Zero(t, f.k.BackupLen(), "the failed member's copies are used, the leaver's dropped")
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
	f.k.Copies("b", "boot-1", []bucket.Count{{Key: theirs, Start: routerT0, Current: 7}, {Key: other, Start: routerT0, Current: 3}})
	f.k.Copies("b", "boot-1", []bucket.Count{{Key: theirs, Start: routerT0, Current: 8}})
	f.k.Copies("b", "", []bucket.Count{{Key: theirs, Start: routerT0, Current: 8}}) // a sender without boot ids changes nothing
	handed, _ := f.b.got(theirs)
	assert.Zero(t, handed, "the same process: nothing goes back")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); f.k.Run(ctx) }()
	f.k.Copies("b", "boot-2", []bucket.Count{{Key: theirs, Start: routerT0, Current: 1}})
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
	f.k.Copies("b", "boot-1", []bucket.Count{{Key: theirs, Start: routerT0, Current: 7}})
	f.k.Copies("b", "boot-2", nil) // b restarted; Run is not running
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
	assert.Zero(t, f.owed.Len(), "nothing owed any more")
	assert.Zero(t, used(f.store, theirs), "nor counted here")
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
	f.k.Copies("b", "b1", []bucket.Count{{Key: "x", Start: routerT0, Current: 1}})
	assert.Zero(t, f.k.BackupLen(), "a leaving node takes no more copies")

	alone := newKeeperFixture(t, "a")
	alone.store.Take(routerT0, "k", 1, 10)
	assert.NoError(t, alone.k.Leave(t.Context()), "the last member has nobody to hand to")
}
