package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPacketsArriveAndAreCounted(t *testing.T) {
	n := NewNetwork()
	a, b := n.NewTransport(), n.NewTransport()
	require.NotEqual(t, a.Addr(), b.Addr())

	msg := []byte("hello")
	_, err := a.WriteToAddress(msg, memberlist.Address{Addr: b.Addr()})
	require.NoError(t, err)
	msg[0] = 'j' // the sender may reuse its buffer
	select {
	case p := <-b.PacketCh():
		assert.Equal(t, "hello", string(p.Buf))
		assert.Equal(t, a.Addr(), p.From.String())
	case <-time.After(time.Second):
		t.Fatal("WriteToAddress(hello, b): nothing arrived")
	}
	pk, st := a.Sent()
	assert.Equal(t, Bytes{Raw: 5}, pk, "a.Sent() packets")
	assert.Zero(t, st, "a.Sent() streams")
}

func TestStoppedTransportsDropAndRefuse(t *testing.T) {
	n := NewNetwork()
	a, b := n.NewTransport(), n.NewTransport()
	require.NoError(t, b.Shutdown())
	require.NoError(t, b.Shutdown(), "second Shutdown")

	_, err := a.WriteToAddress([]byte("x"), memberlist.Address{Addr: b.Addr()})
	assert.NoError(t, err, "a packet to a stopped member is lost, not an error")
	_, err = a.DialAddressTimeout(memberlist.Address{Addr: b.Addr()}, time.Second)
	assert.ErrorIs(t, err, errRefused, "dial to a stopped member")
	_, err = a.DialAddressTimeout(memberlist.Address{Addr: "127.0.0.1:1"}, time.Second)
	assert.ErrorIs(t, err, errRefused, "dial to nobody")

	_, err = b.WriteToAddress([]byte("x"), memberlist.Address{Addr: a.Addr()})
	require.NoError(t, err)
	select {
	case <-a.PacketCh():
		t.Fatal("a stopped member's packet arrived")
	default:
	}
}

func TestFullQueueDrops(t *testing.T) {
	n := NewNetwork()
	a, b := n.NewTransport(), n.NewTransport()
	for range packetQueue + 3 {
		_, err := a.WriteToAddress([]byte("x"), memberlist.Address{Addr: b.Addr()})
		require.NoError(t, err)
	}
	assert.Equal(t, uint64(3), n.Dropped())
}

func TestStreamsAreCounted(t *testing.T) {
	n := NewNetwork()
	a, b := n.NewTransport(), n.NewTransport()
	go func() {
		c := <-b.StreamCh()
		defer c.Close()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err == nil {
			_, _ = c.Write([]byte("pong!"))
		}
	}()
	c, err := a.DialAddressTimeout(memberlist.Address{Addr: b.Addr()}, time.Second)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "pong!", string(got))
	_, ast := a.Sent()
	_, bst := b.Sent()
	assert.Equal(t, uint64(4), ast.Raw, "bytes a wrote")
	assert.Equal(t, uint64(5), bst.Raw, "bytes b wrote")
	assert.Equal(t, uint64(1), a.Dials())
}

func TestDeafTransportDropsOnlyUserMessages(t *testing.T) {
	n := NewNetwork()
	a, b := n.NewTransport(), n.NewTransport()
	b.DropUserMessages(true)
	send := func(p []byte) {
		t.Helper()
		_, err := a.WriteToAddress(p, memberlist.Address{Addr: b.Addr()})
		require.NoError(t, err)
	}
	send([]byte{userMsg, 1})
	send(joinCompound([][]byte{{0, 1}, {userMsg, 2}}))
	select {
	case p := <-b.PacketCh():
		assert.Equal(t, []byte{0, 1}, p.Buf, "the ping without the user message")
	case <-time.After(time.Second):
		t.Fatal("the ping did not arrive")
	}
	select {
	case p := <-b.PacketCh():
		t.Fatalf("packet %v arrived, want none", p.Buf)
	default:
	}
}

func TestEstimateSamplesCompressedSize(t *testing.T) {
	n := NewNetwork()
	n.Estimate(true)
	a, b := n.NewTransport(), n.NewTransport()
	big := joinCompound([][]byte{
		[]byte(strings.Repeat("alive m1 127.0.0.1:10001 ", 20)),
		[]byte(strings.Repeat("alive m2 127.0.0.1:10002 ", 20)),
	})
	for range sampleEvery {
		_, err := a.WriteToAddress(big, memberlist.Address{Addr: b.Addr()})
		require.NoError(t, err)
	}
	pk, _ := a.Sent()
	assert.Equal(t, uint64(sampleEvery*len(big)), pk.Raw)
	assert.Equal(t, uint64(len(big)), pk.SampleRaw, "one packet in %d sampled", sampleEvery)
	assert.Less(t, pk.Wire(), float64(pk.Raw)/2, "a repetitive packet compresses")
	assert.Equal(t, float64(pk.Raw), Bytes{Raw: pk.Raw}.Wire(), "no sample: raw")
}

func TestPacketWire(t *testing.T) {
	ping := []byte{0, 1, 2, 3}
	assert.Equal(t, len(ping), packetWire(ping), "a short message does not shrink: sent raw")
	long := []byte(strings.Repeat("abcd", 100))
	assert.Less(t, packetWire(withCRC(long)), len(long)/2)
	assert.Less(t, streamWire(long), len(long)/2)
}

func TestBytesArithmetic(t *testing.T) {
	a := Bytes{Raw: 10, SampleRaw: 4, SampleWire: 2}
	b := Bytes{Raw: 30, SampleRaw: 8, SampleWire: 2}
	assert.Equal(t, Bytes{40, 12, 4}, a.Plus(b))
	assert.Equal(t, Bytes{20, 4, 0}, b.Minus(a))
	assert.InDelta(t, 5.0, a.Wire(), 1e-9)
}
