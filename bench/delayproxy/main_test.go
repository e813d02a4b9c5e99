package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProxyDelaysEachWay: through the proxy, over real sockets, bytes
// arrive whole and in order, and a round trip takes at least the delay
// twice. How much longer is the machine's business: the exact timing is
// TestPipeHoldsEachChunk's, on a fake clock.
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
	}
	for i := range 50 {
		_, err := fmt.Fprintf(c, "x%d\n", i)
		require.NoError(t, err)
	}
	for i := range 50 {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("x%d\n", i), line, "message %d of 50 written in a row", i)
	}

	cancel()
	require.NoError(t, <-done)
}

// TestPipeHoldsEachChunk: on a fake clock, each chunk is written exactly
// the delay after it was read, so chunks in a row are delayed, not spaced
// out: 50 written 1 ms apart arrive 1 ms apart, the last 49 ms + the delay
// after the first was written (spaced out, it would be 50 delays).
func TestPipeHoldsEachChunk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 20 * time.Millisecond
		in, src := net.Pipe()  // the test writes in, pipe reads src
		dst, out := net.Pipe() // pipe writes dst, the test reads out
		piped := make(chan struct{})
		go func() { pipe(dst, src, delay); close(piped) }()

		start := time.Now()
		type arrival struct {
			b  string
			at time.Duration
		}
		arrivals := make(chan arrival, 64)
		go func() {
			defer close(arrivals)
			buf := make([]byte, 64)
			for {
				n, err := out.Read(buf)
				if err != nil {
					return
				}
				arrivals <- arrival{string(buf[:n]), time.Since(start)}
			}
		}()

		var want []arrival
		for i := range 50 {
			b := fmt.Sprintf("x%d\n", i)
			_, err := in.Write([]byte(b))
			require.NoError(t, err)
			want = append(want, arrival{b, time.Duration(i)*time.Millisecond + delay})
			time.Sleep(time.Millisecond)
		}
		require.NoError(t, in.Close())
		<-piped // src ended: pipe wrote what it held, then returned
		require.NoError(t, out.Close())
		var got []arrival
		for a := range arrivals {
			got = append(got, a)
		}
		assert.Equal(t, want, got, "chunks as they left the pipe, with when")
		_ = src.Close()
		_ = dst.Close()
	})
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-listen", "127.0.0.1:0"}, {"-listen", "127.0.0.1:0", "-target", "x:1", "-delay", "-1ms"}} {
		assert.Error(t, run(t.Context(), args, io.Discard), "run(%q)", args)
	}
}
