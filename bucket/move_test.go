package bucket

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAddedCountsKeepAUsedUpKeyRefused: a key used up at its old owner is
// still refused at its new one after the counts move, whatever the new
// owner counted meanwhile and however the two windows are anchored.
func TestAddedCountsKeepAUsedUpKeyRefused(t *testing.T) {
	const limit = 20
	tests := []struct {
		name      string
		oldStart  time.Duration // the old owner's window anchor, since t0
		newHits   int           // hits the new owner counted before the move
		newStart  time.Duration
		moveAt    time.Duration
		remaining int // what the next Take must report
	}{
		{"new owner saw nothing", 0, 0, 0, 10 * time.Second, 0},
		{"new owner counted 3 since", 0, 3, 9 * time.Second, 10 * time.Second, 0},
		{"old owner's window is later", 9 * time.Second, 3, 0, 10 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := New(Config{Window: window})
			for range limit {
				require.True(t, from.Take(at(tt.oldStart), "k", 1, limit).Allowed)
			}
			to := New(Config{Window: window})
			for range tt.newHits {
				to.Take(at(tt.newStart), "k", 1, limit)
			}
			moved := from.Drain(func(string) bool { return false })
			require.Len(t, moved, 1)
			assert.Equal(t, Count{Key: "k", Start: at(tt.oldStart), Current: limit}, moved[0])
			assert.Zero(t, from.Len(), "Drain left the key behind")
			to.Add(at(tt.moveAt), moved[0])

			d := to.Take(at(tt.moveAt), "k", 1, limit)
			assert.False(t, d.Allowed, "Take after the move = %+v", d)
			assert.Equal(t, tt.remaining, d.Remaining)
		})
	}
}

func TestAddSumsTheHits(t *testing.T) {
	s := New(Config{Window: window})
	s.Take(at(0), "k", 4, 100)
	s.Add(at(time.Second), Count{Key: "k", Start: at(0), Previous: 0, Current: 6})
	d := s.Take(at(time.Second), "k", 1, 100)
	assert.Equal(t, 100-11, d.Remaining, "4 counted here + 6 moved in + 1")
	s.Add(at(time.Second), Count{Key: "old", Start: at(-3 * window), Current: 50})
	assert.Equal(t, 1, s.Len(), "counts whose windows both ended are dropped")
}

func TestPutReplaces(t *testing.T) {
	s := New(Config{Window: window})
	s.Put(at(0), Count{Key: "k", Start: at(0), Current: 7})
	s.Put(at(0), Count{Key: "k", Start: at(0), Current: 9})
	d := s.Take(at(0), "k", 0, 20)
	assert.Equal(t, 11, d.Remaining, "the last copy, not the sum")
	s.Put(at(3*window), Count{Key: "k", Start: at(0), Current: 9})
	assert.Zero(t, s.Len(), "an expired copy removes the key")
}

func TestChangedReportsEachCountedKeyOnce(t *testing.T) {
	s := New(Config{Window: window, TrackChanges: true})
	for i := range 3 {
		s.Take(at(0), "k"+strconv.Itoa(i), 1, 10)
		s.Take(at(0), "k"+strconv.Itoa(i), 1, 10)
	}
	s.Take(at(0), "refused", 5, 1) // not counted: not a change
	got := s.Changed()
	assert.Len(t, got, 3)
	for _, c := range got {
		assert.Equal(t, uint64(2), c.Current, "%s", c.Key)
	}
	assert.Empty(t, s.Changed(), "nothing counted since")
	s.MarkAllChanged()
	assert.Len(t, s.Changed(), 3)
	assert.Empty(t, New(Config{Window: window}).Changed(), "a store that does not track")
}

// TestGiveTakesBackFromTheWindowTheHitsWereTakenIn: hits taken ahead and
// returned leave the window they were counted in, current or previous, and
// nothing else; a window that has ended is not touched.
func TestGiveTakesBackFromTheWindowTheHitsWereTakenIn(t *testing.T) {
	tests := []struct {
		name      string
		giveAt    time.Duration // when the hits come back, since t0
		start     time.Duration // the window they were taken in began at
		hits      int
		took      int
		prev, cur uint64 // the counts afterwards
		remaining int    // what a read at giveAt reports under 20
	}{
		{"same window", 10 * time.Second, 0, 6, 6, 0, 4, 16},
		{"more than counted", 10 * time.Second, 0, 50, 10, 0, 0, 20},
		// 4 left in the previous window, 50 of its 60 s still inside the
		// last W: ceil(4 × 50/60) = 4 used.
		{"window became previous", window + 10*time.Second, 0, 6, 6, 4, 0, 16},
		{"window ended long ago", 3 * window, 0, 6, 0, 0, 0, 20},
		{"a start inside the current window", 10 * time.Second, 5 * time.Second, 3, 3, 0, 7, 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{Window: window, TrackChanges: true})
			require.True(t, s.Take(at(0), "k", 10, 20).Allowed)
			s.Changed()
			took, ok := s.Give(at(tt.giveAt), "k", at(tt.start), tt.hits)
			assert.True(t, ok)
			assert.Equal(t, tt.took, took)
			c := s.Changed()
			if tt.took > 0 {
				require.Len(t, c, 1, "a give is a change the backups must see")
				assert.Equal(t, tt.prev, c[0].Previous)
				assert.Equal(t, tt.cur, c[0].Current)
			} else {
				assert.Empty(t, c)
			}
			assert.Equal(t, tt.remaining, s.Take(at(tt.giveAt), "k", 0, 20).Remaining)
		})
	}
	took, ok := New(Config{Window: window}).Give(at(0), "none", at(0), 5)
	assert.Zero(t, took)
	assert.False(t, ok, "a key the store does not hold")
}

func TestCountMinusTakesOffAnEarlierCopy(t *testing.T) {
	w := time.Minute
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name    string
		c, copy Count
		want    Count
	}{
		{"same window", Count{"k", t0, 4, 9}, Count{"k", t0, 4, 6}, Count{"k", t0, 0, 3}},
		{"the copy's window is c's previous", Count{"k", t0.Add(w), 9, 2}, Count{"k", t0, 1, 7}, Count{"k", t0.Add(w), 2, 2}},
		{"the copy is two windows older: nothing left of it", Count{"k", t0.Add(2 * w), 3, 2}, Count{"k", t0, 5, 5}, Count{"k", t0.Add(2 * w), 3, 2}},
		{"never below zero", Count{"k", t0, 1, 2}, Count{"k", t0, 5, 5}, Count{"k", t0, 0, 0}},
		{"a copy newer than c takes nothing", Count{"k", t0, 3, 3}, Count{"k", t0.Add(w), 1, 1}, Count{"k", t0, 3, 3}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.c.Minus(tt.copy, w), tt.name)
	}
}

// TestAddOfHitsCountedNowKeepsTheFrame: a count with a zero Start (hits
// just admitted elsewhere, in a frame the sender does not know) adds to
// the key's current window in this store's frame, which does not move: a
// later frame would carry the window's start with it, and every count
// taken back in the old frame (a lease's give-back) would take nothing.
func TestAddOfHitsCountedNowKeepsTheFrame(t *testing.T) {
	s := New(Config{Window: window})
	d := s.Take(at(0), "k", 10, 100)
	require.True(t, d.Allowed)
	s.Add(at(5*time.Second), Count{Key: "k", Previous: 1, Current: 2})
	d = s.Take(at(5*time.Second), "k", 0, 100)
	assert.Equal(t, 100-13, d.Remaining, "10 counted here, 3 added")
	assert.Equal(t, at(window), d.ResetAt, "the frame did not move")
	took, ok := s.Give(at(5*time.Second), "k", at(0), 5)
	assert.True(t, ok)
	assert.Equal(t, 5, took, "given back in the frame they were counted in")

	s.Add(at(5*time.Second), Count{Key: "new", Current: 4})
	d = s.Take(at(5*time.Second), "new", 0, 100)
	assert.Equal(t, 96, d.Remaining, "a key it did not hold starts now")
	s.Add(at(5*time.Second), Count{Key: "none"})
	assert.Equal(t, 2, s.Len(), "nothing to add: no key")
}
