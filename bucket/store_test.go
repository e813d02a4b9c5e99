package bucket

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Unix(1_700_000_000, 0)

const window = 60 * time.Second

func at(d time.Duration) time.Time { return t0.Add(d) }

// step is one Take in a sequence and what it must return.
type step struct {
	at        time.Duration // since t0
	key       string
	hits      int
	limit     int
	allowed   bool
	remaining int
	retryAt   time.Duration // since t0; checked when the step is refused
	refillAt  time.Duration // since t0; checked when not 0
}

func runSteps(t *testing.T, s *Store, steps []step) {
	t.Helper()
	for i, st := range steps {
		key := st.key
		if key == "" {
			key = "k"
		}
		d := s.Take(at(st.at), key, st.hits, st.limit)
		name := fmt.Sprintf("step %d: Take(t0+%v, %q, %d, %d)", i, st.at, key, st.hits, st.limit)
		assert.Equal(t, st.allowed, d.Allowed, "%s allowed", name)
		assert.Equal(t, st.remaining, d.Remaining, "%s remaining", name)
		assert.Equal(t, st.limit, d.Limit, "%s limit", name)
		if !st.allowed && st.retryAt != 0 {
			assert.Equal(t, at(st.retryAt), d.RetryAt, "%s retryAt", name)
		}
		if st.allowed {
			assert.True(t, d.RetryAt.IsZero(), "%s: RetryAt = %v on an allowed decision", name, d.RetryAt)
		}
		if st.refillAt != 0 {
			assert.Equal(t, at(st.refillAt), d.RefillAt, "%s refillAt", name)
		}
	}
}

func TestTakeSequences(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "fresh key admits up to the limit then refuses",
			steps: []step{
				// One hit counted: a second more than the 2 left fits once
				// it has decayed, a whole window after this one ends.
				{at: 0, hits: 1, limit: 3, allowed: true, remaining: 2, refillAt: 120 * time.Second},
				// Two counted: ceil(2×(60−el)/60) ≤ 1 once el ≥ 30 s.
				{at: time.Second, hits: 1, limit: 3, allowed: true, remaining: 1, refillAt: 90 * time.Second},
				// cur=3, prev=0: the next window with prev=3 fits one more once
				// ceil(3×(60−el)/60) ≤ 2, that is el ≥ 20 s.
				{at: 2 * time.Second, hits: 1, limit: 3, allowed: true, remaining: 0, refillAt: 80 * time.Second},
				{at: 3 * time.Second, hits: 1, limit: 3, allowed: false, remaining: 0, retryAt: 80 * time.Second, refillAt: 80 * time.Second},
			},
		},
		{
			name: "refused hits consume nothing",
			steps: []step{
				{at: 0, hits: 2, limit: 2, allowed: true, remaining: 0},
				{at: time.Second, hits: 1, limit: 2, allowed: false, retryAt: 90 * time.Second},
				{at: 2 * time.Second, hits: 1, limit: 2, allowed: false, retryAt: 90 * time.Second},
				{at: 90 * time.Second, hits: 1, limit: 2, allowed: true, remaining: 0},
			},
		},
		{
			name: "the previous window decays linearly",
			steps: []step{
				{at: 0, hits: 10, limit: 10, allowed: true, remaining: 0},
				// t0+60s: new window, prev=10 weighs 10×60/60 = 10.
				{at: 60 * time.Second, hits: 1, limit: 10, allowed: false, retryAt: 66 * time.Second},
				// t0+90s: half of prev left: ceil(5) = 5 used. One more fits
				// once ceil(10×(60−el)/60) ≤ 4, el ≥ 36 s.
				{at: 90 * time.Second, hits: 5, limit: 10, allowed: true, remaining: 0, refillAt: 96 * time.Second},
				{at: 90 * time.Second, hits: 1, limit: 10, allowed: false, retryAt: 96 * time.Second},
				// t0+120s: prev=5 weighs 5, cur 0.
				{at: 120 * time.Second, hits: 1, limit: 10, allowed: true, remaining: 4},
			},
		},
		{
			name: "two idle windows forget everything",
			steps: []step{
				{at: 0, hits: 10, limit: 10, allowed: true, remaining: 0},
				{at: 120 * time.Second, hits: 1, limit: 10, allowed: true, remaining: 9},
			},
		},
		{
			name: "NORMAL to DEGRADED and back within the window",
			steps: []step{
				{at: 0, hits: 15, limit: 20, allowed: true, remaining: 5},
				// DEGRADED: limit 2, 15 already used: refused, nothing counted.
				{at: time.Second, hits: 1, limit: 2, allowed: false, remaining: 0},
				{at: 2 * time.Second, hits: 1, limit: 2, allowed: false, remaining: 0},
				// NORMAL again: the last 5 are still there.
				{at: 3 * time.Second, hits: 1, limit: 20, allowed: true, remaining: 4},
				{at: 3 * time.Second, hits: 4, limit: 20, allowed: true, remaining: 0},
				{at: 3 * time.Second, hits: 1, limit: 20, allowed: false, remaining: 0},
			},
		},
		{
			name: "DEGRADED refuses until the used 15 decays below the limit",
			steps: []step{
				{at: 0, hits: 15, limit: 20, allowed: true, remaining: 5},
				// Next window: ceil(15×(60−el)/60)+1 ≤ 2 needs el ≥ 56 s.
				{at: 59 * time.Second, hits: 1, limit: 2, allowed: false, remaining: 0, retryAt: 116 * time.Second},
				{at: 116*time.Second - time.Nanosecond, hits: 1, limit: 2, allowed: false, remaining: 0},
				{at: 116 * time.Second, hits: 1, limit: 2, allowed: true, remaining: 0},
			},
		},
		{
			name: "a read with zero hits changes nothing",
			steps: []step{
				{at: 0, hits: 0, limit: 5, allowed: true, remaining: 5},
				{at: 0, hits: 4, limit: 5, allowed: true, remaining: 1},
				{at: time.Second, hits: 0, limit: 5, allowed: true, remaining: 1},
				{at: time.Second, hits: 1, limit: 5, allowed: true, remaining: 0},
			},
		},
		{
			name: "more hits than the limit never fit",
			steps: []step{
				{at: 0, hits: 6, limit: 5, allowed: false, remaining: 5, retryAt: 120 * time.Second},
				{at: 0, hits: 5, limit: 5, allowed: true, remaining: 0},
			},
		},
		{
			name: "a zero limit admits nothing",
			steps: []step{
				{at: 0, hits: 1, limit: 0, allowed: false, remaining: 0},
			},
		},
		{
			name: "a clock that steps back stays in the current window",
			steps: []step{
				{at: 10 * time.Second, hits: 1, limit: 2, allowed: true, remaining: 1},
				{at: 5 * time.Second, hits: 1, limit: 2, allowed: true, remaining: 0},
				{at: 0, hits: 1, limit: 2, allowed: false, remaining: 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, New(Config{Window: window}), tt.steps)
		})
	}
}

func TestBurstAdmitsExactlyLimit(t *testing.T) {
	for _, limit := range []int{1, 2, 20, 150, 1500} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			s := New(Config{Window: window})
			admitted := 0
			for i := range 3 * limit {
				if s.Take(at(time.Duration(i)*time.Millisecond), "burst", 1, limit).Allowed {
					admitted++
				}
			}
			assert.Equal(t, limit, admitted)
		})
	}
}

func TestWindowsAreAnchoredPerKey(t *testing.T) {
	s := New(Config{Window: window})
	require.True(t, s.Take(at(0), "a", 1, 1).Allowed)
	require.True(t, s.Take(at(30*time.Second), "b", 1, 1).Allowed)

	da := s.Take(at(45*time.Second), "a", 1, 1)
	db := s.Take(at(45*time.Second), "b", 1, 1)
	assert.Equal(t, at(60*time.Second), da.ResetAt, "a's window ends a minute after a's first hit")
	assert.Equal(t, at(90*time.Second), db.ResetAt, "b's window ends a minute after b's first hit")
}

func TestRetryAtIsExact(t *testing.T) {
	// Property: a refused Take's RetryAt is the first instant at which the
	// same hits are admitted, for random histories and limits.
	r := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for i := range 3000 {
		s := New(Config{Window: window, Shards: 1})
		limit := 1 + r.IntN(50)
		now := at(0)
		for range 500 {
			now = now.Add(time.Duration(r.Int64N(int64(window / 8))))
			hits := 1 + r.IntN(3)
			d := s.Take(now, "k", hits, limit)
			if d.Allowed {
				continue
			}
			if hits > limit {
				break
			}
			require.True(t, d.RetryAt.After(now), "case %d: RetryAt %v not after the refusal at %v", i, d.RetryAt, now)
			before := d.RetryAt.Add(-time.Nanosecond)
			if before.After(now) {
				assert.False(t, s.Take(before, "k", hits, limit).Allowed, "case %d: Take(RetryAt-1ns, %d, %d) admitted", i, hits, limit)
			}
			assert.True(t, s.Take(d.RetryAt, "k", hits, limit).Allowed, "case %d: Take(RetryAt, %d, %d) refused", i, hits, limit)
			checked++
			break
		}
	}
	require.Greater(t, checked, 1000, "too few refusals were checked")
}

func TestRefillAtIsExact(t *testing.T) {
	// Property: after any Take, more than Remaining hits fit from RefillAt
	// on and not a nanosecond before; a zero RefillAt means the whole limit
	// is left. The limit changes now and then, as NORMAL and DEGRADED do.
	r := rand.New(rand.NewPCG(3, 4))
	checked := 0
	for i := range 300 {
		s := New(Config{Window: window, Shards: 1})
		limits := []int{1 + r.IntN(50), 1 + r.IntN(5)}
		now := at(0)
		for j := range 100 {
			now = now.Add(time.Duration(r.Int64N(int64(window / 4))))
			limit := limits[min(r.IntN(8), 1)]
			hits := r.IntN(4)
			d := s.Take(now, "k", hits, limit)
			name := fmt.Sprintf("case %d step %d: Take(t0+%v, %d, %d) = %+v", i, j, now.Sub(t0), hits, limit, d)
			if d.RefillAt.IsZero() {
				require.Equal(t, limit, d.Remaining, "%s: no RefillAt, yet not the whole limit left", name)
				continue
			}
			require.True(t, d.RefillAt.After(now), "%s: RefillAt not after now", name)
			if before := d.RefillAt.Add(-time.Nanosecond); before.After(now) {
				assert.Equal(t, d.Remaining, s.Take(before, "k", 0, limit).Remaining, "%s: at RefillAt-1ns", name)
			}
			assert.Greater(t, s.Take(d.RefillAt, "k", 0, limit).Remaining, d.Remaining, "%s: at RefillAt", name)
			later := d.RefillAt.Add(time.Duration(r.Int64N(int64(2 * window))))
			assert.Greater(t, s.Take(later, "k", 0, limit).Remaining, d.Remaining, "%s: at RefillAt+%v", name, later.Sub(d.RefillAt))
			checked++
		}
	}
	require.Greater(t, checked, 10_000, "too few decisions were checked")
}

// TestWholeLimitIsBackOneWindowAfterResetAt: with nothing else counted,
// the whole limit is free at ResetAt+Window and not before.
func TestWholeLimitIsBackOneWindowAfterResetAt(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 1000 {
		s := New(Config{Window: window, Shards: 1})
		limit := 1 + r.IntN(50)
		now := at(0)
		var d Decision
		for range 1 + r.IntN(200) {
			now = now.Add(time.Duration(r.Int64N(int64(window / 8))))
			if dd := s.Take(now, "k", 1+r.IntN(3), limit); dd.Allowed {
				d = dd
			}
		}
		if !d.Allowed {
			continue
		}
		full := d.ResetAt.Add(window)
		assert.Equal(t, limit, s.Take(full, "k", 0, limit).Remaining, "case %d: Remaining at ResetAt+Window", i)
		assert.Less(t, s.Take(full.Add(-time.Nanosecond), "k", 0, limit).Remaining, limit, "case %d: Remaining just before ResetAt+Window", i)
	}
}

func TestSweepRemovesExpiredKeys(t *testing.T) {
	s := New(Config{Window: window})
	for i := range 100 {
		s.Take(at(0), "k"+strconv.Itoa(i), 1, 10)
	}
	s.Take(at(90*time.Second), "late", 1, 10)
	require.Equal(t, 101, s.Len())

	assert.Equal(t, 0, s.Sweep(at(119*time.Second)), "nothing has been idle for two windows yet")
	assert.Equal(t, 100, s.Sweep(at(120*time.Second)))
	assert.Equal(t, 1, s.Len())
}

func TestMaxKeysBoundsMemory(t *testing.T) {
	s := New(Config{Window: window, Shards: 4, MaxKeys: 64})
	for i := range 10_000 {
		require.True(t, s.Take(at(time.Duration(i)*time.Millisecond), "k"+strconv.Itoa(i), 1, 10).Allowed)
	}
	assert.LessOrEqual(t, s.Len(), 64)
	assert.Greater(t, s.Evicted(), uint64(0))
}

func TestFullShardDropsExpiredKeysBeforeLiveOnes(t *testing.T) {
	s := New(Config{Window: window, Shards: 1, MaxKeys: 8})
	for i := range 8 {
		s.Take(at(0), "old"+strconv.Itoa(i), 1, 10)
	}
	s.Take(at(3*window), "new", 1, 10)
	assert.Equal(t, uint64(0), s.Evicted(), "expired keys make room without evicting live ones")
	assert.Equal(t, 1, s.Len())
}

func TestParallelHitsAdmitExactlyLimit(t *testing.T) {
	const (
		limit      = 1000
		goroutines = 32
		perG       = 200
	)
	s := New(Config{Window: window})
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range perG {
				if s.Take(at(time.Second), "hot", 1, limit).Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(limit), admitted.Load())
}

func TestNewPanicsWithoutWindow(t *testing.T) {
	assert.Panics(t, func() { New(Config{}) })
}

// TestMaxKeysIsOneCapForTheWholeStore: below the cap nothing live is
// evicted, however the keys fall into shards; at the cap, a flood of new
// keys evicts the least used ones, never a key that used up its limit.
func TestMaxKeysIsOneCapForTheWholeStore(t *testing.T) {
	const maxKeys, limit = 1000, 5
	s := New(Config{Window: window, MaxKeys: maxKeys}) // 64 shards
	for i := range 20 {
		for range limit {
			require.True(t, s.Take(at(0), "victim-"+strconv.Itoa(i), 1, limit).Allowed)
		}
	}
	for i := range maxKeys - 20 {
		s.Take(at(time.Second), "live-"+strconv.Itoa(i), 1, limit)
	}
	assert.Equal(t, maxKeys, s.Len())
	assert.Zero(t, s.Evicted(), "a live key was evicted below the cap")

	// A flood of fresh keys at the cap: each pushes a least-used key out.
	for i := range 5 * maxKeys {
		s.Take(at(2*time.Second), "flood-"+strconv.Itoa(i), 1, limit)
	}
	assert.LessOrEqual(t, s.Len(), maxKeys+DefaultShards, "the cap holds, but for one key per empty shard")
	assert.Positive(t, s.Evicted())
	for i := range 20 {
		d := s.Take(at(3*time.Second), "victim-"+strconv.Itoa(i), 1, limit)
		assert.False(t, d.Allowed, "victim-%d, used up, was reset by the flood: %+v", i, d)
	}
}
