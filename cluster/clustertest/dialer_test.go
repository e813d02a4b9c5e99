package clustertest

import (
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDialerObeysThePartition(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	server := lis.Addr().String()
	p := NewPartition()
	dial := p.Dialer("client:1")

	conn, err := dial(t.Context(), server)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))

	p.Block([]string{"client:1"}, []string{server})
	_, err = conn.Write([]byte("ping"))
	assert.ErrorIs(t, err, net.ErrClosed, "an open connection breaks once cut")
	_, err = dial(t.Context(), server)
	assert.ErrorIs(t, err, ErrBlocked, "a new connection is refused")

	p.Heal()
	conn2, err := dial(t.Context(), server)
	require.NoError(t, err)
	conn2.Close()
}
