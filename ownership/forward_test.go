package ownership

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRouterDeadlineAdaptsToTheOwner: once an owner's round trips are
// known to be quick, a check that it stops answering is given up on after
// the adapted deadline, not the maximum.
func TestRouterDeadlineAdaptsToTheOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := &batchPeer{delay: 200 * time.Microsecond}
		r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, func(cfg *RouterConfig) { cfg.LeaseTTL = -1 })
		key := keyOwnedBy(t, r.ring, "b")
		for range 32 { // twice the 16 round trips a forward.Deadline needs to move
			require.True(t, r.Check(t.Context(), routerT0, key, 1<<30).Allowed)
		}
		r.rollDeadlines()
		assert.Equal(t, map[string]time.Duration{"b": time.Millisecond}, r.Deadlines(), "twice the 256 µs bucket, at least 1 ms")

		peer.block = true
		start := time.Now()
		d := r.Check(t.Context(), routerT0, key, 1<<30)
		assert.Equal(t, time.Millisecond, time.Since(start), "a check to the hanging owner waited")
		assert.Equal(t, []string{FallbackTimeout}, r.events.reasons())
		assert.True(t, d.Allowed)
	})
}
