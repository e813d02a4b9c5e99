package health

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestNewHolderStartsNormalAtVersionZero(t *testing.T) {
	h := NewHolder("a")
	assert.Equal(t, State{Status: Normal}, h.Current())
	assert.Equal(t, Normal, h.Status())
}

func TestSetBumpsVersionAndStampsOrigin(t *testing.T) {
	h := NewHolder("a")
	s, changed := h.Set(Degraded, t0)
	require.True(t, changed)
	assert.Equal(t, State{Status: Degraded, Version: stampAt(t0), Origin: "a", UpdatedAt: t0}, s)
	assert.Equal(t, s, h.Current())

	again, changed := h.Set(Degraded, t0.Add(time.Second))
	assert.False(t, changed, "the status in force again")
	assert.True(t, again.Newer(s), "a repeated write is a new write")
	assert.Equal(t, stampAt(t0.Add(time.Second)), again.Version)

	s, changed = h.Set(Normal, t0.Add(2*time.Second))
	require.True(t, changed)
	assert.Equal(t, stampAt(t0.Add(2*time.Second)), s.Version)
}

func TestSetAfterMergeIsAboveEverythingSeen(t *testing.T) {
	h := NewHolder("a")
	seen := stampAt(t0) + 41
	require.True(t, merge(h, State{Status: Degraded, Version: seen, Origin: "z"}))
	s, _ := h.Set(Normal, t0)
	assert.Equal(t, seen+1, s.Version)
	assert.Equal(t, "a", s.Origin)
}

func TestNewer(t *testing.T) {
	tests := []struct {
		name string
		a, b State
		want bool
	}{
		{"higher version wins", State{Version: 2, Origin: "a"}, State{Version: 1, Origin: "z"}, true},
		{"lower version loses", State{Version: 1, Origin: "z"}, State{Version: 2, Origin: "a"}, false},
		{"same version: higher origin wins", State{Version: 3, Origin: "b"}, State{Version: 3, Origin: "a"}, true},
		{"same version: lower origin loses", State{Version: 3, Origin: "a"}, State{Version: 3, Origin: "b"}, false},
		{"a state is not newer than itself", State{Version: 3, Origin: "a"}, State{Version: 3, Origin: "a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.a.Newer(tt.b), "%+v.Newer(%+v)", tt.a, tt.b)
		})
	}
}

func TestMergeConvergesWhateverTheOrder(t *testing.T) {
	// Two admins write to two nodes at once; each node then hears the
	// other's write. Both must end on the same state.
	a, b := NewHolder("node-a"), NewHolder("node-b")
	sa, _ := a.Set(Degraded, t0)
	_, changed := b.Set(Normal, t0)
	require.False(t, changed, "b is already NORMAL")
	b.Set(Degraded, t0)
	sb, _ := b.Set(Normal, t0)
	merge(a, sb)
	merge(b, sa)
	assert.Equal(t, a.Current(), b.Current())
	assert.Equal(t, sb, a.Current(), "b's write has the higher version")

	c, d := NewHolder("c"), NewHolder("d")
	sc, _ := c.Set(Degraded, t0)
	sd, _ := d.Set(Degraded, t0)
	merge(c, sd)
	merge(d, sc)
	assert.Equal(t, c.Current(), d.Current())
	assert.Equal(t, "d", c.Current().Origin, "equal versions: the higher origin wins")
}

func TestMergeRejectsOlderAndInvalidStates(t *testing.T) {
	h := NewHolder("a")
	h.Set(Degraded, t0)
	assert.False(t, merge(h, State{Status: Normal, Version: 1, Origin: "0"}))
	assert.False(t, merge(h, State{Status: Status(7), Version: 99, Origin: "z"}))
	assert.Equal(t, Degraded, h.Status())
}

func TestOnChangeSeesEveryAdoptedStateInOrder(t *testing.T) {
	h := NewHolder("a")
	var got []uint64
	h.OnChange(func(s State) { got = append(got, s.Version) })
	v := stampAt(t0)
	h.Set(Degraded, t0)
	h.Set(Degraded, t0) // the same status again: a new write
	merge(h, State{Status: Normal, Version: v + 5, Origin: "b"})
	merge(h, State{Status: Degraded, Version: v + 4, Origin: "b"}) // older, no call
	h.Set(Degraded, t0)
	assert.Equal(t, []uint64{v, v + 1, v + 5, v + 6}, got)
}

func TestConcurrentWritersNeverLoseTheNewestState(t *testing.T) {
	h := NewHolder("a")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for v := range 200 {
				merge(h, State{Status: Status(v % 2), Version: uint64(v), Origin: string(rune('b' + i))})
				_ = h.Current()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, State{Status: Status(199 % 2), Version: 199, Origin: "i"}, h.Current())
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	s := State{Status: Degraded, Version: 7, Origin: "node-1", UpdatedAt: t0}
	b := s.Encode()
	assert.Less(t, len(b), 128, "the state must stay tiny to ride gossip packets")
	got, err := Decode(b)
	require.NoError(t, err)
	assert.Equal(t, s, got)
}

func TestDecodeRejectsBadInput(t *testing.T) {
	tests := map[string]string{
		"unknown status": `{"status":"MAYBE","version":1}`,
		"lower case":     `{"status":"degraded","version":1}`,
		"not json":       `status=NORMAL`,
		"too long":       `{"origin":"` + strings.Repeat("x", 600) + `"}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte(in))
			assert.Error(t, err)
		})
	}
}

func TestParseStatus(t *testing.T) {
	s, err := ParseStatus("DEGRADED")
	require.NoError(t, err)
	assert.Equal(t, Degraded, s)
	_, err = ParseStatus("Normal")
	assert.ErrorIs(t, err, ErrUnknownStatus)
}

func BenchmarkCurrent(b *testing.B) {
	h := NewHolder("a")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = h.Status()
		}
	})
}

// merge merges s into h at t0, allowing an hour of clock offset.
func merge(h *Holder, s State) bool {
	ok, err := h.Merge(s, t0, time.Hour)
	if err != nil {
		panic(err)
	}
	return ok
}

func TestWriteIfLeavesAWriteThatCameFirst(t *testing.T) {
	h := NewHolder("a")
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	seen := h.Current()
	pin, _ := h.Write(Write{Status: Degraded, Pinned: true, Why: "admin"}, now)
	s, changed, ok := h.WriteIf(Write{Status: Normal, Why: "auto"}, now.Add(time.Millisecond), seen)
	assert.False(t, ok, "the pin came after the state the decision saw")
	assert.False(t, changed)
	assert.Equal(t, pin, s)
	assert.Equal(t, pin, h.Current())

	s, changed, ok = h.WriteIf(Write{Status: Normal, Why: strings.Repeat("x", 500)}, now.Add(2*time.Millisecond), pin)
	require.True(t, ok)
	assert.True(t, changed)
	assert.False(t, s.Pinned)
	assert.Len(t, s.Why, MaxWhy, "cut")
	assert.True(t, s.Newer(pin))
	got, err := Decode(s.Encode())
	require.NoError(t, err)
	assert.Equal(t, s.Why, got.Why, "a cut why fits the wire")
}

func TestManualStates(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	h := NewHolder("a")
	assert.False(t, h.Current().Manual(), "the zero state is the switch's")
	s, _ := h.Write(Write{Status: Degraded, Why: "auto: demand 1.5 >= high 1"}, now)
	assert.False(t, s.Manual())
	s, _ = h.Write(Write{Status: Degraded, Pinned: true, Why: "admin"}, now)
	assert.True(t, s.Manual())
	s, _ = h.Set(Normal, now)
	assert.True(t, s.Manual(), "no why: a writer that knew no switch, so a person")
	old, err := Decode([]byte(`{"status":"DEGRADED","version":123,"origin":"old","updated_at":"2026-12-01T00:00:00Z"}`))
	require.NoError(t, err)
	assert.True(t, old.Manual(), "a state from a node of an earlier version")
}
