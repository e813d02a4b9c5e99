package ownership

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
)

// batchPeer is a fake forward.Peer for the Router's tests. It records
// every call, and by default answers each item with a Decision that says
// which item it was: Limit is the item's Limit and Remaining the number
// after the last "-" in its Key.
type batchPeer struct {
	answer func(forward.Item) bucket.Decision // nil: answerFor
	delay  time.Duration                      // wait this long before answering
	block  bool                               // wait until ctx ends, then fail with ctx.Err()

	// mu guards the fields below.
	mu    sync.Mutex
	err   error // fail every call with err; see setErr
	calls [][]forward.Item
}

func (p *batchPeer) Check(ctx context.Context, items []forward.Item) ([]forward.Result, error) {
	p.mu.Lock()
	p.calls = append(p.calls, append([]forward.Item(nil), items...))
	p.mu.Unlock()

	if p.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if p.delay > 0 {
		select {
		case <-time.After(p.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p.mu.Lock()
	err, answer := p.err, p.answer
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if answer == nil {
		answer = answerFor
	}
	ds := make([]forward.Result, len(items))
	for i, it := range items {
		ds[i] = forward.Result{Decision: answer(it)}
	}
	return ds, nil
}

// answerFor is the Decision batchPeer gives it.
func answerFor(it forward.Item) bucket.Decision {
	n, _ := strconv.Atoi(it.Key[strings.LastIndexByte(it.Key, '-')+1:])
	return bucket.Decision{Allowed: true, Limit: it.Limit, Remaining: n}
}

// batchItem is the item caller i sends.
func batchItem(i int) forward.Item {
	return forward.Item{Key: "key-" + strconv.Itoa(i), Hits: 1, Limit: 1000 + i, Window: time.Minute}
}

// setErr makes later calls fail with err (nil: succeed).
func (p *batchPeer) setErr(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// items returns every item the peer was asked about, in order.
func (p *batchPeer) items() []forward.Item {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []forward.Item
	for _, c := range p.calls {
		all = append(all, c...)
	}
	return all
}

// callSizes returns the number of items of each call, in order.
func (p *batchPeer) callSizes() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	sizes := make([]int, len(p.calls))
	for i, c := range p.calls {
		sizes[i] = len(c)
	}
	return sizes
}

// instantPeer answers every item at once, allowing it.
type instantPeer struct{}

func (instantPeer) Check(_ context.Context, items []forward.Item) ([]forward.Result, error) {
	return make([]forward.Result, len(items)), nil
}
