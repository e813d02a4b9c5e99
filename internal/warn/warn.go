// Package warn lets a warning about one thing through once per Every and
// counts the ones held back, so that a peer that is down does not flood
// the log: the Router's warnings and the Keeper's use it.
package warn

import (
	"sync/atomic"
	"time"
)

// Every is the least time between two warnings a Gate lets through.
const Every = time.Second

// Gate lets one warning through per Every and counts the rest. It
// is safe for concurrent use; the zero value lets the first one through.
type Gate struct {
	last       atomic.Int64 // Unix nanoseconds of the last warning let through; 0: none
	suppressed atomic.Int64 // warnings held back since then
}

// Allow reports whether a warning may be logged at now and, if so, how many
// were held back since the last one.
func (g *Gate) Allow(now time.Time) (bool, int64) {
	n := now.UnixNano()
	last := g.last.Load()
	if (last != 0 && n-last < int64(Every)) || !g.last.CompareAndSwap(last, n) {
		g.suppressed.Add(1)
		return false, 0
	}
	return true, g.suppressed.Swap(0)
}
