package handoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/internal/warn"
	"github.com/tierlimit/tierlimit/ownership"
	"github.com/tierlimit/tierlimit/ring"
)

// Mover is a peer that can take counts as well as checks; package peer's
// Client is one. The Keeper calls it from its own goroutines, never from
// the request path.
type Mover interface {
	// Handoff gives the peer counts of keys it owns now, to add to its own.
	Handoff(ctx context.Context, from string, window time.Duration, counts []bucket.Count) error
	// Backup gives the peer copies of the counts of from, whose process
	// has boot id boot, each to replace the copy it holds of that key.
	Backup(ctx context.Context, from, boot string, window time.Duration, counts []bucket.Count) error
}

// Observer receives the Keeper's events for metrics. Its methods are
// called from the Keeper's goroutines and must not block.
type Observer interface {
	// Moved reports n counts sent to a peer: kind is "handoff" or "backup",
	// err what the call returned.
	Moved(kind string, n int, err error)
	// Restored reports n counts taken over from the backups of a member
	// that failed.
	Restored(n int)
}

// Default values for Config fields left at zero.
const (
	DefaultBackupInterval = 100 * time.Millisecond
	defaultMoveTimeout    = 2 * time.Second
)

// Config configures a Keeper. Ring, Store and Peers are required.
type Config struct {
	// Self is this node's member name.
	Self string
	// Ring is the cluster's ring, the one the Router routes by.
	Ring *ring.Ring
	// Store holds the counts of the keys this node owns; made with
	// TrackChanges, so that the Keeper can back them up.
	Store *bucket.Store
	// Owed, if not nil, is the Router's store of hits admitted by local
	// decisions while their owner could not be reached (RouterConfig.Owed).
	// Every BackupInterval, and on every change of members, they go to the
	// keys' owners, which add them to their counts: the hits admitted
	// meanwhile count against the limit from then on, whether or not the
	// ring moved. What cannot be sent waits for the next round.
	Owed *bucket.Store
	// Hold, if not nil, reports the keys whose owed hits must wait for
	// the next round: a check of theirs given up on may still be counted
	// at the owner, and its answer settle a hit owed here
	// (ownership.Router.Awaiting).
	Hold func(key string) bool
	// Peers looks up the peers; their Peer must also be a Mover.
	Peers forward.PeerSource
	// BackupInterval is how often the counts that changed are sent to the
	// node that would own them if this one failed. Default 100ms.
	BackupInterval time.Duration
	// MaxBackupKeys bounds the copies kept for each other member. Default
	// bucket.DefaultMaxKeys.
	MaxBackupKeys int
	// Boot is this process's boot id, sent with every backup, so that the
	// receiver can tell when this member restarted (see Keeper). Empty
	// sends none: a restart faster than failure detection then goes
	// unnoticed, and the restarted member's keys start from zero.
	Boot string
	// Clock tells the time. Default time.Now.
	Clock func() time.Time
	// Heard, if not nil, is told of every member that took a backup or a
	// hand-off, and when: contact with it (Router.Heard).
	Heard func(member string, at time.Time)
	// Imports, if not nil, is told of every hand-off that lands.
	Imports *ownership.Imports
	// Logger receives failures at Warn. Nil discards.
	Logger *slog.Logger
	// Observer receives events for metrics. Nil means none.
	Observer Observer
}

// Keeper keeps each key's count with its owner as the members change, and a
// copy of it in case the owner fails:
//
//   - Hand-off. When members change, every key of Store that another member
//     owns now is sent to it and dropped here; the receiver adds it to what
//     it counted itself since the change (bucket.Store.Add). A count is in
//     one store at a time, so a hit is never lost nor counted twice; what
//     the move costs is the hits the new owner admits before the count
//     arrives, which it decides on its own count alone.
//   - Leave. A node that leaves hands every key to the member that owns it
//     without this one. The member holding its copies keeps them until the
//     hand-off brings each key's count, and restores the rest from the
//     copies after leaveGrace, as for a member that failed: a hand-off that
//     fails loses nothing but what a backup round would.
//   - Backup. Every BackupInterval, the keys counted since the last round
//     are sent to the member that would own them if this one failed (the
//     owner in the ring without this node), which keeps the latest copy of
//     each. Each heir has its own queue, sent by its own goroutine, so an
//     heir that does not answer delays no other. When a member fails, the
//     node holding its copies adds each to the count of the key's new
//     owner: itself, usually, or the member the key went to. The hits
//     counted after the last round sent are lost: at most one
//     BackupInterval's worth. A copy of a key that moved away from the
//     member that sent it is dropped, since the count went with the key,
//     and copies are taken only from members of the ring.
//   - Owed. Every BackupInterval, and on every change of members, the hits
//     that local decisions admitted while an owner could not be reached go
//     to the keys' owners, which add them to their counts; what cannot be
//     sent stays owed.
//   - Restart. Backups carry the sender's boot id, random for each start of
//     its process. A member that crashes and is restarted under its name
//     faster than failure detection is never seen to fail, and owns its keys
//     again with nothing counted; the first backup from its new process
//     shows the new boot id, and the copies of the old one go back to the
//     keys' owners, the restarted member itself usually, to be added to what
//     it counted since. What it admits before then is the cost, as for a
//     hand-off.
//
// A Keeper is safe for concurrent use. Run runs the backups; the other
// methods are called by the member machinery and by the peer server.
type Keeper struct {
	self     string
	ring     *ring.Ring
	store    *bucket.Store
	owed     *bucket.Store // Config.Owed; may be nil
	hold     func(key string) bool
	peers    forward.PeerSource
	interval time.Duration
	maxKeys  int
	clock    func() time.Time
	log      *slog.Logger
	obs      Observer
	heard    func(member string, at time.Time)
	imports  *ownership.Imports

	// heirs is who owns each key if this node fails: the ring without
	// it.
	heirs *ring.Ring

	// moveMu serialises Members and Leave.
	moveMu sync.Mutex

	// boot is Config.Boot, sent with every backup.
	boot string
	// restore wakes Run to send the copies in orphans to their owners.
	restore chan struct{}

	// mu guards backups, leaving, orphans and closed.
	mu      sync.Mutex
	backups map[string]*copies // copies of other members' counts, by member
	leaving map[string]*leaver // copies of members that left, until their hand-off lands
	orphans []*bucket.Store    // copies of restarted members' old processes
	closed  bool               // leaving: no more copies taken

	// queuesMu guards queues, one backup queue per heir, so that an heir
	// that does not answer holds back no other.
	queuesMu sync.Mutex
	queues   map[string]*heirQueue
	// flushes waits for the goroutines sending the queues.
	flushes sync.WaitGroup

	// warns gate the Warn logs about each peer, warn.Every apart as the
	// Router's are: a peer that crashed is sent backups every
	// BackupInterval until failure detection drops it, seconds later.
	warnMu sync.Mutex
	warns  map[string]*warn.Gate
}

// New returns a Keeper. It panics if Ring, Store or Peers is nil.
func New(cfg Config) *Keeper {
	switch {
	case cfg.Ring == nil:
		panic("handoff: Config.Ring is nil")
	case cfg.Store == nil:
		panic("handoff: Config.Store is nil")
	case cfg.Peers == nil:
		panic("handoff: Config.Peers is nil")
	}
	if cfg.BackupInterval <= 0 {
		cfg.BackupInterval = DefaultBackupInterval
	}
	if cfg.MaxBackupKeys <= 0 {
		cfg.MaxBackupKeys = bucket.DefaultMaxKeys
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	return &Keeper{
		self: cfg.Self, ring: cfg.Ring, store: cfg.Store, owed: cfg.Owed, hold: cfg.Hold, peers: cfg.Peers,
		interval: cfg.BackupInterval, maxKeys: cfg.MaxBackupKeys, clock: cfg.Clock,
		log: cfg.Logger, obs: cfg.Observer, heard: cfg.Heard, imports: cfg.Imports,
		heirs:   ring.New(),
		boot:    cfg.Boot,
		restore: make(chan struct{}, 1),
		backups: make(map[string]*copies),
		leaving: make(map[string]*leaver),
		queues:  make(map[string]*heirQueue),
		warns:   make(map[string]*warn.Gate),
	}
}

// Members reacts to a change of members, once Ring holds the new ones:
// the copies of each member in failed are added to the counts of their
// keys' new owners; those of each member in left are kept until its
// hand-off brings the counts, or restored as a failed member's after
// leaveGrace (expireLeavers); the copies of keys that moved away from the
// member that sent them are dropped (the count went with the key); the
// hits owed by local decisions go to their keys' owners in the new ring,
// the keys this node no longer owns go to their owners, and every key is
// backed up afresh, since the members that hold the copies changed. It
// returns once the counts are sent; ctx bounds the wait.
func (k *Keeper) Members(ctx context.Context, failed, left []string) {
	k.moveMu.Lock()
	defer k.moveMu.Unlock()
	members := k.ring.Members()
	heirs := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == k.self })
	k.heirs.Set(heirs)
	k.dropQueues(heirs)
	now := k.clock()
	k.warnMu.Lock()
	for _, name := range slices.Concat(failed, left) {
		delete(k.warns, name)
	}
	k.warnMu.Unlock()

	restore := k.regroup(now, failed, left, members)
	if len(restore) > 0 {
		k.obs.Restored(len(restore))
		k.log.Info("taking over the counts of failed members", "members", failed, "keys", len(restore))
	}
	if k.owed != nil {
		// Hits admitted here while an owner was unreachable are real hits:
		// they join the count of the key's owner in the new ring.
		restore = append(restore, unframed(k.owed.Drain(func(string) bool { return false }))...)
	}
	// One send for both; what it cannot send stays in the store, and the
	// hand-off below tries it once more with the rest.
	k.place(ctx, now, restore, k.ring, k.store)
	k.handOff(ctx, now, k.ring)
	k.announce(ctx)
	k.store.MarkAllChanged()
}

// announce tells every other member that this node has handed over what
// the latest change of members moved away from it: an empty hand-off, sent
// after the counts, so that a member importing keys from this one stops
// holding them to their share at once (Imports), also for keys that had no
// count to move.
func (k *Keeper) announce(ctx context.Context) {
	var wg sync.WaitGroup
	window := k.store.Window()
	for _, m := range k.ring.Members() {
		if m == k.self {
			continue
		}
		p, ok := k.peers.Peer(m)
		mv, isMover := p.(Mover)
		if !ok || !isMover {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, defaultMoveTimeout)
			defer cancel()
			if err := mv.Handoff(cctx, k.self, window, nil); err == nil && k.heard != nil {
				k.heard(m, k.clock())
			}
		})
	}
	wg.Wait()
}

// Tidy sends the keys this node does not own to their owners: checks that
// peers sent here while their ring was behind were counted here. Call it a
// little after a change of members.
func (k *Keeper) Tidy(ctx context.Context) {
	k.moveMu.Lock()
	defer k.moveMu.Unlock()
	_ = k.handOff(ctx, k.clock(), k.ring)
}

// Leave hands every key to the member that owns it without this node, and
// stops taking copies of other members' counts. Call it once the other
// members no longer route to this node, and again just before it stops, for
// the checks that reached it in between. It returns an error if some counts
// could not be handed over.
func (k *Keeper) Leave(ctx context.Context) error {
	k.moveMu.Lock()
	defer k.moveMu.Unlock()
	k.mu.Lock()
	k.closed = true
	clear(k.backups)
	k.mu.Unlock()
	members := slices.DeleteFunc(k.ring.Members(), func(m string) bool { return m == k.self })
	k.heirs.Set(members)
	if len(members) == 0 {
		return nil // the last member: nobody to hand the counts to
	}
	now := k.clock()
	// Copies not yet given back to a restarted member, and those of a
	// member that left before this one and whose hand-off has not landed.
	if counts := slices.Concat(k.takeOrphans(), k.takeLeavers(time.Time{})); len(counts) > 0 {
		k.place(ctx, now, counts, k.heirs, k.store)
	}
	return k.handOff(ctx, now, k.heirs)
}

// handOff sends the keys of the store that rg gives to another member to
// that member. Counts that cannot be sent stay here, to go with the next
// hand-off.
func (k *Keeper) handOff(ctx context.Context, now time.Time, rg *ring.Ring) error {
	moving := k.store.Drain(func(key string) bool {
		owner, ok := rg.Owner(key)
		return !ok || owner == k.self
	})
	if len(moving) == 0 {
		return nil
	}
	unsent := k.send(ctx, rg, moving, "handoff")
	for _, c := range unsent {
		k.store.Add(now, c)
	}
	if len(unsent) > 0 {
		return fmt.Errorf("hand off %d of %d counts: peers unreachable", len(unsent), len(moving))
	}
	k.log.Info("handed counts to their new owners", "keys", len(moving))
	return nil
}

// place adds counts to the store for the keys rg gives this node, and
// sends the others to their owners; what cannot be sent is added to keep,
// to go with a later move.
func (k *Keeper) place(ctx context.Context, now time.Time, counts []bucket.Count, rg *ring.Ring, keep *bucket.Store) {
	var away []bucket.Count
	for _, c := range counts {
		if owner, ok := rg.Owner(c.Key); !ok || owner == k.self {
			k.store.Add(now, c)
		} else {
			away = append(away, c)
		}
	}
	for _, c := range k.send(ctx, rg, away, "handoff") {
		keep.Add(now, c)
	}
}

// send sends each count to its key's owner in rg, in batches of at most
// forward.MaxCheckItems, as a hand-off or a backup, and returns the counts it could
// not send.
func (k *Keeper) send(ctx context.Context, rg *ring.Ring, counts []bucket.Count, kind string) []bucket.Count {
	byOwner := make(map[string][]bucket.Count)
	for _, c := range counts {
		if owner, ok := rg.Owner(c.Key); ok && owner != k.self {
			byOwner[owner] = append(byOwner[owner], c)
		}
	}
	var (
		mu     sync.Mutex
		unsent []bucket.Count
		wg     sync.WaitGroup
	)
	window := k.store.Window()
	for owner, cs := range byOwner {
		wg.Go(func() {
			failed := k.sendTo(ctx, owner, window, cs, kind)
			mu.Lock()
			unsent = append(unsent, failed...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return unsent
}

// sendTo sends counts to the member called owner and returns those it could
// not send.
func (k *Keeper) sendTo(ctx context.Context, owner string, window time.Duration, counts []bucket.Count, kind string) []bucket.Count {
	p, ok := k.peers.Peer(owner)
	m, isMover := p.(Mover)
	if !ok || !isMover {
		k.obs.Moved(kind, len(counts), ErrNoMover)
		return counts
	}
	for start := 0; start < len(counts); start += forward.MaxCheckItems {
		batch := counts[start:min(start+forward.MaxCheckItems, len(counts))]
		cctx, cancel := context.WithTimeout(ctx, defaultMoveTimeout)
		var err error
		if kind == "handoff" {
			err = m.Handoff(cctx, k.self, window, batch)
		} else {
			err = m.Backup(cctx, k.self, k.boot, window, batch)
		}
		cancel()
		k.obs.Moved(kind, len(batch), err)
		if err == nil && k.heard != nil {
			k.heard(owner, k.clock())
		}
		if err != nil {
			level := slog.LevelDebug
			warn, suppressed := k.warnGate(owner).Allow(k.clock())
			if warn {
				level = slog.LevelWarn
			}
			k.log.Log(ctx, level, "could not move counts to peer", "peer", owner, "kind", kind,
				"keys", len(counts)-start, "suppressed", suppressed, "err", err)
			return counts[start:]
		}
	}
	return nil
}

// warnGate returns the gate of the Warn logs about peer.
func (k *Keeper) warnGate(peer string) *warn.Gate {
	k.warnMu.Lock()
	defer k.warnMu.Unlock()
	g := k.warns[peer]
	if g == nil {
		g = &warn.Gate{}
		k.warns[peer] = g
	}
	return g
}

// ErrNoMover is the error of a move to a member the Keeper has no Mover
// for (not known yet, or too old to take counts).
var ErrNoMover = errors.New("handoff: no peer to move counts to")

// Run sends the backups every BackupInterval, and the copies of
// restarted members' old processes and of leavers whose hand-off did not
// land to their keys' owners, until ctx ends. It returns once the backups
// in flight have ended.
func (k *Keeper) Run(ctx context.Context) {
	t := time.NewTicker(k.interval)
	defer t.Stop()
	defer k.flushes.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.settle(ctx)
			k.backUp(ctx)
			k.expireLeavers(ctx)
		case <-k.restore:
			k.restoreOrphans(ctx)
		}
	}
}

// settle hands the hits admitted here by local decisions to the keys'
// owners, but those of keys Config.Hold holds; what cannot be sent stays
// owed, for the next round.
func (k *Keeper) settle(ctx context.Context) {
	if k.owed == nil || k.owed.Len() == 0 {
		return
	}
	k.moveMu.Lock()
	defer k.moveMu.Unlock()
	keep := func(string) bool { return false }
	if k.hold != nil {
		keep = k.hold
	}
	if counts := unframed(k.owed.Drain(keep)); len(counts) > 0 {
		k.place(ctx, k.clock(), counts, k.ring, k.owed)
	}
}

// unframed returns counts of owed hits as hits counted now, with a zero
// Start: the owner adds them to its key's current window, in its own
// frame. Owed hits are at most a round or two old, and the frame they were
// counted in here is this node's guess at the owner's: merged as they
// are, a guess later than the owner's frame would move the owner's window
// on (bucket.Store.Add), and with it the window every lease of the key was
// counted in, so that the leases' give-backs would take nothing back.
func unframed(counts []bucket.Count) []bucket.Count {
	for i := range counts {
		counts[i].Current += counts[i].Previous
		counts[i].Previous = 0
		counts[i].Start = time.Time{}
	}
	return counts
}

// nopObserver is the Observer used when none is given.
type nopObserver struct{}

func (nopObserver) Moved(string, int, error) {}
func (nopObserver) Restored(int)             {}
