package forward

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
)

// batchPeer is a fake Peer. It records every call, and by default answers
// each item with a Decision that says which item it was: Limit is the
// item's Limit and Remaining the number after the last "-" in its Key.
type batchPeer struct {
	answer func(Item) bucket.Decision // nil: answerFor
	delay  time.Duration              // wait this long before answering
	block  bool                       // wait until ctx ends, then fail with ctx.Err()
	short  bool                       // return one decision too few

	// mu guards the fields below.
	mu       sync.Mutex
	err      error // fail every call with err
	calls    [][]Item
	inFlight int
	maxIn    int
	left     []time.Duration // time left until the deadline, per call
}

func (p *batchPeer) Check(ctx context.Context, items []Item) ([]Result, error) {
	p.mu.Lock()
	p.calls = append(p.calls, append([]Item(nil), items...))
	p.inFlight++
	p.maxIn = max(p.maxIn, p.inFlight)
	if dl, ok := ctx.Deadline(); ok {
		p.left = append(p.left, time.Until(dl))
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
	}()

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
	ds := make([]Result, len(items))
	for i, it := range items {
		ds[i] = Result{Decision: answer(it)}
	}
	if p.short {
		ds = ds[:len(ds)-1]
	}
	return ds, nil
}

// answerFor is the Decision batchPeer gives it.
func answerFor(it Item) bucket.Decision {
	n, _ := strconv.Atoi(it.Key[strings.LastIndexByte(it.Key, '-')+1:])
	return bucket.Decision{Allowed: true, Limit: it.Limit, Remaining: n}
}

// batchItem is the item caller i sends.
func batchItem(i int) Item {
	return Item{Key: "key-" + strconv.Itoa(i), Hits: 1, Limit: 1000 + i, Window: time.Minute}
}

func (p *batchPeer) callSizes() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	sizes := make([]int, len(p.calls))
	for i, c := range p.calls {
		sizes[i] = len(c)
	}
	return sizes
}

// newTestBatcher returns a Batcher for p, closed when the test ends.
func newTestBatcher(t *testing.T, p Peer, cfg BatchConfig) *Batcher {
	t.Helper()
	b := NewBatcher(p, cfg)
	t.Cleanup(b.Close)
	return b
}

func TestBatcherQuietSendsEachItemAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &batchPeer{delay: time.Millisecond}
		b := newTestBatcher(t, p, BatchConfig{})
		for i := range 5 {
			start := time.Now()
			d, err := b.Check(t.Context(), batchItem(i))
			require.NoError(t, err, "Check(item %d)", i)
			assert.Equal(t, answerFor(batchItem(i)), d.Decision, "Check(item %d)", i)
			assert.Equal(t, time.Millisecond, time.Since(start), "Check(item %d) took %v; want only the peer's delay", i, time.Since(start))
		}
		assert.Equal(t, []int{1, 1, 1, 1, 1}, p.callSizes(), "sizes of the calls to the peer")
	})
}

func TestBatcherBusyCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &batchPeer{delay: time.Millisecond}
		b := newTestBatcher(t, p, BatchConfig{})
		const callers = 200
		got := make([]Result, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() { got[i], errs[i] = b.Check(t.Context(), batchItem(i)) })
		}
		wg.Wait()

		for i := range callers {
			if assert.NoError(t, errs[i], "Check(item %d)", i) {
				assert.Equal(t, answerFor(batchItem(i)), got[i].Decision, "Check(item %d) got another item's decision", i)
			}
		}
		sizes := p.callSizes()
		total := 0
		for _, n := range sizes {
			total += n
		}
		assert.Equal(t, callers, total, "items sent over %d calls: %v", len(sizes), sizes)
		assert.LessOrEqual(t, len(sizes), 5, "200 concurrent checks took %d calls (%v), want a handful", len(sizes), sizes)
		assert.Equal(t, 1, p.maxIn, "calls in flight at once")
	})
}

func TestBatcherRespectsMaxBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &batchPeer{delay: time.Millisecond}
		b := newTestBatcher(t, p, BatchConfig{MaxBatch: 10})
		var wg sync.WaitGroup
		for i := range 55 {
			wg.Go(func() {
				d, err := b.Check(t.Context(), batchItem(i))
				if assert.NoError(t, err) {
					assert.Equal(t, answerFor(batchItem(i)), d.Decision)
				}
			})
		}
		wg.Wait()
		for _, n := range p.callSizes() {
			assert.LessOrEqual(t, n, 10, "call sizes %v, want each at most MaxBatch 10", p.callSizes())
		}
		assert.Equal(t, 1, p.maxIn, "calls in flight at once")
	})
}

func TestBatcherCallDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tests := []struct {
			cfg  BatchConfig
			want time.Duration
		}{
			{BatchConfig{}, DefaultBatchTimeout},
			{BatchConfig{Timeout: 20 * time.Millisecond}, 20 * time.Millisecond},
		}
		for _, tc := range tests {
			p := &batchPeer{}
			b := newTestBatcher(t, p, tc.cfg)
			_, err := b.Check(t.Context(), batchItem(1))
			require.NoError(t, err)
			assert.Equal(t, []time.Duration{tc.want}, p.left, "deadline of the call with %+v", tc.cfg)
		}
	})
}

func TestBatcherFailures(t *testing.T) {
	errDown := errors.New("peer down")
	tests := []struct {
		name    string
		peer    *batchPeer
		wantIs  error
		wantMsg string
	}{
		{"call fails", &batchPeer{delay: time.Millisecond, err: errDown}, errDown, "peer down"},
		{"call times out", &batchPeer{block: true}, context.DeadlineExceeded, "deadline exceeded"},
		{"wrong number of decisions", &batchPeer{delay: time.Millisecond, short: true}, nil, "returned"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var reports []error
				b := newTestBatcher(t, tc.peer, BatchConfig{Report: func(err error) {
					mu.Lock()
					reports = append(reports, err)
					mu.Unlock()
				}})
				var wg sync.WaitGroup
				for i := range 20 {
					wg.Go(func() {
						d, err := b.Check(t.Context(), batchItem(i))
						if assert.Error(t, err, "Check(item %d) = %+v", i, d) {
							assert.ErrorContains(t, err, tc.wantMsg)
							if tc.wantIs != nil {
								assert.ErrorIs(t, err, tc.wantIs)
							}
						}
						assert.Equal(t, Result{}, d)
					})
				}
				wg.Wait()
				assert.Less(t, len(tc.peer.callSizes()), 20, "every item got its own call: %v", tc.peer.callSizes())
				mu.Lock()
				defer mu.Unlock()
				assert.Len(t, reports, len(tc.peer.callSizes()), "Report calls: one per batch, not per item")
				for _, err := range reports {
					assert.ErrorContains(t, err, tc.wantMsg)
				}
			})
		})
	}
}

func TestBatcherCallerGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &batchPeer{delay: 4 * time.Millisecond}
		b := newTestBatcher(t, p, BatchConfig{})

		// A is sent; B queues behind it, and both give up after 1ms.
		ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
		defer cancel()
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				start := time.Now()
				_, err := b.Check(ctx, batchItem(i))
				assert.ErrorIs(t, err, context.DeadlineExceeded, "Check(item %d)", i)
				assert.Equal(t, time.Millisecond, time.Since(start), "Check(item %d) returned after", i)
			})
			synctest.Wait() // A is in flight before B queues
		}
		wg.Wait()

		// A's result arrives at 4ms and is dropped; B, abandoned in the queue,
		// is never sent.
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, []int{1}, p.callSizes(), "sizes of the calls to the peer")

		// The Batcher still works, and results do not cross.
		for i := 2; i < 5; i++ {
			d, err := b.Check(t.Context(), batchItem(i))
			require.NoError(t, err, "Check(item %d)", i)
			assert.Equal(t, answerFor(batchItem(i)), d.Decision, "Check(item %d)", i)
		}
	})
}

func TestBatcherCheckWithEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &batchPeer{}
		b := newTestBatcher(t, p, BatchConfig{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := b.Check(ctx, batchItem(1))
		assert.ErrorIs(t, err, context.Canceled)
		synctest.Wait()
		assert.Empty(t, p.callSizes(), "a check whose ctx had ended reached the peer")
	})
}

func TestBatcherCloseWithCallersWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &batchPeer{block: true}
		b := NewBatcher(p, BatchConfig{Timeout: time.Hour})
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				_, err := b.Check(t.Context(), batchItem(i))
				assert.ErrorIs(t, err, ErrClosed, "Check(item %d) during Close", i)
			})
		}
		synctest.Wait() // one item in flight, the rest queued
		require.Len(t, p.callSizes(), 1)

		b.Close()
		wg.Wait()
		_, err := b.Check(t.Context(), batchItem(99))
		assert.ErrorIs(t, err, ErrClosed, "Check after Close")
		b.Close() // a second Close is harmless
		// synctest.Test fails if a goroutine of the bubble is left blocked.
	})
}

func TestBatcherConfigDefaults(t *testing.T) {
	tests := []struct {
		in, want BatchConfig
	}{
		{BatchConfig{}, BatchConfig{MaxBatch: DefaultMaxBatch, Timeout: DefaultBatchTimeout, Wait: DefaultBatchTimeout}},
		{BatchConfig{MaxBatch: -1, Timeout: -1, Wait: -1}, BatchConfig{MaxBatch: DefaultMaxBatch, Timeout: DefaultBatchTimeout, Wait: DefaultBatchTimeout}},
		{BatchConfig{MaxBatch: MaxCheckItems + 1, Timeout: time.Second}, BatchConfig{MaxBatch: MaxCheckItems, Timeout: time.Second, Wait: time.Second}},
		{BatchConfig{MaxBatch: 7, Timeout: time.Millisecond}, BatchConfig{MaxBatch: 7, Timeout: time.Millisecond, Wait: time.Millisecond}},
		{BatchConfig{Timeout: time.Second, Wait: 4 * time.Millisecond}, BatchConfig{MaxBatch: DefaultMaxBatch, Timeout: time.Second, Wait: 4 * time.Millisecond}},
		{BatchConfig{Timeout: time.Millisecond, Wait: time.Second}, BatchConfig{MaxBatch: DefaultMaxBatch, Timeout: time.Millisecond, Wait: time.Millisecond}},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.in.withDefaults(), "%+v.withDefaults()", tc.in)
	}
}

func TestNewBatcherPanicsWithoutPeer(t *testing.T) {
	assert.Panics(t, func() { NewBatcher(nil, BatchConfig{}) })
}

// instantPeer answers every item at once, allowing it.
type instantPeer struct{}

func (instantPeer) Check(_ context.Context, items []Item) ([]Result, error) {
	return make([]Result, len(items)), nil
}

func BenchmarkBatcherCheck(b *testing.B) {
	bt := NewBatcher(instantPeer{}, BatchConfig{})
	defer bt.Close()
	ctx := context.Background()
	item := batchItem(1)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bt.Check(ctx, item); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := bt.Check(ctx, item); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// gatedPeer answers every call once its gate opens, admitting each item.
type gatedPeer struct {
	gate chan struct{}
	sent chan int // the number of items of each call, as it arrives
}

func (p *gatedPeer) Check(ctx context.Context, items []Item) ([]Result, error) {
	p.sent <- len(items)
	select {
	case <-p.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ds := make([]Result, len(items))
	for i := range ds {
		ds[i] = Result{Decision: bucket.Decision{Allowed: true, Limit: 10, Remaining: 9}}
	}
	return ds, nil
}

// fate is one call of BatchConfig.Abandoned.
type fate struct {
	key string
	res Result
	err error
}

// TestBatcherTellsTheFateOfEveryCheckGivenUp: a check whose caller gives
// up returns ErrGaveUp, and Abandoned then says what became of it, once:
// the peer's answer when its batch comes back, or ErrNotSent when it was
// dropped from the queue before it was sent.
func TestBatcherTellsTheFateOfEveryCheckGivenUp(t *testing.T) {
	p := &gatedPeer{gate: make(chan struct{}), sent: make(chan int, 4)}
	fates := make(chan fate, 4)
	b := NewBatcher(p, BatchConfig{Timeout: 10 * time.Second, Abandoned: func(it Item, r Result, err error, _ time.Duration) {
		fates <- fate{it.Key, r, err}
	}})
	t.Cleanup(b.Close)

	// "sent" goes out at once and waits at the gate; "queued" waits
	// behind it. Both callers give up.
	for _, key := range []string{"sent", "queued"} {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := b.Check(ctx, Item{Key: key, Hits: 1, Limit: 10})
			done <- err
		}()
		if key == "sent" {
			require.Equal(t, 1, <-p.sent, "the first check goes out alone")
		} else {
			require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 1 },
				5*time.Second, time.Millisecond, "the second check never queued")
		}
		cancel()
		err := <-done
		require.ErrorIs(t, err, ErrGaveUp, key)
		require.ErrorIs(t, err, context.Canceled, key)
	}
	assert.Empty(t, fates, "no fate is known yet")

	close(p.gate) // the first batch is answered; the queue is looked at again
	got := []fate{<-fates, <-fates}
	assert.ElementsMatch(t, []fate{
		{key: "sent", res: Result{Decision: bucket.Decision{Allowed: true, Limit: 10, Remaining: 9}}},
		{key: "queued", err: ErrNotSent},
	}, got)
	assert.Empty(t, p.sent, "the dropped check was never sent")
	b.Close() // the Batcher's goroutine has ended: every fate it told is in
	assert.Empty(t, fates, "a fate told twice")
}

// TestBatcherLeavesALateCallToAnswerLate: a call that has not answered
// within Wait no longer holds the next batch back: the Batcher reports it
// late and sends what queued meanwhile, and when the late answer comes it
// still settles the checks that gave up on it (Abandoned), and reports
// the peer answered.
func TestBatcherLeavesALateCallToAnswerLate(t *testing.T) {
	p := &gatedPeer{gate: make(chan struct{}), sent: make(chan int, 4)}
	fates := make(chan fate, 4)
	var mu sync.Mutex
	var reports []error
	b := NewBatcher(p, BatchConfig{Timeout: 10 * time.Second, Wait: 5 * time.Millisecond,
		Report:    func(err error) { mu.Lock(); reports = append(reports, err); mu.Unlock() },
		Abandoned: func(it Item, r Result, err error, _ time.Duration) { fates <- fate{it.Key, r, err} }})
	t.Cleanup(b.Close)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
	defer cancel()
	_, err := b.Check(ctx, Item{Key: "late", Hits: 1, Limit: 10})
	require.ErrorIs(t, err, ErrGaveUp)
	require.Equal(t, 1, <-p.sent)

	// The late call still waits at the gate; the next check goes out.
	next := make(chan error, 1)
	go func() {
		_, err := b.Check(t.Context(), Item{Key: "next", Hits: 1, Limit: 10})
		next <- err
	}()
	require.Equal(t, 1, <-p.sent, "the next batch went out while the late one waits")
	close(p.gate)
	require.NoError(t, <-next)
	f := <-fates
	assert.Equal(t, fate{key: "late", res: Result{Decision: bucket.Decision{Allowed: true, Limit: 10, Remaining: 9}}}, f)
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, reports, 3, "late, then the next batch and the late answer, in either order: %v", reports)
	assert.ErrorIs(t, reports[0], context.DeadlineExceeded, "reported late when Wait passed")
	assert.NoError(t, reports[1])
	assert.NoError(t, reports[2])
}
