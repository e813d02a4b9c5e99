package peer

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tierlimit/tierlimit/peerpb"
)

// How a Client's stream ends when nobody is left to hear it from the peer;
// calls waiting on the stream fail with these.
var (
	errClientClosed = status.Error(codes.Canceled, "client closed")
	errStreamEnded  = status.Error(codes.Unavailable, "stream ended by the peer")
	errSendStalled  = status.Error(codes.Unavailable, "stream stalled: a send outlived its caller's context")
	errPeerDraining = status.Error(codes.Unavailable, "peer stopping")
)

// unaryFor is how long a Client sends unary calls to a peer that has no
// CheckStream before it tries the stream again.
const unaryFor = time.Minute

// stream is one CheckStream of a Client. Its requests carry ids; a
// receive goroutine, started when the stream becomes the Client's current
// one, hands each response to the call waiting for its id.
type stream struct {
	rpc     peerpb.Peer_CheckStreamClient
	ctx     context.Context // the stream's; its cause says who ended it
	cancel  context.CancelCauseFunc
	sending chan struct{} // capacity 1: holds a token while a call sends
	// stalled is the id of the request being sent, 0 when none: a call
	// whose ctx ends while its Send is stuck ends the stream.
	stalled atomic.Uint64

	// Guarded by the Client's mu:
	pending  map[uint64]*waiter // calls waiting for an answer, by id; nil once broken
	draining bool               // the peer is stopping: no new calls, end when pending is empty
}

// waiter is where a call waits for its answer. Waiters are pooled; a waiter
// is empty when its call returns.
type waiter struct {
	reply chan reply // capacity 1; one reply per call
}

// reply is the answer to one request: a response, or why there is none.
type reply struct {
	resp *peerpb.CheckResponse
	err  error
}

// roundTrip sends req on the current stream, opening one if needed, and
// waits through w for the answer or for ctx to end. The error, if any, is
// the stream's or ctx's, unwrapped.
func (c *Client) roundTrip(ctx context.Context, w *waiter, req *peerpb.CheckRequest) (*peerpb.CheckResponse, error) {
	s, id, err := c.register(ctx, w)
	if err != nil {
		return nil, err
	}
	req.Id = id
	c.send(ctx, s, req)
	// A failed send is not handled here: it ends the stream, and the
	// receive goroutine then fails every call waiting on it, this one too.
	var r reply
	select {
	case r = <-w.reply:
	case <-ctx.Done():
		if c.abandon(s, id) {
			return nil, contextError{ctx.Err()}
		}
		r = <-w.reply // the answer is being handed over; take it
	}
	return r.resp, r.err
}

// opening is an attempt to open a stream, which calls that find no stream
// wait for rather than each opening one.
type opening struct {
	done chan struct{} // closed when the attempt ended
	err  error         // why it failed, set before done is closed
}

// register enters w as waiting on the current stream, opening one first if
// there is none, and returns the stream and the id to send with.
func (c *Client) register(ctx context.Context, w *waiter) (*stream, uint64, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, 0, errClientClosed
		}
		if s := c.cur; s != nil {
			c.nextID++
			id := c.nextID
			s.pending[id] = w
			c.mu.Unlock()
			return s, id, nil
		}
		if o := c.opening; o != nil {
			c.mu.Unlock()
			select {
			case <-o.done:
			case <-ctx.Done():
				return nil, 0, contextError{ctx.Err()}
			}
			var cerr contextError
			if o.err != nil && !errors.As(o.err, &cerr) {
				return nil, 0, o.err // the peer cannot be reached now
			}
			continue // opened, or the opener gave up: look again
		}
		o := &opening{done: make(chan struct{})}
		c.opening = o
		c.mu.Unlock()

		s, err := c.open(ctx)
		c.mu.Lock()
		c.opening = nil
		switch {
		case err != nil:
		case c.closed:
			s.cancel(errClientClosed)
			err = errClientClosed
		default:
			c.cur = s
			c.recvs.Add(1)
			go c.receive(s)
		}
		c.mu.Unlock()
		o.err = err
		close(o.done)
		if err != nil {
			return nil, 0, err
		}
	}
}

// open opens a new stream. ctx bounds only the wait for a connection: the
// stream itself lives until it breaks or the Client is closed.
func (c *Client) open(ctx context.Context) (*stream, error) {
	sctx, cancel := context.WithCancelCause(c.ctx)
	stop := context.AfterFunc(ctx, func() { cancel(ctx.Err()) })
	rpc, err := c.rpc.CheckStream(sctx)
	if !stop() {
		cancel(nil)
		return nil, contextError{ctx.Err()}
	}
	if err != nil {
		cancel(nil)
		if cause := context.Cause(c.ctx); cause != nil {
			return nil, cause // closed while opening
		}
		return nil, err
	}
	return &stream{
		rpc:     rpc,
		ctx:     sctx,
		cancel:  cancel,
		sending: make(chan struct{}, 1),
		pending: make(map[uint64]*waiter),
	}, nil
}

// send sends req, whose id is registered, on s, one call at a time. It
// gives up when ctx ends, before sending or, if Send blocks (the peer stopped
// reading), by ending the stream.
func (c *Client) send(ctx context.Context, s *stream, req *peerpb.CheckRequest) {
	select {
	case s.sending <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-s.sending }()
	if ctx.Err() != nil {
		return
	}
	id := req.GetId()
	s.stalled.Store(id)
	stop := context.AfterFunc(ctx, func() {
		if s.stalled.Load() == id {
			s.cancel(errSendStalled)
		}
	})
	_ = s.rpc.Send(req) // see roundTrip
	s.stalled.Store(0)
	stop()
}

// abandon removes the call with id from s after its caller gave up, and
// reports whether it was still waiting; if not, its answer is being handed
// over.
func (c *Client) abandon(s *stream, id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := s.pending[id]; !ok {
		return false
	}
	delete(s.pending, id)
	s.endIfDrained()
	return true
}

// receive hands each response on s to the call waiting for its id, until
// the stream ends; then it fails the calls still waiting. It drops answers
// nobody waits for any more.
func (c *Client) receive(s *stream) {
	defer c.recvs.Done()
	for {
		resp, err := s.rpc.Recv()
		if err != nil {
			c.broke(s, err)
			return
		}
		var w *waiter
		c.mu.Lock()
		if resp.GetDraining() {
			s.draining = true
			if c.cur == s {
				c.cur = nil // new calls go on a new stream
			}
		} else if w = s.pending[resp.GetId()]; w != nil {
			delete(s.pending, resp.GetId())
		}
		s.endIfDrained()
		c.mu.Unlock()
		if w != nil {
			w.reply <- reply{resp: resp} // capacity 1, one reply per call: never blocks
		}
	}
}

// broke fails every call waiting on s, which ended with err, and makes sure
// no new call goes on it.
func (c *Client) broke(s *stream, err error) {
	switch cause := context.Cause(s.ctx); {
	case cause != nil:
		err = cause // we ended it; say why
	case errors.Is(err, io.EOF):
		err = errStreamEnded
	case status.Code(err) == codes.Unimplemented:
		c.unaryUntil.Store(time.Now().Add(unaryFor).UnixNano())
	}
	c.mu.Lock()
	if c.cur == s {
		c.cur = nil
	}
	waiting := s.pending
	s.pending = nil
	c.mu.Unlock()
	s.cancel(nil) // frees the stream
	for _, w := range waiting {
		w.reply <- reply{err: err}
	}
}

// endIfDrained ends s once the peer asked for it and no call waits on it.
// The Client's mu must be held.
func (s *stream) endIfDrained() {
	if s.draining && len(s.pending) == 0 {
		s.cancel(errPeerDraining)
	}
}

// contextError is the error of a call whose ctx ended first: errors.Is
// matches ctx.Err(), and status.Code gives the gRPC code for it, as for a
// unary call.
type contextError struct{ err error }

func (e contextError) Error() string              { return e.err.Error() }
func (e contextError) Unwrap() error              { return e.err }
func (e contextError) GRPCStatus() *status.Status { return status.FromContextError(e.err) }
