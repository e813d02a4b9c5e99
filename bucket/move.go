package bucket

import (
	"time"
)

// Count is one key's counts as they move between stores: from an owner to
// the node that owns the key next (a hand-off), or to the node that keeps a
// copy in case the owner fails (a backup).
type Count struct {
	Key string
	// Start is when the key's current window began.
	Start time.Time
	// Previous and Current are the hits admitted in the window before and
	// in the current one.
	Previous, Current uint64
}

// Minus returns c without the hits of o, an earlier count of the same key
// (a copy of it): what c counted since o, window by window. o's windows are
// matched to c's by their starts, window apart; hits of a window of o that c
// no longer holds are not taken off, and no count goes below zero.
func (c Count) Minus(o Count, window time.Duration) Count {
	switch {
	case c.Start.Equal(o.Start):
		c.Previous -= min(c.Previous, o.Previous)
		c.Current -= min(c.Current, o.Current)
	case c.Start.Equal(o.Start.Add(window)):
		c.Previous -= min(c.Previous, o.Current)
	}
	return c
}

func (e entry) count(key string) Count {
	return Count{Key: key, Start: time.Unix(0, e.start), Previous: e.prev, Current: e.cur}
}

// noteChange remembers that key was counted, if the store tracks changes.
// The set keeps key itself, not a copy: it lives until the next Changed,
// one backup interval, and a copy would cost an allocation on the first hit
// of every key in every interval. sh.mu must be held.
func (sh *shard) noteChange(key string) {
	if sh.changed == nil {
		return
	}
	if _, ok := sh.changed[key]; !ok { // a lookup costs less than a write
		sh.changed[key] = struct{}{}
	}
}

// entryOf returns c as an entry advanced to n. A start after n (the
// sender's clock ahead of this one) is taken as n.
func (s *Store) entryOf(c Count, n int64) entry {
	return s.advance(entry{start: min(c.Start.UnixNano(), n), prev: c.Previous, cur: c.Current}, n)
}

// Add merges c into the store at now: its hits are added to those the store
// holds for c.Key, if any. Windows anchored at different times are merged
// in the frame of the later one, the other's previous and current counts
// going to the previous and current window: that never counts a hit as
// older than it was, so a merged key is never admitted more than either
// count allowed. A count whose windows have both ended is dropped.
//
// A count with a zero Start holds hits counted just now in a frame the
// sender does not know (Current; Previous is taken as current too): they
// are added to the key's current window in this store's frame, which does
// not move.
func (s *Store) Add(now time.Time, c Count) {
	n := now.UnixNano()
	if c.Start.IsZero() {
		s.addNow(n, c.Key, c.Previous+c.Current)
		return
	}
	in := s.entryOf(c, n)
	if in.prev == 0 && in.cur == 0 {
		return
	}
	sh := &s.shards[s.shardOf(c.Key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[c.Key]
	if !ok {
		s.insert(sh, c.Key, in, n)
		return
	}
	e = s.advance(e, n)
	e.start = max(e.start, in.start)
	e.prev += in.prev
	e.cur += in.cur
	sh.m[c.Key] = e
	sh.noteChange(c.Key)
}

// addNow adds hits to key's current window at n, in the store's frame.
func (s *Store) addNow(n int64, key string, hits uint64) {
	if hits == 0 {
		return
	}
	sh := &s.shards[s.shardOf(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[key]
	if !ok {
		s.insert(sh, key, entry{start: n, cur: hits}, n)
		return
	}
	e = s.advance(e, n)
	e.cur += hits
	sh.m[key] = e
	sh.noteChange(key)
}

// Put makes c the counts of c.Key, replacing what the store held for it: a
// backup keeps the owner's latest copy. A count whose windows have both
// ended removes the key.
func (s *Store) Put(now time.Time, c Count) {
	n := now.UnixNano()
	in := s.entryOf(c, n)
	sh := &s.shards[s.shardOf(c.Key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.m[c.Key]
	switch {
	case in.prev == 0 && in.cur == 0:
		if ok {
			delete(sh.m, c.Key)
			s.keys.Add(-1)
		}
	case ok:
		sh.m[c.Key] = in
	default:
		s.insert(sh, c.Key, in, n)
	}
}

// Drain removes every key for which keep reports false and returns their
// counts: the keys the store no longer owns, to hand to their new owner.
// keep is called with a shard's lock held and must not call the Store.
func (s *Store) Drain(keep func(key string) bool) []Count {
	var out []Count
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if !keep(k) {
				out = append(out, e.count(k))
				delete(sh.m, k)
				delete(sh.changed, k)
				s.keys.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// Changed returns the counts of the keys counted (by Take or Add) since the
// last call, and starts remembering afresh. It returns nothing unless the
// store was made with TrackChanges.
func (s *Store) Changed() []Count {
	var out []Count
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k := range sh.changed {
			if e, ok := sh.m[k]; ok {
				out = append(out, e.count(k))
			}
			delete(sh.changed, k)
		}
		sh.mu.Unlock()
	}
	return out
}

// MarkAllChanged makes the next Changed return every key, as after a change
// of backup holder, which must receive them all. It does nothing unless the
// store tracks changes.
func (s *Store) MarkAllChanged() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.changed != nil {
			for k := range sh.m {
				sh.changed[k] = struct{}{}
			}
		}
		sh.mu.Unlock()
	}
}

// MarkChanged makes the next Changed return keys that the store holds, as
// if they had been counted: for copies that could not be sent. It does
// nothing unless the store tracks changes.
func (s *Store) MarkChanged(keys []string) {
	for _, key := range keys {
		sh := &s.shards[s.shardOf(key)]
		sh.mu.Lock()
		if _, ok := sh.m[key]; ok {
			sh.noteChange(key)
		}
		sh.mu.Unlock()
	}
}

// Give takes back up to hits hits counted for key in the window that
// contained start: hits taken ahead of use (a lease) and returned unused.
// The window is the key's current one if start lies in it, the previous
// one if start lies there, and otherwise gone, so Give does nothing; a
// count never goes below zero. It reports how many hits it took back, and
// false if the store holds no count for key (it may be on its way: a
// hand-off, or copies taken over).
func (s *Store) Give(now time.Time, key string, start time.Time, hits int) (int, bool) {
	n, at := now.UnixNano(), start.UnixNano()
	sh := &s.shards[s.shardOf(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[key]
	if !ok {
		return 0, false
	}
	if hits <= 0 {
		return 0, true
	}
	e = s.advance(e, n)
	h := uint64(hits)
	var took uint64
	switch {
	case at >= e.start:
		took = min(h, e.cur)
		e.cur -= took
	case at >= e.start-s.window:
		took = min(h, e.prev)
		e.prev -= took
	}
	sh.m[key] = e
	if took > 0 {
		sh.noteChange(key)
	}
	return int(took), true
}
