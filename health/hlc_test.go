package health

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
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

// fakeCluster is Holders that each read their own clock and exchange their
// states in memory, as package cluster's push/pull does. Time is true time
// since t0, passed in; skew says how far each node's clock is off it.
type fakeCluster struct {
	names []string
	nodes map[string]*Holder
	skew  map[string]time.Duration
}

// newFakeCluster returns nodes at the zero state whose clocks are right.
func newFakeCluster(names ...string) *fakeCluster {
	c := &fakeCluster{names: names, nodes: map[string]*Holder{}, skew: map[string]time.Duration{}}
	for _, n := range names {
		c.nodes[n] = NewHolder(n)
	}
	return c
}

// clock returns what node's clock reads at true time t0+at.
func (c *fakeCluster) clock(node string, at time.Duration) time.Time {
	return t0.Add(at + c.skew[node])
}

// gossip has every node send its state to every other at true time t0+at,
// round after round until no node adopts anything. A state refused as too
// far ahead is dropped, as package cluster drops it.
func (c *fakeCluster) gossip(t *testing.T, at time.Duration) {
	t.Helper()
	for round := 0; ; round++ {
		require.Less(t, round, 2*len(c.names), "gossip at %s never settles", sinceT0(at))
		adopted := false
		for _, from := range c.names {
			for _, to := range c.names {
				if from == to {
					continue
				}
				ok, err := c.nodes[to].Merge(c.nodes[from].Current(), c.clock(to, at), maxOffset)
				if err != nil {
					require.ErrorIs(t, err, ErrTooFarAhead, "%s.Merge(%s's state) at %s", to, from, sinceT0(at))
				}
				adopted = adopted || ok
			}
		}
		if !adopted {
			return
		}
	}
}

// statuses returns the nodes' statuses in order, N for NORMAL and D for
// DEGRADED.
func (c *fakeCluster) statuses() string {
	var b strings.Builder
	for _, n := range c.names {
		b.WriteString(c.nodes[n].Status().String()[:1])
	}
	return b.String()
}

// A node whose clock ran an hour fast while it wrote, and was then
// corrected, must neither refuse the writes made after it nor have its own
// later writes refused: the later write wins, and all nodes end on one
// state.
func TestAClockOnceFastLeavesNoStampThatWinsForever(t *testing.T) {
	type step struct {
		at     time.Duration // true time since t0
		node   string
		skew   time.Duration // how far node's clock is ahead, from this step on
		set    string        // the status node writes, or "" for none
		want   string        // statuses of a, b, c after gossip: N or D
		origin string        // the writer of the state all hold, "-" for the zero state, "" unchecked
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"DEGRADED while fast, then NORMAL elsewhere", []step{
			{0, "a", time.Hour, "DEGRADED", "DNN", ""}, // the others refuse a state an hour ahead
			{time.Minute, "a", 0, "", "NNN", "-"},      // corrected: a takes the cluster's state
			{2 * time.Minute, "b", 0, "NORMAL", "NNN", "b"},
			{2 * time.Hour, "c", 0, "", "NNN", "b"}, // past the old stamp: it is gone
		}},
		{"NORMAL while fast, then DEGRADED elsewhere", []step{
			{0, "a", time.Hour, "NORMAL", "NNN", ""},
			{time.Minute, "a", 0, "", "NNN", "-"},
			{2 * time.Minute, "b", 0, "DEGRADED", "DDD", "b"}, // free keys get 2 on a too
			{3 * time.Minute, "a", 0, "NORMAL", "NNN", "a"},   // a's own later write is taken
			{4 * time.Minute, "c", 0, "DEGRADED", "DDD", "c"},
		}},
		{"written again as soon as the clock is right", []step{
			{0, "a", time.Hour, "DEGRADED", "DNN", ""},
			{time.Minute, "a", 0, "DEGRADED", "DDD", "a"}, // stamped from its clock, so taken
			{2 * time.Hour, "b", 0, "", "DDD", "a"},
		}},
		{"a held state past the bound gives way to the cluster's", []step{
			{0, "b", 0, "DEGRADED", "DDD", "b"},
			{time.Minute, "a", time.Hour, "NORMAL", "NDD", ""},
			{2 * time.Minute, "a", 0, "", "DDD", "b"}, // corrected: a takes the state all the others agree on
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster("a", "b", "c")
			for i, st := range tt.steps {
				c.skew[st.node] = st.skew
				if st.set != "" {
					status, err := ParseStatus(st.set)
					require.NoError(t, err)
					c.nodes[st.node].Set(status, c.clock(st.node, st.at))
				}
				c.gossip(t, st.at)
				assert.Equal(t, st.want, c.statuses(), "step %d: statuses after %s at %s", i, st.node, sinceT0(st.at))
				if st.origin == "" {
					continue
				}
				want := State{Status: Normal}
				if st.origin != "-" {
					want = c.nodes[st.origin].Current()
				}
				for _, n := range c.names {
					assert.Equal(t, want, c.nodes[n].Current(), "step %d: %s's state at %s", i, n, sinceT0(st.at))
				}
			}
		})
	}
}

// A write is stamped from the writer's clock, after the state it holds,
// but never more than the allowed offset ahead of its clock: a stamp left
// by a clock since turned back does not carry on into the next write.
func TestSetStampIsBoundedByTheClock(t *testing.T) {
	h := NewHolder("a")
	steps := []struct {
		clock time.Duration // what the node's clock reads, from t0
		want  uint64
	}{
		{time.Hour, stampAt(t0.Add(time.Hour))},                             // an hour fast
		{0, stampAt(t0)},                                                    // corrected: from the clock, not after the hour
		{0, stampAt(t0) + 1},                                                // same millisecond: the next tick
		{-300 * time.Millisecond, stampAt(t0) + 2},                          // back within the offset: still after
		{-900 * time.Millisecond, stampAt(t0.Add(-900 * time.Millisecond))}, // back past it: from the clock
		{time.Second, stampAt(t0.Add(time.Second))},
	}
	for _, st := range steps {
		s, _ := h.Set(Degraded, t0.Add(st.clock))
		assert.Equal(t, st.want, s.Version, "Set(DEGRADED, %s) stamped %s, want %s",
			sinceT0(st.clock), stampString(s.Version), stampString(st.want))
	}
}

// Set bounds its stamp by the max offset Merge was given last, not by the
// default: with a wider one configured, a write must still come after a
// peer's state taken within it.
func TestSetUsesTheOffsetGivenToMerge(t *testing.T) {
	tests := []struct {
		offset time.Duration // given to Merge
		peer   time.Duration // how far ahead of the clock the peer's state is
		clock  time.Duration // the clock at the write, from t0
		want   uint64
	}{
		{2 * time.Second, 1500 * time.Millisecond, 0, stampAt(t0.Add(1500*time.Millisecond)) + 1},
		{100 * time.Millisecond, 80 * time.Millisecond, 0, stampAt(t0.Add(80*time.Millisecond)) + 1},
		{100 * time.Millisecond, 80 * time.Millisecond, -50 * time.Millisecond, stampAt(t0.Add(-50 * time.Millisecond))},
	}
	for _, tt := range tests {
		h := NewHolder("a")
		adopted, err := h.Merge(State{Status: Degraded, Version: stampAt(t0.Add(tt.peer)), Origin: "b"}, t0, tt.offset)
		require.NoError(t, err)
		require.True(t, adopted)
		s, _ := h.Set(Normal, t0.Add(tt.clock))
		assert.Equal(t, tt.want, s.Version, "max offset %v, peer's state at %s: Set(NORMAL, %s) stamped %s, want %s",
			tt.offset, sinceT0(tt.peer), sinceT0(tt.clock), stampString(s.Version), stampString(tt.want))
	}
}

// A state this node holds that is stamped past the bound (it wrote or took
// it while its clock was fast) ranks below every state within the bound;
// one within it keeps its place.
func TestMergeOverAHeldStatePastTheBound(t *testing.T) {
	steps := []struct {
		name    string
		clock   time.Duration // the node's clock, from t0
		in      State
		adopted bool
		err     error
		want    State
	}{
		{"an older state from the cluster", 0, State{Status: Normal, Version: stampAt(t0.Add(-time.Minute)), Origin: "b"},
			true, nil, State{Status: Normal, Version: stampAt(t0.Add(-time.Minute)), Origin: "b"}},
		{"then the usual order", 0, State{Status: Degraded, Version: stampAt(t0.Add(-2 * time.Minute)), Origin: "c"},
			false, nil, State{Status: Normal, Version: stampAt(t0.Add(-time.Minute)), Origin: "b"}},
		{"within the offset", 0, State{Status: Degraded, Version: stampAt(t0.Add(400 * time.Millisecond)), Origin: "c"},
			true, nil, State{Status: Degraded, Version: stampAt(t0.Add(400 * time.Millisecond)), Origin: "c"}},
		{"clock back 50ms: still within", -50 * time.Millisecond, State{Status: Normal, Version: stampAt(t0), Origin: "d"},
			false, nil, State{Status: Degraded, Version: stampAt(t0.Add(400 * time.Millisecond)), Origin: "c"}},
		{"a peer an hour ahead", 0, State{Status: Normal, Version: stampAt(t0.Add(time.Hour)), Origin: "e"},
			false, ErrTooFarAhead, State{Status: Degraded, Version: stampAt(t0.Add(400 * time.Millisecond)), Origin: "c"}},
	}
	h := NewHolder("a")
	h.Set(Degraded, t0.Add(time.Hour)) // the clock an hour fast
	var heard []State
	h.OnChange(func(s State) { heard = append(heard, s) })
	var want []State
	for _, st := range steps {
		adopted, err := h.Merge(st.in, t0.Add(st.clock), maxOffset)
		assert.Equal(t, st.adopted, adopted, "%s: Merge(%+v) adopted", st.name, st.in)
		assert.ErrorIs(t, err, st.err, "%s: Merge(%+v) error", st.name, st.in)
		assert.Equal(t, st.want, h.Current(), "%s: Current after Merge", st.name)
		if st.adopted {
			want = append(want, st.in)
		}
	}
	assert.Equal(t, want, heard, "listeners hear of every state adopted, in order")
}

// A peer's state stamped past the bound is refused, whatever it holds, and
// moves nothing: not the state, not the next write's stamp. It is taken
// once the local clock has caught up.
func TestMergeRefusesAStampFarInTheFuture(t *testing.T) {
	last := stampAt(t0.Add(maxOffset)) | (1<<logicalBits - 1)
	tests := []struct {
		name    string
		version uint64
		refused bool
	}{
		{"the last tick within the offset", last, false},
		{"the first tick past it", last + 1, true},
		{"an hour ahead", stampAt(t0.Add(time.Hour)), true},
		{"the end of the 48-bit clock", uint64(1<<(64-logicalBits)-1) << logicalBits, true},
		{"the largest version", math.MaxUint64, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHolder("a")
			in := State{Status: Degraded, Version: tt.version, Origin: "b"}
			adopted, err := h.Merge(in, t0, maxOffset)
			if !tt.refused {
				require.NoError(t, err)
				assert.True(t, adopted)
				return
			}
			assert.False(t, adopted)
			assert.ErrorIs(t, err, ErrTooFarAhead, "Merge(version %d) at t0", tt.version)
			assert.Equal(t, State{Status: Normal}, h.Current())
			s, _ := h.Set(Normal, t0)
			assert.Equal(t, stampAt(t0), s.Version, "the next write's stamp, from the clock")

			caughtUp := in.Stamped().Add(-maxOffset)
			if caughtUp.Year() > 9999 {
				return // a clock that never gets there
			}
			adopted, err = h.Merge(in, caughtUp, maxOffset)
			require.NoError(t, err, "Merge at %v", caughtUp)
			assert.True(t, adopted, "taken once the clock has caught up")
		})
	}
}

// Input that makes no sense, in the stamp, the clock or the offset, is
// refused or read the safe way; nothing wraps round to a stamp that wins.
func TestGarbageStampsNeverWin(t *testing.T) {
	t.Run("decode", func(t *testing.T) {
		for _, in := range []string{
			`{"status":"DEGRADED","version":NaN}`,
			`{"status":"DEGRADED","version":-1}`,
			`{"status":"DEGRADED","version":1.5}`,
			`{"status":"DEGRADED","version":1e30}`,
			`{"status":"DEGRADED","version":18446744073709551616}`,
			`{"status":"DEGRADED","version":"7"}`,
			`{"status":"DEGRADED","version":Infinity}`,
		} {
			s, err := Decode([]byte(in))
			assert.Error(t, err, "Decode(%s) = %+v", in, s)
		}
	})
	t.Run("a clock before 1970 takes only stamps as early", func(t *testing.T) {
		h := NewHolder("a")
		_, err := h.Merge(State{Status: Degraded, Version: stampAt(t0), Origin: "b"}, time.Time{}, maxOffset)
		assert.ErrorIs(t, err, ErrTooFarAhead)
		adopted, err := h.Merge(State{Status: Degraded, Version: 5, Origin: "b"}, time.Time{}, maxOffset)
		require.NoError(t, err)
		assert.True(t, adopted)
	})
	t.Run("a clock past the 48-bit range does not wrap", func(t *testing.T) {
		far := time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC)
		h := NewHolder("a")
		s, _ := h.Set(Degraded, far)
		assert.Greater(t, s.Version, stampAt(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)), "Set at year 20000")
		_, err := NewHolder("b").Merge(s, t0, maxOffset)
		assert.ErrorIs(t, err, ErrTooFarAhead, "a sane clock refuses it")
		adopted, err := h.Merge(State{Status: Normal, Version: math.MaxUint64, Origin: "z"}, far, maxOffset)
		require.NoError(t, err)
		require.True(t, adopted)
		s, _ = h.Set(Degraded, far)
		assert.Equal(t, uint64(math.MaxUint64), s.Version, "the version saturates, it does not wrap to 0")
		s, _ = h.Set(Normal, t0)
		assert.Equal(t, stampAt(t0), s.Version, "the clock set right: stamped from it")
	})
	t.Run("a negative offset is none", func(t *testing.T) {
		h := NewHolder("a")
		adopted, err := h.Merge(State{Status: Degraded, Version: stampAt(t0) + 3, Origin: "b"}, t0, -time.Hour)
		require.NoError(t, err)
		assert.True(t, adopted, "a stamp in the node's own millisecond")
		_, err = h.Merge(State{Status: Normal, Version: stampAt(t0.Add(time.Millisecond)), Origin: "b"}, t0, -time.Hour)
		assert.ErrorIs(t, err, ErrTooFarAhead)
	})
	t.Run("UpdatedAt does not order states", func(t *testing.T) {
		h := NewHolder("a")
		h.Set(Degraded, t0)
		adopted, err := h.Merge(State{Status: Normal, Version: 1, Origin: "z", UpdatedAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, t0, maxOffset)
		require.NoError(t, err)
		assert.False(t, adopted)
	})
}

// Three nodes that hear the same writes in different orders end on the
// same state: the latest write within the bound, ties to the higher
// origin. One of them had written itself while its clock was an hour fast.
func TestThreeNodesConvergeWhateverTheOrder(t *testing.T) {
	write := func(origin string, status Status, clock time.Duration) State {
		s, _ := NewHolder(origin).Set(status, t0.Add(clock))
		return s
	}
	writes := []State{
		write("a", Degraded, 0),
		write("b", Normal, 100*time.Millisecond),
		write("c", Degraded, 100*time.Millisecond), // b's stamp: c wins on origin
		write("d", Normal, -300*time.Millisecond),
		write("fast", Normal, time.Hour), // refused everywhere
	}
	want := writes[2]
	at := t0.Add(time.Second)
	for i, p := range permutations(len(writes)) {
		nodes := []struct {
			h     *Holder
			clock time.Time
			order []int
		}{
			{NewHolder("x"), at.Add(-200 * time.Millisecond), p},
			{NewHolder("y"), at, reversed(p)},
			{NewHolder("z"), at.Add(200 * time.Millisecond), append(slices.Clone(p[2:]), p[:2]...)},
		}
		nodes[2].h.Set(Normal, at.Add(time.Hour)) // z wrote with its clock an hour fast
		for _, n := range nodes {
			for _, w := range n.order {
				_, err := n.h.Merge(writes[w], n.clock, maxOffset)
				if err != nil {
					require.ErrorIs(t, err, ErrTooFarAhead)
					require.Equal(t, "fast", writes[w].Origin, "only the write an hour ahead is refused")
				}
			}
			if !assert.Equal(t, want, n.h.Current(), "order %d %v: %s's state", i, n.order, n.h.origin) {
				return
			}
		}
	}
}

// sinceT0 writes t0+d as "t0", "t0+1h0m0s" or "t0-300ms".
func sinceT0(d time.Duration) string {
	switch {
	case d > 0:
		return "t0+" + d.String()
	case d < 0:
		return "t0" + d.String()
	}
	return "t0"
}

// stampString writes a Version as its millisecond from t0 and its
// logical tick, such as "t0+1h0m0s tick 2".
func stampString(v uint64) string {
	return fmt.Sprintf("%s tick %d", sinceT0(State{Version: v}.Stamped().Sub(t0)), v&logicalMask)
}

// reversed returns a reversed copy of p.
func reversed(p []int) []int {
	r := slices.Clone(p)
	slices.Reverse(r)
	return r
}

// permutations returns every order of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var all [][]int
	for _, p := range permutations(n - 1) {
		for i := range n {
			q := slices.Insert(slices.Clone(p), i, n-1)
			all = append(all, q)
		}
	}
	return all
}

// TooFarAhead draws the line Merge draws: the last tick of the millisecond
// maxOffset after the clock.
func TestTooFarAhead(t *testing.T) {
	tests := []struct {
		stamp  uint64
		offset time.Duration
		want   bool
	}{
		{0, maxOffset, false},
		{stampAt(t0), maxOffset, false},
		{stampAt(t0.Add(maxOffset)) | logicalMask, maxOffset, false},
		{stampAt(t0.Add(maxOffset + time.Millisecond)), maxOffset, true},
		{stampAt(t0.Add(time.Hour)), maxOffset, true},
		{math.MaxUint64, maxOffset, true},
		{stampAt(t0) | logicalMask, -time.Second, false}, // a negative offset is none
		{stampAt(t0.Add(time.Millisecond)), -time.Second, true},
	}
	for _, tt := range tests {
		s := State{Status: Degraded, Version: tt.stamp, Origin: "b"}
		assert.Equal(t, tt.want, s.TooFarAhead(t0, tt.offset), "State{Version: %s}.TooFarAhead(t0, %v)", stampString(tt.stamp), tt.offset)
		h := NewHolder("a")
		_, err := h.Merge(s, t0, tt.offset)
		assert.Equal(t, tt.want, errors.Is(err, ErrTooFarAhead), "Merge(%s, t0, %v) = %v: TooFarAhead disagrees", stampString(tt.stamp), tt.offset, err)
	}
}
