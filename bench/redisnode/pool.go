package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// conn is one connection to Redis with its read buffer and a scratch buffer
// to encode commands in. It is used by one request at a time.
type conn struct {
	nc  net.Conn
	r   *bufio.Reader
	buf []byte
}

// roundTrip sends the command encoded in cmd and reads one reply. A
// non-nil error other than *replyError leaves c out of step: close it.
func (c *conn) roundTrip(cmd []byte) (reply, error) {
	if _, err := c.nc.Write(cmd); err != nil {
		return reply{}, err
	}
	rep, err := readReply(c.r)
	if err != nil {
		return reply{}, err
	}
	if rep.kind == kindError {
		return rep, &replyError{msg: rep.str}
	}
	return rep, nil
}

// pool holds up to size connections to one Redis server, dialled on first
// use. It is safe for concurrent use. Each request takes a connection for
// one command, as a pooled client such as go-redis does: no pipelining
// across requests, so every check is its own round trip.
type pool struct {
	addr   string
	dialer net.Dialer
	// slots holds size entries; a nil entry is a connection not dialled
	// yet (or closed after an error).
	slots chan *conn
}

// newPool returns a pool of size connections to addr.
func newPool(addr string, size int) *pool {
	p := &pool{addr: addr, slots: make(chan *conn, size)}
	for range size {
		p.slots <- nil
	}
	return p
}

// do runs fn on a connection, within ctx: waiting for a free connection,
// dialling, and fn's I/O all end at ctx's deadline. A connection on which fn
// fails for any reason other than an error reply is closed.
func (p *pool) do(ctx context.Context, fn func(*conn) error) error {
	var c *conn
	select {
	case c = <-p.slots:
	case <-ctx.Done():
		return fmt.Errorf("wait for a redis connection: %w", context.Cause(ctx))
	}
	var err error
	defer func() {
		if err != nil && !isReplyError(err) && c != nil {
			_ = c.nc.Close()
			c = nil
		}
		p.slots <- c
	}()
	if c == nil {
		var nc net.Conn
		if nc, err = p.dialer.DialContext(ctx, "tcp", p.addr); err != nil {
			return fmt.Errorf("dial redis %s: %w", p.addr, err)
		}
		c = &conn{nc: nc, r: bufio.NewReaderSize(nc, 4096), buf: make([]byte, 0, 512)}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Time{}
	}
	if err = c.nc.SetDeadline(deadline); err != nil {
		return err
	}
	err = fn(c)
	return err
}

// close closes every idle connection. Calls to do must have ended.
func (p *pool) close() {
	for {
		select {
		case c := <-p.slots:
			if c != nil {
				_ = c.nc.Close()
			}
		default:
			return
		}
	}
}

func isReplyError(err error) bool {
	var re *replyError
	return errors.As(err, &re)
}
