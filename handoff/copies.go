package handoff

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
)

// This file is the side of a Keeper that holds other members' copies: what
// it keeps, what it drops, and when it adds a copy to a key's count.

// ErrNotMember is the error of Copies from a name that is not a member of
// this node's ring.
var ErrNotMember = errors.New("handoff: not a member")

// leaveGrace is how long the copies of a member that left are kept for its
// hand-off to bring the counts: the leaver sends them when it has left the
// ring, within a few move timeouts (defaultMoveTimeout a batch). The copies
// of keys this node owns now are counted at once (see Keeper.regroup), and
// the hand-off adds only what the copy missed; the others wait, and those
// whose count has not come by then are restored from the copies, as for a
// member that failed: a hand-off that lands later still is added too, and
// those hits count twice (a key refused early, never one admitted past its
// limit).
const leaveGrace = 3 * defaultMoveTimeout

// copies are the copies of one member's counts, sent by its process with
// boot id boot.
type copies struct {
	boot  string
	store *bucket.Store
}

// leaver is the copies of a member that left, kept since it did until its
// hand-off lands: those of keys other members own now (store), and those
// already added to this node's count (counted), so that the hand-off adds
// only what each copy missed.
type leaver struct {
	store   *bucket.Store
	counted map[string]bucket.Count
	since   time.Time
}

// Copies keeps counts as the copies of the member called from, whose
// process has boot id boot, each replacing the copy held for its key. The
// peer server calls it. Copies held under another boot id are those of the
// member's process before it restarted: Run sends them to their keys'
// owners (see Keeper). It refuses a name that is not a member of the ring
// (ErrNotMember), so no sender can grow the copies without bound, and it
// keeps only copies of keys that from owns: one that the ring has moved
// away from it is stale, its count gone with the key. It does nothing once
// this node leaves.
func (k *Keeper) Copies(from, boot string, counts []bucket.Count) error {
	if !slices.Contains(k.ring.Members(), from) {
		return fmt.Errorf("%w: %q", ErrNotMember, from)
	}
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	b := k.backups[from]
	restarted := b != nil && boot != "" && b.boot != "" && b.boot != boot
	if restarted {
		k.orphans = append(k.orphans, b.store)
	}
	if b == nil || restarted {
		b = &copies{boot: boot, store: bucket.New(bucket.Config{Window: k.store.Window(), MaxKeys: k.maxKeys})}
		k.backups[from] = b
	}
	k.mu.Unlock()
	if restarted {
		k.log.Info("member restarted: its counts from before go back to their owners", "member", from)
		select {
		case k.restore <- struct{}{}:
		default: // Run is woken already
		}
	}
	now := k.clock()
	for _, c := range counts {
		if owner, ok := k.ring.Owner(c.Key); ok && owner == from {
			b.store.Put(now, c)
		}
	}
	return nil
}

// Handed adds counts that the member called from hands to this node, which
// owns their keys now. The peer server calls it. The copies held of from's
// counts of those keys are dropped: the counts themselves are here now.
func (k *Keeper) Handed(from string, counts []bucket.Count) {
	now := k.clock()
	handed := make(map[string]bool, len(counts))
	k.mu.Lock()
	lv := k.leaving[from]
	for _, c := range counts {
		if lv != nil {
			if cp, ok := lv.counted[c.Key]; ok && !c.Start.IsZero() {
				// The copy was counted when the member left: add what it
				// missed.
				c = c.Minus(cp, k.store.Window())
				delete(lv.counted, c.Key)
			}
		}
		k.store.Add(now, c)
		handed[c.Key] = true
	}
	var stores []*bucket.Store
	if lv != nil {
		stores = append(stores, lv.store)
	}
	if b := k.backups[from]; b != nil {
		stores = append(stores, b.store)
	}
	k.mu.Unlock()
	for _, s := range stores {
		if len(handed) > 0 {
			s.Drain(func(key string) bool { return !handed[key] })
		}
	}
	k.imports.Arrived(from, now)
	k.log.Debug("counts handed over", "from", from, "keys", len(counts))
}

// regroup sorts the copies held as members change, under the ring's new
// members: it returns the copies of the members in failed, to be added to
// their keys' counts; keeps those of the members in left until their
// hand-off lands; and drops the copies of members no longer in the ring
// and those of keys the ring moved away from the member that sent them.
func (k *Keeper) regroup(now time.Time, failed, left, members []string) []bucket.Count {
	k.mu.Lock()
	defer k.mu.Unlock()
	restore := k.takeCopies(failed)
	for _, name := range left {
		b := k.backups[name]
		if b == nil {
			continue
		}
		delete(k.backups, name)
		// The keys this node owns now start from their copies at once, as
		// for a member that failed, instead of from nothing until the
		// hand-off lands: what a new owner admits meanwhile is then bounded
		// by what the copy missed (one backup interval), not by the time
		// the hand-off takes.
		lv := &leaver{store: b.store, counted: make(map[string]bucket.Count), since: now}
		for _, c := range b.store.Drain(func(key string) bool {
			owner, ok := k.ring.Owner(key)
			return !ok || owner != k.self
		}) {
			k.store.Add(now, c)
			lv.counted[c.Key] = c
		}
		k.leaving[name] = lv
	}
	for name, b := range k.backups {
		if !slices.Contains(members, name) {
			delete(k.backups, name)
			continue
		}
		b.store.Drain(func(key string) bool {
			owner, ok := k.ring.Owner(key)
			return ok && owner == name
		})
	}
	return restore
}

// takeCopies removes the copies held of the members in failed, and those
// of their hand-offs not landed yet, and returns them. k.mu must be held.
func (k *Keeper) takeCopies(failed []string) []bucket.Count {
	var out []bucket.Count
	all := func(string) bool { return false }
	for _, name := range failed {
		if b := k.backups[name]; b != nil {
			out = append(out, b.store.Drain(all)...)
			delete(k.backups, name)
		}
		if lv := k.leaving[name]; lv != nil {
			out = append(out, lv.store.Drain(all)...)
			delete(k.leaving, name)
		}
	}
	return out
}

// TakeOver adds to this node's counts, at once and without I/O, the copies
// it holds of the members in failed and the hits its local decisions owe
// their keys. Call it before the ring drops those members: a key this node
// is about to own is then never decided here from a count without its
// copy, however long Members (which runs on a goroutine of its own once
// the ring moved, and may wait on the network) takes to get to it. Members
// sends the keys the new ring gives other members on to them.
func (k *Keeper) TakeOver(failed []string) {
	if len(failed) == 0 {
		return
	}
	now := k.clock()
	k.mu.Lock()
	counts := k.takeCopies(failed)
	k.mu.Unlock()
	if len(counts) > 0 {
		k.obs.Restored(len(counts))
		k.log.Info("taking over the counts of failed members", "members", failed, "keys", len(counts))
	}
	if k.owed != nil {
		counts = append(counts, unframed(k.owed.Drain(func(key string) bool {
			owner, ok := k.ring.Owner(key)
			return !ok || !slices.Contains(failed, owner)
		}))...)
	}
	for _, c := range counts {
		k.store.Add(now, c)
	}
}

// expireLeavers restores the copies of members that left more than
// leaveGrace ago and whose hand-off has not brought the counts.
func (k *Keeper) expireLeavers(ctx context.Context) {
	now := k.clock()
	counts := k.takeLeavers(now.Add(-leaveGrace))
	if len(counts) == 0 {
		return
	}
	k.obs.Restored(len(counts))
	k.log.Warn("a member that left did not hand all its counts over: taking them from the copies", "keys", len(counts))
	k.moveMu.Lock()
	defer k.moveMu.Unlock()
	k.place(ctx, now, counts, k.ring, k.store)
}

// takeLeavers removes the copies of members that left no later than
// before (all of them for the zero time) and returns their counts.
func (k *Keeper) takeLeavers(before time.Time) []bucket.Count {
	k.mu.Lock()
	defer k.mu.Unlock()
	var counts []bucket.Count
	for name, lv := range k.leaving {
		if before.IsZero() || !lv.since.After(before) {
			counts = append(counts, lv.store.Drain(func(string) bool { return false })...)
			delete(k.leaving, name)
		}
	}
	return counts
}

// restoreOrphans sends the copies of restarted members' old processes to
// their keys' owners.
func (k *Keeper) restoreOrphans(ctx context.Context) {
	k.moveMu.Lock()
	defer k.moveMu.Unlock()
	if counts := k.takeOrphans(); len(counts) > 0 {
		k.place(ctx, k.clock(), counts, k.ring, k.store)
	}
}

// takeOrphans empties orphans and returns their counts.
func (k *Keeper) takeOrphans() []bucket.Count {
	k.mu.Lock()
	orphans := k.orphans
	k.orphans = nil
	k.mu.Unlock()
	var counts []bucket.Count
	for _, s := range orphans {
		counts = append(counts, s.Drain(func(string) bool { return false })...)
	}
	if len(counts) > 0 {
		k.obs.Restored(len(counts))
	}
	return counts
}

// BackupLen returns how many copies of other members' counts this node
// holds.
func (k *Keeper) BackupLen() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, b := range k.backups {
		n += b.store.Len()
	}
	for _, lv := range k.leaving {
		n += lv.store.Len()
	}
	return n
}

// CopiesOf returns how many copies of member's counts this node holds.
func (k *Keeper) CopiesOf(member string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	if b := k.backups[member]; b != nil {
		n += b.store.Len()
	}
	if lv := k.leaving[member]; lv != nil {
		n += lv.store.Len()
	}
	return n
}

// Sweep drops copies whose windows have both ended by now.
func (k *Keeper) Sweep(now time.Time) int {
	k.mu.Lock()
	stores := make([]*bucket.Store, 0, len(k.backups)+len(k.leaving))
	for _, b := range k.backups {
		stores = append(stores, b.store)
	}
	for _, lv := range k.leaving {
		stores = append(stores, lv.store)
	}
	k.mu.Unlock()
	n := 0
	for _, b := range stores {
		n += b.Sweep(now)
	}
	return n
}
