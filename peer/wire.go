package peer

import (
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/peerpb"
)

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

// decodeResult turns a wire result back into a Result.
func decodeResult(r *peerpb.Result) forward.Result {
	return forward.Result{
		Decision: bucket.Decision{
			Allowed:   r.GetAllowed(),
			Limit:     int(r.GetLimit()),
			Remaining: int(r.GetRemaining()),
			ResetAt:   fromUnixNanos(r.GetResetUnixNanos()),
			RetryAt:   fromUnixNanos(r.GetRetryUnixNanos()),
		},
		Granted:      int(max(0, r.GetGranted())),
		LeaseFor:     time.Duration(max(0, r.GetLeaseNanos())),
		TookBack:     int(r.GetTookBack()),
		WindowLeft:   time.Duration(max(0, r.GetWindowLeftNanos())),
		LeaseID:      r.GetLeaseId(),
		Expired:      r.GetExpired(),
		Slot:         r.GetSlot(),
		SlotsHeld:    int(max(0, r.GetSlotsHeld())),
		GrantedSlots: int(max(0, r.GetGrantedSlots())),
	}
}
