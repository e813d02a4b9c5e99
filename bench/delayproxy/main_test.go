package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProxyDelaysEachWay: a round trip through the proxy takes the delay
// twice, and bytes arrive whole and in order.
func TestProxyDelaysEachWay(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	const delay = 20 * time.Millisecond
	p := &proxy{target: echo.Addr().String(), delay: delay, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.serve(ctx, lis) }()

	c, err := net.Dial("tcp", lis.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	for i := range 3 {
		start := time.Now()
		_, err := c.Write([]byte("ping\n"))
		require.NoError(t, err)
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		took := time.Since(start)
		assert.Equal(t, "ping\n", line)
		assert.GreaterOrEqual(t, took, 2*delay, "round trip %d", i)
		assert.Less(t, took, 2*delay+200*time.Millisecond, "round trip %d", i)
	}
	// Many chunks in a row are delayed, not spaced out: a second's worth
	// of writes arrives about one round trip after the last one.
	start := time.Now()
	for range 50 {
		_, err := c.Write([]byte("x\n"))
		require.NoError(t, err)
	}
	for range 50 {
		_, err := r.ReadString('\n')
		require.NoError(t, err)
	}
	assert.Less(t, time.Since(start), 20*delay, "50 pipelined messages")

	cancel()
	require.NoError(t, <-done)
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-listen", "127.0.0.1:0"}, {"-listen", "127.0.0.1:0", "-target", "x:1", "-delay", "-1ms"}} {
		assert.Error(t, run(t.Context(), args, io.Discard), "run(%q)", args)
	}
}
