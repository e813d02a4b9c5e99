package ownership

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/ring"
)

// ImportFor bounds how long after a change of members a key this node has
// just taken over from a live member is held to its share, while that
// member's hand-off is on its way (see Imports).
const ImportFor = time.Second

// Imports is what a node knows about keys it has just taken over from a
// member that is still alive and will hand their counts over: a join moves
// keys from their owners to the new member, and the ring's bounded loads
// move some between the others. Until the previous owner's hand-off lands
// (any hand-off from it, since it sends every moving key at once) or
// ImportFor has passed, this node does not know how much of such a key's
// limit is spent, so it admits at most the share of the limit one member
// would decide on its own, ceil(limit / members), against its own count
// since the change: a new owner can then admit at most that before the
// moved count arrives, not a whole limit. Keys taken over from a member
// that left or failed start from their copies instead (see Keeper), and
// are not held.
//
// The zero value is not usable; use NewImports. Its methods are safe for
// concurrent use; Limit, on the request path, is an atomic load while
// nothing is being imported.
type Imports struct {
	self string
	cur  atomic.Pointer[importing]
	// arrived holds, by member, when its last hand-off landed (Unix
	// nanoseconds): one that lands just before this node sees the change
	// of members it follows counts.
	arrived sync.Map
}

// importing is one change of members' keys being imported.
type importing struct {
	prev    *ring.Ring      // the members before the change
	stayed  map[string]bool // the members before it that are still members
	members int             // the members after it
	at      time.Time       // the change
}

// NewImports returns the Imports of the member called self.
func NewImports(self string) *Imports { return &Imports{self: self} }

// Moved tells Imports that the ring changed at now from the members prev to
// the members cur. A node that was alone before (it has just joined) takes
// its keys from the members it joined.
func (im *Imports) Moved(prev, cur []string, now time.Time) {
	if im == nil {
		return
	}
	others := func(ms []string) []string {
		return slices.DeleteFunc(slices.Clone(ms), func(m string) bool { return m == im.self })
	}
	before := prev
	if len(others(prev)) == 0 {
		before = others(cur)
	}
	stayed := make(map[string]bool)
	for _, m := range before {
		if m != im.self && slices.Contains(cur, m) {
			stayed[m] = true
		}
	}
	if len(stayed) == 0 {
		im.cur.Store(nil)
		return
	}
	was := ring.New()
	was.Set(before)
	im.cur.Store(&importing{prev: was, stayed: stayed, members: max(1, len(cur)), at: now})
}

// Arrived tells Imports that the member called from handed counts over at
// now (or announced it had none to hand).
func (im *Imports) Arrived(from string, now time.Time) {
	if im == nil {
		return
	}
	im.arrived.Store(from, now.UnixNano())
}

// Importing reports whether, at now, some key this node owns may still be
// held to its share: ImportFor has not passed since the last change of
// members, and a member that stayed has not handed its counts over since.
func (im *Imports) Importing(now time.Time) bool {
	if im == nil {
		return false
	}
	c := im.cur.Load()
	if c == nil || !now.Before(c.at.Add(ImportFor)) {
		return false
	}
	for from := range c.stayed {
		if !im.landed(from, c) {
			return true
		}
	}
	return false
}

// landed reports whether a hand-off from the member called from belongs to
// the change c: one that landed up to ImportFor before this node saw the
// change counts, since the sender may have seen it first.
func (im *Imports) landed(from string, c *importing) bool {
	at, ok := im.arrived.Load(from)
	return ok && at.(int64) >= c.at.Add(-ImportFor).UnixNano()
}

// Limit returns the limit to apply at now to key, which this node owns,
// under limit: limit itself, or, while the key's count is on its way from
// its previous owner, the share ceil(limit / members).
func (im *Imports) Limit(now time.Time, key string, limit int) int {
	if im == nil {
		return limit
	}
	c := im.cur.Load()
	if c == nil || !now.Before(c.at.Add(ImportFor)) {
		return limit
	}
	from, ok := c.prev.Owner(key)
	if !ok || !c.stayed[from] {
		return limit // this node's before, or a leaver's or failed member's, counted from its copy
	}
	if im.landed(from, c) {
		return limit
	}
	return min(limit, localShare(limit, c.members))
}
