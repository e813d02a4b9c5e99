package health

import (
	"math"
	"time"
)

// DefaultMaxOffset is the max offset a Holder assumes until Merge is given
// one: how far ahead of a node's clock a stamp may be and still count (see
// the package doc). It is CockroachDB's default max clock offset, chosen
// from what the clocks of cloud VMs do: CockroachDB reports offsets that
// stay below 250ms on AWS and GCE and reach 250-500ms on Azure. A narrower
// bound would refuse the writes of nodes whose clocks are only as good as
// their cloud keeps them; a wider one lets a write lose to one made up to
// that long before it on a clock that was ahead. Package cluster and the
// library default their MaxClockOffset to the same value.
const DefaultMaxOffset = 500 * time.Millisecond

// logicalBits is the width of the logical part of a Version.
const logicalBits = 16

// logicalMask selects the logical part of a Version.
const logicalMask = 1<<logicalBits - 1

// maxMilli is the last millisecond a Version can hold, in the year 10889.
const maxMilli = 1<<(64-logicalBits) - 1

// stampAt returns the first Version of the millisecond of t. A time
// before 1970 gives 0 and one past maxMilli gives maxMilli's, so a clock
// that reads garbage never wraps round to a small stamp.
func stampAt(t time.Time) uint64 {
	return uint64(min(max(t.UnixMilli(), 0), maxMilli)) << logicalBits
}

// nextStamp returns the Version of a write at now after prev: now's
// millisecond if it is later than prev, else the tick after prev (which
// moves into the next millisecond once the logical part is full). At the
// last Version there is it stays there rather than wrap to 0.
func nextStamp(prev uint64, now time.Time) uint64 {
	if pt := stampAt(now); pt > prev {
		return pt
	}
	if prev == math.MaxUint64 {
		return prev
	}
	return prev + 1
}

// horizon returns the highest Version that counts at a node whose clock
// reads now: the last tick of the millisecond maxOffset after now. A
// negative maxOffset is taken as none.
func horizon(now time.Time, maxOffset time.Duration) uint64 {
	return stampAt(now.Add(max(maxOffset, 0))) | logicalMask
}
