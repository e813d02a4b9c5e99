package ownership

import (
	"context"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	peerpb "github.com/tierlimit/tierlimit/proto"
)

// Limits on one Check call. A Server refuses a batch or an item beyond them
// with codes.InvalidArgument, so a batcher must keep batches within them.
const (
	// MaxCheckItems is the most items one Check call may carry.
	MaxCheckItems = 10_000
	// MaxKeyBytes is the longest key, in bytes, a Check item may carry.
	MaxKeyBytes = 256
)

// Item is one check to make at a key's owner.
type Item struct {
	// Key is the key whose count is checked: 1 to MaxKeyBytes bytes of
	// valid UTF-8 (the wire type is a protobuf string).
	Key string
	// Hits is how many hits to add if they fit: at least 1.
	Hits int
	// Limit is the limit in force for Key now, per window: at least 1.
	Limit int
	// Window is the sender's counting window. The owner refuses an item
	// whose Window differs from its own, since every node must run the same
	// configuration.
	Window time.Duration
}

// Peer is a node that owns some keys; Check asks it to count a batch of
// items and returns one Decision per item, in order.
//
// Check is called from many goroutines at once; ctx bounds how long it
// waits. An error means none of the items is known to have been counted.
type Peer interface {
	Check(ctx context.Context, items []Item) ([]bucket.Decision, error)
}

// The wire carries times as Unix nanoseconds, with 0 for the zero time, and
// durations as nanoseconds, so every value crosses exactly.

// unixNanos returns t as Unix nanoseconds, or 0 for the zero time.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNanos is the inverse of unixNanos.
func fromUnixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// decodeResult turns a wire result back into a Decision.
func decodeResult(r *peerpb.Result) bucket.Decision {
	return bucket.Decision{
		Allowed:   r.GetAllowed(),
		Limit:     int(r.GetLimit()),
		Remaining: int(r.GetRemaining()),
		ResetAt:   fromUnixNanos(r.GetResetUnixNanos()),
		RetryAt:   fromUnixNanos(r.GetRetryUnixNanos()),
	}
}
