package clustertest

import (
	"context"
	"fmt"
	"net"
)

// Dialer returns a TCP dial function, for a client at address from, that
// obeys p: it refuses to connect to a blocked address, and a connection it
// made fails on its next read or write once its two ends are blocked, as a
// connection through a cut network would (without the wait for a TCP
// timeout). Use it for traffic other than gossip, such as gRPC between nodes
// (grpc.WithContextDialer), with the nodes' gRPC addresses in Block.
func (p *Partition) Dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if p.Blocked(from, addr) {
			return nil, fmt.Errorf("dial %s from %s: %w", addr, from, ErrBlocked)
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &cutConn{Conn: conn, cut: func() bool { return p.Blocked(from, addr) }}, nil
	}
}

// cutConn fails every read and write once cut reports true, and closes the
// connection then.
type cutConn struct {
	net.Conn
	cut func() bool
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.cut() {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (c *cutConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err == nil && c.cut() {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return n, err
}
