package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/health"
)

// newOfflineNode returns a Node wired like New does, without memberlist, to
// test the delegate alone.
func newOfflineNode(t *testing.T, name string) *Node {
	t.Helper()
	cfg, err := Config{Name: name, Health: health.NewHolder(name)}.withDefaults()
	require.NoError(t, err)
	n := &Node{cfg: cfg, log: cfg.Logger, view: newView(name), warned: map[string]string{}}
	n.numAlive.Store(1)
	n.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 3 }, RetransmitMult: 4}
	cfg.Health.OnChange(n.queueHealth)
	return n
}

func TestHealthBroadcastReplacesOlder(t *testing.T) {
	n := newOfflineNode(t, "a")
	s1, _ := n.cfg.Health.Set(health.Degraded, time.Now())
	s2, _ := n.cfg.Health.Set(health.Normal, time.Now())
	require.Equal(t, 1, n.queue.NumQueued(), "queued messages after two Sets")

	msgs := (&delegate{n: n}).GetBroadcasts(2, 1400)
	require.Len(t, msgs, 1)
	require.Equal(t, msgHealth, msgs[0][0])
	got, err := health.Decode(msgs[0][1:])
	require.NoError(t, err)
	assert.Equal(t, keyOf(s2), keyOf(got), "queued state, not %+v", keyOf(s1))
}

func TestNotifyMsgMergesAndRebroadcasts(t *testing.T) {
	src := health.NewHolder("z")
	s, _ := src.Set(health.Degraded, time.Now())

	n := newOfflineNode(t, "a")
	d := &delegate{n: n}
	buf := encodeHealth(s)
	d.NotifyMsg(buf)
	// memberlist reuses its buffer: scribbling on it must not matter.
	for i := range buf {
		buf[i] = 'x'
	}
	assert.Equal(t, keyOf(s), keyOf(n.cfg.Health.Current()), "state after NotifyMsg")
	assert.Equal(t, 1, n.queue.NumQueued(), "adopted state not queued again")

	// The same state again is not new: nothing more is queued.
	n.queue.Reset()
	d.NotifyMsg(encodeHealth(s))
	assert.Zero(t, n.queue.NumQueued(), "old state queued again")

	// Unknown kinds, garbage and empty messages are ignored.
	d.NotifyMsg([]byte{99, 1, 2})
	d.NotifyMsg([]byte{msgHealth, '{'})
	d.NotifyMsg(nil)
	assert.Equal(t, keyOf(s), keyOf(n.cfg.Health.Current()))
}

func TestPushPullCarriesHealth(t *testing.T) {
	a, b := newOfflineNode(t, "a"), newOfflineNode(t, "b")
	s, _ := a.cfg.Health.Set(health.Degraded, time.Now())
	(&delegate{n: b}).MergeRemoteState((&delegate{n: a}).LocalState(true), true)
	assert.Equal(t, keyOf(s), keyOf(b.cfg.Health.Current()), "b after merging a's LocalState")
	(&delegate{n: b}).MergeRemoteState([]byte{42}, false)
	assert.Equal(t, keyOf(s), keyOf(b.cfg.Health.Current()), "b after unknown push/pull state")
}
