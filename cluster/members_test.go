package cluster

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestViewTransitions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := newView("b")
	v.join("c", "10.0.0.3:7946", nodeMeta{GRPCAddr: "c:9090", ConfigHash: "h"}, t0)
	v.join("b", "10.0.0.2:7946", nodeMeta{GRPCAddr: "b:9090", ConfigHash: "h"}, t0)
	v.join("a", "10.0.0.1:7946", nodeMeta{GRPCAddr: "a:9090", ConfigHash: "x"}, t0)

	alive := v.alive()
	require.Len(t, alive, 3)
	assert.Equal(t, []string{"a", "b", "c"}, []string{alive[0].Name, alive[1].Name, alive[2].Name}, "alive() order")
	assert.Equal(t, Member{Name: "b", Addr: "10.0.0.2:7946", GRPCAddr: "b:9090", ConfigHash: "h", State: StateAlive, Self: true}, alive[1])
	assert.Equal(t, "x", alive[0].ConfigHash)

	// a announces it is leaving, then goes: left. c just goes: dead.
	v.update("a", "10.0.0.1:7946", nodeMeta{GRPCAddr: "a:9090", ConfigHash: "x", Leaving: true}, t0.Add(time.Second))
	assert.Equal(t, StateLeft, v.leave("a", t0.Add(2*time.Second)), "leave(a) after leaving metadata")
	assert.Equal(t, StateDead, v.leave("c", t0.Add(3*time.Second)), "leave(c) without")
	assert.Empty(t, v.leave("nobody", t0), "leave(unknown)")

	assert.Len(t, v.alive(), 1)
	assert.Len(t, v.all(), 3)
	assert.Equal(t, []string{"10.0.0.3:7946"}, v.addrs(StateDead))
	assert.Equal(t, []string{"10.0.0.2:7946"}, v.addrs(StateAlive))

	// c comes back at a new address with fresh metadata.
	v.join("c", "10.0.0.9:7946", nodeMeta{GRPCAddr: "c2:9090"}, t0.Add(4*time.Second))
	all := v.all()
	assert.Equal(t, Member{Name: "c", Addr: "10.0.0.9:7946", GRPCAddr: "c2:9090", State: StateAlive}, all[2])

	// forget drops only what has been gone since before the cutoff.
	assert.Equal(t, []string{"a"}, v.forget(t0.Add(2500*time.Millisecond)), "forget() names")
	names := []string{}
	for _, m := range v.all() {
		names = append(names, m.Name)
	}
	assert.Equal(t, []string{"b", "c"}, names, "after forget")
}

func TestMetaRoundTrip(t *testing.T) {
	m := nodeMeta{GRPCAddr: "10.0.0.1:9090", ConfigHash: "abc123", Leaving: true}
	b := encodeMeta(m)
	assert.Equal(t, m, decodeMeta(b), "decodeMeta(encodeMeta(%+v))", m)
	assert.Equal(t, nodeMeta{}, decodeMeta([]byte("not json")), "garbage metadata")
	assert.Equal(t, nodeMeta{}, decodeMeta(nil), "no metadata")
}

func TestDialAddr(t *testing.T) {
	tests := []struct{ grpc, gossip, want string }{
		{"10.0.0.1:9090", "10.0.0.2:7946", "10.0.0.1:9090"},
		{"node-a:9090", "10.0.0.2:7946", "node-a:9090"},
		{":9090", "10.0.0.2:7946", "10.0.0.2:9090"},
		{":9090", "[fd00::2]:7946", "[fd00::2]:9090"},
		{":9090", "garbage", ":9090"},
		{"", "10.0.0.2:7946", ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, dialAddr(tt.grpc, tt.gossip), "dialAddr(%q, %q)", tt.grpc, tt.gossip)
	}
	v := newView("a")
	v.join("b", "10.0.0.2:7946", nodeMeta{GRPCAddr: ":9090"}, time.Time{})
	assert.Equal(t, "10.0.0.2:9090", v.alive()[0].GRPCAddr, "a member that published only a port")
}
