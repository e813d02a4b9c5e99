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
// lock. The reports must not each rebuild the ring: the ones that come in
// while the ring is rebuilt, or held off after, are applied as one.
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
	for i := range burst {
		members = append(members, cluster.Member{Name: fmt.Sprintf("peer-%02d", i), Addr: "127.0.0.250:1", State: cluster.StateAlive})
		nd.membersChanged(members)
	}
	require.Eventually(t, func() bool { return nd.ring.Len() == burst+1 }, 5*time.Second, 5*time.Millisecond,
		"the last report was never applied")
	rebuilds := applied.Load() - before
	assert.GreaterOrEqual(t, rebuilds, int64(1))
	assert.LessOrEqual(t, rebuilds, int64(2), "%d reports took %d ring rebuilds", burst, rebuilds)
}
