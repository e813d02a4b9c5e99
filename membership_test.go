package tierlimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/cluster"
)

func TestMemberReportsKeepOnlyTheLatest(t *testing.T) {
	r := newMemberReports()
	_, ok := r.take()
	assert.False(t, ok, "nothing reported yet")

	r.put([]cluster.Member{{Name: "a"}})
	r.put([]cluster.Member{{Name: "a"}, {Name: "b"}})
	assert.Len(t, r.ready, 1, "two reports, one wake-up")
	got, ok := r.take()
	require.True(t, ok)
	assert.Equal(t, []cluster.Member{{Name: "a"}, {Name: "b"}}, got)
	_, ok = r.take()
	assert.False(t, ok, "the report was taken")
}

// messageCounter counts the log records with one message.
type messageCounter struct {
	msg string
	n   *atomic.Int64
}

func (c messageCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c messageCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c messageCounter) WithGroup(string) slog.Handler            { return c }
func (c messageCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == c.msg {
		c.n.Add(1)
	}
	return nil
}

// A cluster forming reports one change per member, under memberlist's
// lock. The reports must not each rebuild the ring: those that come in
// while the ring is rebuilt are applied as one.
func TestRingRebuildsCoalesceABurstOfMemberReports(t *testing.T) {
	applied := &atomic.Int64{}
	c := startCluster(t, 1, clusterOpts{logs: messageCounter{"members changed", applied}})
	nd := c.nodes[0]
	require.Eventually(t, func() bool {
		nd.pending.mu.Lock()
		defer nd.pending.mu.Unlock()
		return !nd.pending.fresh
	}, 5*time.Second, 5*time.Millisecond, "the node's own join was never applied")
	before := applied.Load()

	members := nd.node.Alive()
	require.Len(t, members, 1)
	const burst = 50
	nd.applyMu.Lock() // as if a rebuild were running while the reports come in
	for i := range burst {
		members = append(members, cluster.Member{Name: fmt.Sprintf("peer-%02d", i), Addr: "127.0.0.250:1", State: cluster.StateAlive})
		nd.membersChanged(members)
	}
	nd.applyMu.Unlock()
	// The apply logs "members changed" after it sets the ring: wait for both.
	require.Eventually(t, func() bool { return nd.ring.Len() == burst+1 && applied.Load() > before }, 5*time.Second,
		5*time.Millisecond, "the last report was never applied")
	assert.Equal(t, int64(1), applied.Load()-before, "%d reports in one rebuild", burst)
}

func TestPacerLetsALoneChangeThroughAndPacesAStorm(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	var p pacer
	assert.Zero(t, p.hold(t0), "nothing owed at first")

	// An apply of 3 ms (60 members) owes 60 ms: well inside the burst.
	p.paid(t0, t0.Add(3*time.Millisecond))
	assert.Zero(t, p.hold(t0.Add(3*time.Millisecond)), "a change right after one is applied at once")

	// Five more in a row: 6 × 60 ms = 360 ms owed, 110 ms over the burst.
	at := t0.Add(3 * time.Millisecond)
	for range 5 {
		p.paid(at, at.Add(3*time.Millisecond))
		at = at.Add(3 * time.Millisecond)
	}
	owed := 6 * 60 * time.Millisecond // nothing is paid back while an apply runs
	assert.Equal(t, owed-ringBurst, p.hold(at), "a storm waits for what it owes above the burst")
	assert.Equal(t, owed-ringBurst-10*time.Millisecond, p.hold(at.Add(10*time.Millisecond)), "paid back in real time")
	assert.Zero(t, p.hold(at.Add(owed-ringBurst)), "paid down to the burst: at once again")

	// One very slow apply (a starved machine: 2 s would owe 40 s) holds
	// the next change back at most maxRingHold, and is paid back as soon.
	p.paid(at, at.Add(2*time.Second))
	at = at.Add(2 * time.Second)
	assert.Equal(t, maxRingHold, p.hold(at))
	assert.Zero(t, p.hold(at.Add(maxRingHold)), "a change a second later is applied at once")
}
