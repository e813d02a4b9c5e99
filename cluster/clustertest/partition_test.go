package clustertest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBlockAndHeal(t *testing.T) {
	p := NewPartition()
	p.Block([]string{"a:1", "b:1"}, []string{"c:1"})
	tests := []struct {
		from, to string
		want     bool
	}{
		{"a:1", "c:1", true},
		{"c:1", "a:1", true},
		{"b:1", "c:1", true},
		{"a:1", "b:1", false},
		{"c:1", "c:1", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, p.Blocked(tt.from, tt.to), "Blocked(%s, %s)", tt.from, tt.to)
	}
	p.Heal()
	assert.False(t, p.Blocked("a:1", "c:1"), "Blocked(a:1, c:1) after Heal")
}

func TestTransport(t *testing.T) {
	p := NewPartition()
	a := newTransport(t, p)
	b := newTransport(t, p)

	// Before the cut, packets and streams get through.
	_, err := a.WriteTo([]byte("hello"), b.Addr())
	require.NoError(t, err)
	select {
	case pkt := <-b.PacketCh():
		assert.Equal(t, "hello", string(pkt.Buf))
	case <-time.After(5 * time.Second):
		t.Fatal("packet a→b never arrived")
	}
	conn, err := a.DialTimeout(b.Addr(), time.Second)
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	require.NoError(t, (<-b.StreamCh()).Close())

	// After the cut, packets vanish and dials fail at once.
	p.Block([]string{a.Addr()}, []string{b.Addr()})
	_, err = b.WriteToAddress([]byte("lost"), memberlist.Address{Addr: a.Addr()})
	require.NoError(t, err, "a dropped packet is not an error")
	_, err = a.DialAddressTimeout(memberlist.Address{Addr: b.Addr()}, time.Second)
	assert.ErrorIs(t, err, ErrBlocked)

	ip, port, err := a.FinalAdvertiseAddr("", 0)
	require.NoError(t, err)
	assert.Equal(t, a.Addr(), net.JoinHostPort(ip.String(), strconv.Itoa(port)), "FinalAdvertiseAddr")
	ip, port, err = a.FinalAdvertiseAddr("127.0.0.1", 0)
	require.NoError(t, err)
	assert.Equal(t, a.Addr(), net.JoinHostPort(ip.String(), strconv.Itoa(port)), "FinalAdvertiseAddr with port 0")
}

func TestNewTransportNeedsSpecificIP(t *testing.T) {
	_, err := NewPartition().NewTransport("0.0.0.0")
	assert.Error(t, err)
}

func newTransport(t *testing.T, p *Partition) *Transport {
	t.Helper()
	tr, err := p.NewTransport("127.0.0.1")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, tr.Shutdown()) })
	return tr
}
