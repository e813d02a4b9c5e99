package bucket

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSlotsStep(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := NewSlots()
	ids := map[string]uint64{}
	steps := []struct {
		name    string
		at      time.Duration
		op      string // acquire, release, holder, sweep
		key     string
		holder  string
		until   time.Duration // acquire: the slot's deadline, from t0
		tag     string        // acquire: remembers the id; release: the id to give back
		wantOK  bool          // acquire: a slot taken; release: it was held
		wantN   int           // acquire: slots held after; holder, sweep: slots ended
		wantNow int           // Held(key) after the step
	}{
		{"first of 2", 0, "acquire", "k", "a", time.Hour, "a1", true, 1, 1},
		{"second of 2", 0, "acquire", "k", "b", time.Hour, "b1", true, 2, 2},
		{"third refused", 0, "acquire", "k", "a", time.Hour, "", false, 2, 2},
		{"other key free", 0, "acquire", "j", "a", 2 * time.Second, "j1", true, 1, 1},
		{"a job ends", time.Second, "release", "k", "", 0, "a1", true, 0, 1},
		{"released twice", time.Second, "release", "k", "", 0, "a1", false, 0, 1},
		{"its slot is free again", time.Second, "acquire", "k", "a", time.Hour, "a2", true, 2, 2},
		{"j's slot ends at its deadline", 2 * time.Second, "acquire", "j", "b", time.Hour, "j2", true, 1, 1},
		{"the ended slot's release finds nothing", 3 * time.Second, "release", "j", "", 0, "j1", false, 0, 1},
		{"holder b fails", 4 * time.Second, "holder", "k", "b", 0, "", false, 2, 1},
		{"b's slots are free", 4 * time.Second, "acquire", "k", "c", 5 * time.Second, "c1", true, 2, 2},
		{"sweep ends c1 at its deadline", 6 * time.Second, "sweep", "k", "", 0, "", false, 1, 1},
	}
	for _, st := range steps {
		now := t0.Add(st.at)
		switch st.op {
		case "acquire":
			limit := 2
			if st.key == "j" {
				limit = 1
			}
			id, n := s.Acquire(now, st.key, st.holder, limit, t0.Add(st.until))
			assert.Equal(t, st.wantOK, id != 0, st.name)
			assert.Equal(t, st.wantN, n, st.name)
			if st.tag != "" {
				ids[st.tag] = id
			}
		case "release":
			assert.Equal(t, st.wantOK, s.Release(st.key, ids[st.tag]), st.name)
		case "holder":
			assert.Equal(t, st.wantN, s.ReleaseHolder(st.holder), st.name)
		case "sweep":
			assert.Equal(t, st.wantN, s.Sweep(now), st.name)
		}
		assert.Equal(t, st.wantNow, s.Held(now, st.key), st.name)
	}
}

func TestSlotsForgetKeysWithoutSlots(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := NewSlots()
	id, _ := s.Acquire(t0, "k", "", 1, t0.Add(time.Minute))
	require.NotZero(t, id)
	require.True(t, s.Release("k", id))
	_, _ = s.Acquire(t0, "j", "", 1, t0.Add(time.Second))
	assert.Equal(t, 1, s.Sweep(t0.Add(time.Second)), "j's slot ended; k held none")
	n := 0
	for i := range s.shards {
		n += len(s.shards[i].m)
	}
	assert.Zero(t, n, "keys without slots are forgotten at the sweep")
}

// TestSlotsNeverOverLimit: however many goroutines race for a key's
// slots, no more than its limit are held at once.
func TestSlotsNeverOverLimit(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := NewSlots()
	const limit = 3
	var (
		mu      sync.Mutex
		running int
		most    int
		wg      sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for range 500 {
				id, _ := s.Acquire(t0, "k", "", limit, t0.Add(time.Hour))
				if id == 0 {
					continue
				}
				mu.Lock()
				running++
				most = max(most, running)
				mu.Unlock()
				runtime.Gosched() // the job runs: let others try meanwhile
				mu.Lock()
				running--
				mu.Unlock()
				require.True(t, s.Release("k", id))
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, most, limit)
	assert.Zero(t, s.Held(t0, "k"))
}

// TestSlotsAcquireIDIsIdempotent: a slot taken with the caller's id and
// asked for again (a retry) is the same slot; id 0 takes none.
func TestSlotsAcquireIDIsIdempotent(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := NewSlots()
	until := t0.Add(time.Minute)

	id, held := s.AcquireID(t0, "k", "b", 41, 2, until)
	assert.Equal(t, uint64(41), id)
	assert.Equal(t, 1, held)
	id, held = s.AcquireID(t0, "k", "b", 41, 2, until)
	assert.Equal(t, uint64(41), id, "the same id again")
	assert.Equal(t, 1, held, "takes nothing more")
	id, held = s.AcquireID(t0, "k", "c", 0, 2, until)
	assert.Zero(t, id, "id 0 takes no slot")
	assert.Equal(t, 1, held)
	id, _ = s.AcquireID(t0, "k", "c", 42, 2, until)
	assert.Equal(t, uint64(42), id)
	id, held = s.AcquireID(t0, "k", "c", 43, 2, until)
	assert.Zero(t, id, "full")
	assert.Equal(t, 2, held)
	id, held = s.AcquireID(t0, "k", "b", 41, 2, until)
	assert.Equal(t, uint64(41), id, "a held slot asked for again while full is still held")
	assert.Equal(t, 2, held)

	assert.Equal(t, 1, s.ReleaseHolder("b"))
	require.True(t, s.Release("k", 42))
	assert.Zero(t, s.Held(t0, "k"))
}

// TestSlotsTakeAndPut: the slots of keys about to be held elsewhere are
// taken out whole, holders and deadlines kept, and put in another table
// whatever its limit; putting one twice holds it once.
func TestSlotsTakeAndPut(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	from, to := NewSlots(), NewSlots()
	until := t0.Add(time.Minute)
	from.AcquireID(t0, "stay", "a", 1, 5, until)
	from.AcquireID(t0, "go", "a", 2, 5, until)
	from.AcquireID(t0, "go", "b", 3, 5, until)
	from.AcquireID(t0, "go", "b", 4, 5, t0.Add(time.Second)) // ended by the move

	moved := from.Take(t0.Add(2*time.Second), func(key string) bool { return key == "stay" })
	require.Len(t, moved, 2)
	assert.Equal(t, 1, from.Total(t0), "the key that stays keeps its slot")
	assert.Zero(t, from.Held(t0, "go"))
	to.AcquireID(t0, "go", "c", 9, 1, until) // the new owner's own, at a limit of 1
	for _, sl := range moved {
		to.Put(sl)
		to.Put(sl)
	}
	assert.Equal(t, 3, to.Held(t0, "go"), "held whatever the limit, each once")
	assert.Equal(t, 1, to.ReleaseHolder("b"), "holders kept")
	assert.True(t, to.Release("go", 2))
}
