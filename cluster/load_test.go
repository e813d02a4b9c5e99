package cluster

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newLoadNode is an offline node that knows the members named, alive,
// with boot id "boot-<name>".
func newLoadNode(t *testing.T, self string, members ...string) *Node {
	t.Helper()
	n := newOfflineNode(t, self)
	n.boot = []byte("boot-" + self)
	n.boots = map[string]string{}
	n.loads = map[string]loadEntry{}
	now := time.Now()
	n.view.join(self, "127.0.0.1:1", nodeMeta{Boot: "boot-" + self}, now)
	for _, m := range members {
		n.view.join(m, "127.0.0.2:1", nodeMeta{Boot: "boot-" + m}, now)
		n.boots[m] = "boot-" + m
	}
	return n
}

// loadMsg is the wire form of a sample.
func loadMsg(t *testing.T, w wireLoad) []byte {
	t.Helper()
	b, err := json.Marshal(w)
	require.NoError(t, err)
	return append([]byte{msgLoad}, b...)
}

func TestLoadSamplesSpreadAndAge(t *testing.T) {
	n := newLoadNode(t, "a", "b", "c")
	d := &delegate{n: n}
	now := time.Now()
	require.True(t, n.PublishLoad(0.5, 0.7, now))
	assert.Equal(t, 1, n.queue.NumQueued(), "its own sample goes out")
	require.True(t, n.PublishLoad(0.6, 0.6, now))
	assert.Equal(t, 1, n.queue.NumQueued(), "a newer sample replaces the queued one")

	buf := loadMsg(t, wireLoad{Name: "b", Boot: "boot-b", Seq: 5, Signal: 1.5, Demand: 2})
	d.NotifyMsg(buf)
	for i := range buf {
		buf[i] = 'x' // memberlist reuses its buffer
	}
	assert.Equal(t, 2, n.queue.NumQueued(), "a new sample is passed on")
	d.NotifyMsg(loadMsg(t, wireLoad{Name: "b", Boot: "boot-b", Seq: 4, Signal: 9, Demand: 9}))
	d.NotifyMsg(loadMsg(t, wireLoad{Name: "b", Boot: "boot-b", Seq: 5, Signal: 9, Demand: 9}))
	assert.Equal(t, 2, n.queue.NumQueued(), "an older or the same sample is not")

	got := n.Loads(now.Add(time.Second))
	require.Len(t, got, 2)
	assert.Equal(t, MemberLoad{Name: "a", Signal: 0.6, Demand: 0.6, Age: time.Second, Self: true}, got[0])
	assert.Equal(t, "b", got[1].Name)
	assert.Equal(t, 1.5, got[1].Signal)
	assert.Equal(t, 2.0, got[1].Demand)
	assert.GreaterOrEqual(t, got[1].Age, 900*time.Millisecond)
	assert.Equal(t, []string{"a", "b"}, names(n.Loads(now.Add(time.Hour))), "old samples stay, aged: stale is the reader's call")
}

func TestLoadSamplesThatDoNotCount(t *testing.T) {
	n := newLoadNode(t, "a", "b")
	d := &delegate{n: n}
	for _, w := range []wireLoad{
		{Name: "b", Boot: "boot-b", Seq: 1, Signal: -0.1},
		{Name: "b", Boot: "boot-b", Seq: 1, Signal: 10.5},
		{Name: "b", Boot: "boot-b", Seq: 1, Demand: 1e9},
		{Name: "b", Boot: "old-boot", Seq: 9, Signal: 1}, // the process the name no longer stands for
		{Name: "x", Boot: "boot-x", Seq: 1, Signal: 1},   // not a member
		{Name: "a", Boot: "boot-a", Seq: 99, Signal: 9},  // its own, relayed back
		{Name: "", Boot: "boot-b", Seq: 1, Signal: 1},    // no name
	} {
		d.NotifyMsg(loadMsg(t, w))
	}
	d.NotifyMsg([]byte{msgLoad, '{'})
	d.NotifyMsg(append([]byte{msgLoad}, make([]byte, 300)...))
	assert.Empty(t, n.Loads(time.Now()))
	assert.Zero(t, n.queue.NumQueued(), "nothing passed on")

	assert.False(t, n.PublishLoad(math.NaN(), 0, time.Now()))
	assert.False(t, n.PublishLoad(1, math.Inf(1), time.Now()))
	assert.False(t, n.PublishLoad(-1, 0, time.Now()))
	assert.Empty(t, n.Loads(time.Now()), "a bad sample is not published")

	// A member that restarted (new boot id) starts its numbers again.
	d.NotifyMsg(loadMsg(t, wireLoad{Name: "b", Boot: "boot-b", Seq: 7, Signal: 1}))
	n.boots["b"] = "boot-b2"
	d.NotifyMsg(loadMsg(t, wireLoad{Name: "b", Boot: "boot-b2", Seq: 1, Signal: 0.25}))
	require.Len(t, n.Loads(time.Now()), 1)
	assert.Equal(t, 0.25, n.Loads(time.Now())[0].Signal)

	// A member that restarted and sends nothing (its new process has no
	// signal): its old sample is dropped.
	d.NotifyMsg(loadMsg(t, wireLoad{Name: "b", Boot: "boot-b2", Seq: 2, Signal: 0.5}))
	require.Len(t, n.Loads(time.Now()), 1)
	n.boots["b"] = "boot-b3"
	assert.Empty(t, n.Loads(time.Now()), "the sample of b's previous process")
	d.NotifyMsg(loadMsg(t, wireLoad{Name: "b", Boot: "boot-b3", Seq: 1, Signal: 0.5}))

	// A member that left is dropped.
	n.view.leave("b", time.Now())
	assert.Empty(t, n.Loads(time.Now()), "not alive: not a sample")
}

func names(ms []MemberLoad) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// TestLoadSamplesReachEveryNode: over real gossip, each node's sample
// reaches the others.
func TestLoadSamplesReachEveryNode(t *testing.T) {
	nodes := startNodes(t, 3)
	requireAlive(t, nodes, 3)
	for i, n := range nodes {
		require.True(t, n.PublishLoad(float64(i)/4, float64(i)/2, time.Now()))
	}
	for _, n := range nodes {
		require.Eventually(t, func() bool { return len(n.Loads(time.Now())) == 3 }, 10*time.Second, 10*time.Millisecond)
		for i, m := range n.Loads(time.Now()) {
			assert.Equal(t, float64(i)/4, m.Signal)
			assert.Equal(t, float64(i)/2, m.Demand)
		}
	}
}
