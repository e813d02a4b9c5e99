package forward

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Batcher.Check once the Batcher is closed, and
// wrapped in the error of calls the close cut short.
var ErrClosed = errors.New("forward: batcher closed")

// ErrGaveUp is wrapped, with the context's error, in the error of a Check
// whose ctx ended before the answer came: the check may still be counted
// at the peer, and BatchConfig.Abandoned says whether it was.
var ErrGaveUp = errors.New("forward: gave up waiting for the answer")

// ErrNotSent is what BatchConfig.Abandoned gets for a check dropped from
// the queue before it was sent: the peer never saw it.
var ErrNotSent = errors.New("forward: not sent")

// Default values for BatchConfig fields left at zero.
const (
	DefaultMaxBatch     = 1000
	DefaultBatchTimeout = 5 * time.Millisecond
)

// BatchConfig configures a Batcher. Zero values mean the defaults.
type BatchConfig struct {
	// MaxBatch is the most items sent in one call to the peer. Default
	// 1000; values above MaxCheckItems are lowered to it.
	MaxBatch int
	// Timeout is the deadline of one call to the peer, counted from when
	// the batch is sent. Default 5ms.
	Timeout time.Duration
	// Wait, if positive and below Timeout, is how long the Batcher itself
	// waits for a call's answer before it sends the next batch: the
	// checks' deadline, after which they have given up. The call goes on
	// waiting, up to Timeout, in a goroutine of its own (at most MaxLate
	// at once; past that, the Batcher waits for the call itself), so that
	// its answer still settles the checks given up on (Abandoned) while
	// the next checks do not queue behind it. Zero: Timeout.
	Wait time.Duration
	// Report, if not nil, is called with the outcome of every batch sent,
	// once per batch however many callers wait on it (and even if all of
	// them gave up): nil when the peer answered, else the batch's error;
	// and for a batch left to answer late (Wait), first with an error
	// wrapping context.DeadlineExceeded when Wait passes, and then with
	// nil if the answer comes. It runs before the results are delivered,
	// on the Batcher's goroutine or a late call's, and must not block.
	Report func(err error)
	// Abandoned, if not nil, is called once for every check whose caller
	// gave up (Check returned ErrGaveUp), when its fate is known: with the
	// peer's result if its batch was answered (it may have counted hits
	// the caller has decided itself meanwhile, or granted a lease that
	// must not be lost), else with the batch's error, or ErrNotSent if the
	// check was dropped before it was sent; and how long before its call
	// was sent (zero if it was not). It runs on the Batcher's goroutine or
	// a late call's, and must not block.
	Abandoned func(item Item, r Result, err error, sentAgo time.Duration)
}

// withDefaults returns c with zero, negative or too large fields set to
// their defaults or bounds.
func (c BatchConfig) withDefaults() BatchConfig {
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	c.MaxBatch = min(c.MaxBatch, MaxCheckItems)
	if c.Timeout <= 0 {
		c.Timeout = DefaultBatchTimeout
	}
	if c.Wait <= 0 || c.Wait > c.Timeout {
		c.Wait = c.Timeout
	}
	return c
}

// MaxLate bounds the calls one Batcher leaves to answer late (see
// BatchConfig.Wait).
const MaxLate = 16

// Batcher coalesces checks for one peer into batches without waiting to
// fill them. When nothing is in flight, a check goes out at once, alone.
// While a batch is in flight, new checks queue; the moment it returns,
// everything queued (up to MaxBatch) goes out as the next batch. So a quiet
// system pays one round trip per check, and a busy one one round trip per
// batch, with at most one call in flight to the peer.
//
// One goroutine, started by NewBatcher and stopped by Close, sends the
// batches; callers only queue and wait, and their waiting records are
// pooled. A Batcher is safe for concurrent use.
type Batcher struct {
	peer Peer
	cfg  BatchConfig

	ctx    context.Context // parent of every call to peer; cancelled by Close
	cancel context.CancelFunc
	late   sync.WaitGroup // calls left to answer late
	nlate  atomic.Int32   // how many
	wake   chan struct{}  // capacity 1: work was queued
	done   chan struct{}  // closed when run returns
	calls  sync.Pool      // of *call

	// mu guards queue and closed.
	mu     sync.Mutex
	queue  []*call
	closed bool
}

// A call's state moves once from callWaiting to callDone (run delivered a
// result) or to callAbandoned (its caller gave up); whoever moves it second
// puts it back in the pool.
const (
	callWaiting int32 = iota
	callDone
	callAbandoned
)

// call is one caller's check, waiting for its result.
type call struct {
	item  Item
	sent  time.Time // when its batch was sent
	d     Result
	err   error
	state atomic.Int32
	ready chan struct{} // capacity 1; signalled once d and err are set
}

// NewBatcher returns a Batcher that sends batches to peer, and starts its
// goroutine; call Close to stop it. peer.Check must return soon after its
// ctx ends, and must not keep the items slice, which is reused. It panics
// if peer is nil.
func NewBatcher(peer Peer, cfg BatchConfig) *Batcher {
	if peer == nil {
		panic("forward: NewBatcher needs a peer")
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Batcher{
		peer:   peer,
		cfg:    cfg.withDefaults(),
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	b.calls.New = func() any { return &call{ready: make(chan struct{}, 1)} }
	go b.run()
	return b
}

// Check queues item for the next batch and waits for its decision. As
// soon as ctx ends it returns an error wrapping ErrGaveUp and ctx.Err():
// the item may still be counted at the peer if its batch was sent, and
// BatchConfig.Abandoned will say (ctx.Err() alone if ctx had ended before
// the call: nothing was queued). It returns ErrClosed at once if
// the Batcher is closed, and an error wrapping the call's error if the
// batch failed.
func (b *Batcher) Check(ctx context.Context, item Item) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	c := b.calls.Get().(*call)
	c.item = item
	c.state.Store(callWaiting)

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.recycle(c)
		return Result{}, ErrClosed
	}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default: // run is already due to look at the queue
	}

	select {
	case <-c.ready:
	case <-ctx.Done():
		if c.state.CompareAndSwap(callWaiting, callAbandoned) {
			return Result{}, fmt.Errorf("%w: %w", ErrGaveUp, ctx.Err()) // run recycles c
		}
		<-c.ready // the result is being delivered; take it
	}
	d, err := c.d, c.err
	b.recycle(c)
	return d, err
}

// Close stops the Batcher and waits for its goroutine to end. A call in
// flight is cancelled; its callers, and those still queued, get an error
// wrapping ErrClosed. Close may be called more than once.
func (b *Batcher) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	<-b.done
	b.late.Wait()
}

// run sends batches until Close.
func (b *Batcher) run() {
	defer close(b.done)
	var (
		batch []*call
		items []Item
	)
	for {
		select {
		case <-b.wake:
		case <-b.ctx.Done():
		}
		for b.ctx.Err() == nil {
			b.mu.Lock()
			batch = b.take(batch[:0])
			b.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			batch, items = b.send(batch, items[:0])
		}
		if b.ctx.Err() != nil {
			b.mu.Lock()
			queued := b.queue
			b.queue = nil
			b.mu.Unlock()
			for _, c := range queued {
				b.deliver(c, Result{}, ErrClosed)
			}
			return
		}
	}
}

// take moves up to MaxBatch waiting calls from the queue to batch and
// returns batch. Calls whose callers gave up are dropped, not sent. b.mu
// must be held.
func (b *Batcher) take(batch []*call) []*call {
	n := 0 // calls looked at
	for _, c := range b.queue {
		if len(batch) == b.cfg.MaxBatch {
			break
		}
		n++
		if c.state.Load() == callAbandoned {
			if b.cfg.Abandoned != nil {
				b.cfg.Abandoned(c.item, Result{}, ErrNotSent, 0)
			}
			b.recycle(c)
			continue
		}
		batch = append(batch, c)
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:]) // do not pin calls that moved on
	b.queue = b.queue[:rest]
	return batch
}

// send makes one call to the peer for batch, delivers the results, and
// returns batch and items, the buffers it used, for reuse. If the answer
// has not come within Wait, the call is left to a goroutine of its own,
// which keeps both buffers (send returns nil ones), to deliver when it
// comes (see BatchConfig.Wait).
func (b *Batcher) send(batch []*call, items []Item) ([]*call, []Item) {
	now := time.Now()
	for _, c := range batch {
		c.sent = now
		items = append(items, c.item)
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout)
	if b.cfg.Wait >= b.cfg.Timeout || b.nlate.Load() >= MaxLate {
		ds, err := b.peer.Check(ctx, items)
		cancel()
		b.finish(batch, len(items), ds, err)
		clear(items) // do not pin keys
		clear(batch)
		return batch, items
	}
	type answer struct {
		ds  []Result
		err error
	}
	got := make(chan answer, 1)
	b.late.Add(1)
	b.nlate.Add(1)
	go func() {
		defer b.late.Done()
		defer b.nlate.Add(-1)
		defer cancel()
		ds, err := b.peer.Check(ctx, items)
		got <- answer{ds, err}
	}()
	t := time.NewTimer(b.cfg.Wait)
	select {
	case a := <-got:
		t.Stop()
		b.finish(batch, len(items), a.ds, a.err)
		clear(items)
		clear(batch)
		return batch, items
	case <-t.C:
	}
	if b.cfg.Report != nil {
		b.cfg.Report(fmt.Errorf("check batch of %d items: no answer within %v: %w", len(items), b.cfg.Wait, context.DeadlineExceeded))
	}
	b.late.Add(1)
	go func() {
		defer b.late.Done()
		a := <-got
		if a.err != nil {
			b.deliverAll(batch, a.ds, b.batchErr(len(items), a.ds, a.err)) // reported already
			return
		}
		b.finish(batch, len(items), a.ds, nil)
	}()
	return nil, nil // the late call keeps them
}

// finish reports the outcome of a call for batch, n items, and delivers
// its results.
func (b *Batcher) finish(batch []*call, n int, ds []Result, err error) {
	err = b.batchErr(n, ds, err)
	if b.cfg.Report != nil {
		b.cfg.Report(err)
	}
	b.deliverAll(batch, ds, err)
}

// batchErr returns the error of a call for n items that returned ds and
// err, with the batch's size; nil if it answered every item.
func (b *Batcher) batchErr(n int, ds []Result, err error) error {
	switch {
	case err != nil && b.ctx.Err() != nil:
		return fmt.Errorf("check batch of %d items: %w: %w", n, ErrClosed, err)
	case err != nil:
		return fmt.Errorf("check batch of %d items: %w", n, err)
	case len(ds) != n:
		return fmt.Errorf("check batch of %d items: peer returned %d decisions", n, len(ds))
	}
	return nil
}

// deliverAll hands each call of batch its result, or err, the batch's
// error (see batchErr).
func (b *Batcher) deliverAll(batch []*call, ds []Result, err error) {
	for i, c := range batch {
		if err != nil {
			b.deliver(c, Result{}, err)
		} else {
			b.deliver(c, ds[i], nil)
		}
	}
}

// deliver hands a result to c's caller, or recycles c if the caller gave
// up.
func (b *Batcher) deliver(c *call, d Result, err error) {
	c.d, c.err = d, err
	if c.state.CompareAndSwap(callWaiting, callDone) {
		c.ready <- struct{}{} // capacity 1 and sent once: never blocks
		return
	}
	if b.cfg.Abandoned != nil {
		b.cfg.Abandoned(c.item, d, err, time.Since(c.sent))
	}
	b.recycle(c)
}

// recycle clears c and returns it to the pool. Nobody may use c afterwards.
func (b *Batcher) recycle(c *call) {
	c.item = Item{}
	c.sent = time.Time{}
	c.d = Result{}
	c.err = nil
	b.calls.Put(c)
}
