package ownership

import (
	"sync/atomic"
	"time"
)

// warnEvery is the least time between two Warn logs about one peer, so a
// dead peer does not flood the log.
const warnEvery = time.Second

// warnGate lets one warning through per warnEvery and counts the rest. It
// is safe for concurrent use; the zero value lets the first one through.
type warnGate struct {
	last       atomic.Int64 // Unix nanoseconds of the last warning let through; 0: none
	suppressed atomic.Int64 // warnings held back since then
}

// allow reports whether a warning may be logged at now and, if so, how many
// were held back since the last one.
func (g *warnGate) allow(now time.Time) (bool, int64) {
	n := now.UnixNano()
	last := g.last.Load()
	if (last != 0 && n-last < int64(warnEvery)) || !g.last.CompareAndSwap(last, n) {
		g.suppressed.Add(1)
		return false, 0
	}
	return true, g.suppressed.Swap(0)
}
