package health

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const maxOffset = 500 * time.Millisecond

// A node that restarted knows nothing and writes NORMAL after the cluster
// went DEGRADED: its write is the later one, so it wins everywhere, also on
// a node that saw many more writes.
func TestALaterWriteWinsOverMoreWrites(t *testing.T) {
	busy, restarted := NewHolder("busy"), NewHolder("restarted")
	for i := range 9 { // busy toggles nine times within a second
		busy.Set(Status(1-i%2), t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	require.Equal(t, Degraded, busy.Status())
	late, changed := restarted.Set(Normal, t0.Add(2*time.Second))
	assert.False(t, changed, "NORMAL was in force on the restarted node")
	require.True(t, late.Newer(busy.Current()), "the write a second later is newer: %d vs %d", late.Version, busy.Current().Version)

	adopted, err := busy.Merge(late, t0.Add(2*time.Second), maxOffset)
	require.NoError(t, err)
	assert.True(t, adopted)
	assert.Equal(t, Normal, busy.Status())
	adopted, err = restarted.Merge(State{Status: Degraded, Version: busy.Current().Version, Origin: "busy"}, t0.Add(2*time.Second), maxOffset)
	require.NoError(t, err)
	assert.False(t, adopted, "the restarted node keeps its own later write")
}

// A write on a node whose clock is behind still comes after everything that
// node has seen: causality holds whatever the clocks say.
func TestSetIsAfterEverythingSeenEvenWithASlowClock(t *testing.T) {
	h := NewHolder("slow")
	ahead, _ := NewHolder("fast").Set(Degraded, t0.Add(400*time.Millisecond))
	_, err := h.Merge(ahead, t0, maxOffset)
	require.NoError(t, err)
	s, _ := h.Set(Normal, t0) // the local clock says t0, before the state it saw
	assert.True(t, s.Newer(ahead))
	assert.Equal(t, ahead.Version+1, s.Version, "same wall time, next logical tick")
}

// A state stamped further ahead than the clock offset allows is refused,
// and one at the very top of the range can never freeze the state.
func TestMergeRefusesStatesFromTheFuture(t *testing.T) {
	h := NewHolder("a")
	for _, v := range []uint64{stampAt(t0.Add(time.Second)), math.MaxUint64} {
		adopted, err := h.Merge(State{Status: Degraded, Version: v, Origin: "liar"}, t0, maxOffset)
		assert.False(t, adopted)
		assert.True(t, errors.Is(err, ErrTooFarAhead), "Merge(version %d) error %v", v, err)
	}
	assert.Equal(t, State{Status: Normal}, h.Current())

	within, _ := NewHolder("b").Set(Degraded, t0.Add(400*time.Millisecond))
	adopted, err := h.Merge(within, t0, maxOffset)
	require.NoError(t, err)
	assert.True(t, adopted, "a state within the offset is taken")
	s, changed := h.Set(Normal, t0)
	require.True(t, changed)
	assert.True(t, s.Newer(within), "writes go on after the largest stamp seen")
}

func TestStampsCarryTheWallTime(t *testing.T) {
	s, _ := NewHolder("a").Set(Degraded, t0)
	assert.Equal(t, t0, s.Stamped(), "Stamped")
	assert.Equal(t, t0, s.UpdatedAt)
	// 65536 writes in one millisecond move the stamp one millisecond on
	// rather than overflow.
	v := stampAt(t0)
	for range 1 << 16 {
		v = nextStamp(v, t0)
	}
	assert.Equal(t, t0.Add(time.Millisecond), State{Version: v}.Stamped())
}
