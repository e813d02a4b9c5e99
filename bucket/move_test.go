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
