package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

// enterAsync starts Enter in a goroutine named name and waits until it
// waits, so that the order of the waiters is the order of the calls.
func enterAsync(t *testing.T, q *Queue, ctx context.Context, name string, sheddable bool, got chan<- string, errs chan<- error) {
	t.Helper()
	before := q.Stats()
	go func() {
		err := q.Enter(ctx, sheddable)
		if err != nil {
			errs <- err
			return
		}
		got <- name
	}()
	require.Eventually(t, func() bool {
		s := q.Stats()
		return s.Waiting+s.WaitingSheddable == before.Waiting+before.WaitingSheddable+1
	}, 5*time.Second, time.Millisecond, "%s waits", name)
}

// full returns a Queue of capacity slots, all taken.
func full(t *testing.T, capacity int, wait time.Duration) *Queue {
	t.Helper()
	q := NewQueue(capacity, wait)
	for range capacity {
		require.NoError(t, q.Enter(t.Context(), false))
	}
	return q
}

// freeSlots counts the slots q can hand out without a wait.
func freeSlots(q *Queue) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.free
}

func TestQueueServesTheProtectedClassFirstEachInOrder(t *testing.T) {
	q := full(t, 1, time.Minute)
	var mu sync.Mutex
	var waited []bool // each waiter's class, as it gets its slot
	q.ObserveWaits(func(sheddable bool, d time.Duration) {
		assert.Positive(t, d)
		mu.Lock()
		waited = append(waited, sheddable)
		mu.Unlock()
	})
	got, errs := make(chan string, 4), make(chan error, 4)
	enterAsync(t, q, t.Context(), "free-1", true, got, errs)
	enterAsync(t, q, t.Context(), "pro-1", false, got, errs)
	enterAsync(t, q, t.Context(), "free-2", true, got, errs)
	enterAsync(t, q, t.Context(), "ent-1", false, got, errs)
	assert.Equal(t, QueueStats{Waiting: 2, WaitingSheddable: 2}, q.Stats())

	var order []string
	for range 4 {
		q.Leave() // the running job ends: the slot goes to the next
		order = append(order, <-got)
	}
	assert.Equal(t, []string{"pro-1", "ent-1", "free-1", "free-2"}, order)
	assert.Empty(t, errs)
	q.Leave()
	assert.Equal(t, 1, freeSlots(q), "every slot back")
	assert.Equal(t, int64(4), q.Stats().Ran)
	mu.Lock()
	assert.Equal(t, []bool{false, false, true, true}, waited, "each wait observed once, with its class")
	mu.Unlock()
}

func TestQueueRefusesAWaitOverMaxWait(t *testing.T) {
	q := full(t, 2, 20*time.Millisecond)
	assert.ErrorIs(t, q.Enter(t.Context(), false), ErrQueueTimeout)
	assert.ErrorIs(t, q.Enter(t.Context(), true), ErrQueueTimeout)
	assert.Equal(t, QueueStats{TimedOut: 2}, q.Stats())
	q.Leave()
	require.NoError(t, q.Enter(t.Context(), true), "a slot given back is handed out at once")
	assert.Equal(t, 0, freeSlots(q), "a refused wait took no slot")
}

func TestQueueShedRefusesTheSheddableWaitersOnly(t *testing.T) {
	q := full(t, 1, time.Minute)
	got, errs := make(chan string, 3), make(chan error, 3)
	enterAsync(t, q, t.Context(), "free-1", true, got, errs)
	enterAsync(t, q, t.Context(), "pro-1", false, got, errs)
	enterAsync(t, q, t.Context(), "free-2", true, got, errs)

	assert.Equal(t, 2, q.Shed())
	assert.ErrorIs(t, <-errs, ErrShed)
	assert.ErrorIs(t, <-errs, ErrShed)
	assert.Equal(t, QueueStats{Waiting: 1, Shed: 2}, q.Stats())
	q.Leave()
	assert.Equal(t, "pro-1", <-got)
	assert.Equal(t, 0, q.Shed(), "nothing left to shed")

	// After the shedding, a sheddable request still queues behind the others.
	enterAsync(t, q, t.Context(), "free-3", true, got, errs)
	q.Leave()
	assert.Equal(t, "free-3", <-got)
}

func TestQueueWaiterWhoseClientLeavesHoldsNothing(t *testing.T) {
	q := full(t, 1, time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	got, errs := make(chan string, 1), make(chan error, 1)
	enterAsync(t, q, ctx, "gone", false, got, errs)
	cancel()
	assert.ErrorIs(t, <-errs, context.Canceled)
	assert.Equal(t, QueueStats{}, q.Stats(), "no longer waiting, not counted as a timeout")
	q.Leave()
	assert.Equal(t, 1, freeSlots(q), "the slot was not handed to the leaver")
}

// TestQueueLosesNoSlotInARace: waits that end as their slot is handed over
// give it back, so after any mix of grants, timeouts and shedding the
// queue has exactly its capacity again, and counts every timeout it
// returned, also those that raced a grant.
func TestQueueLosesNoSlotInARace(t *testing.T) {
	const capacity = 3
	q := NewQueue(capacity, time.Millisecond)
	var wg sync.WaitGroup
	var timeouts atomic.Int64
	for i := range 200 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), time.Duration(i%3)*time.Millisecond)
			defer cancel()
			switch err := q.Enter(ctx, i%2 == 0); {
			case err == nil:
				time.Sleep(time.Duration(i%4) * 100 * time.Microsecond) // the job
				q.Leave()
			case errors.Is(err, ErrQueueTimeout):
				timeouts.Add(1)
			}
		})
		if i%50 == 0 {
			q.Shed()
		}
	}
	wg.Wait()
	assert.Equal(t, capacity, freeSlots(q))
	s := q.Stats()
	assert.Zero(t, s.Waiting+s.WaitingSheddable)
	assert.Equal(t, timeouts.Load(), s.TimedOut)
}

func TestNewQueuePanicsWithoutSlotsOrWait(t *testing.T) {
	assert.Panics(t, func() { NewQueue(0, time.Second) })
	assert.Panics(t, func() { NewQueue(1, 0) })
}

// queueServer serves /test through a Limiter with a Queue of one slot:
// each request's handler holds until release receives. The free tier also
// limits concurrency to one job per key.
func queueServer(t *testing.T, wait time.Duration) (base string, q *Queue, local Local, release chan struct{}) {
	t.Helper()
	q = NewQueue(1, wait)
	local = Local{Store: bucket.New(bucket.Config{Window: time.Minute}), Slots: bucket.NewSlots()}
	freeJobs := free
	freeJobs.Concurrency = config.Limits{Limit: 1, Burst: 1, Degraded: 1}
	lim := NewLimiter(Config{
		Keys:    fakeKeys{"free-1": freeJobs, "free-2": freeJobs, "pro-1": pro},
		Checker: local, Spender: local, Health: health.NewHolder("a"), Window: time.Minute, Queue: q,
	})
	release = make(chan struct{})
	srv := httptest.NewServer(lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		WriteJSON(w, http.StatusOK, map[string]string{"key": r.Header.Get("X-API-Key")})
	})))
	t.Cleanup(srv.Close)
	return srv.URL, q, local, release
}

// releaseOne ends the job running in a queueServer, failing the test if
// none runs.
func releaseOne(t *testing.T, release chan<- struct{}) {
	t.Helper()
	select {
	case release <- struct{}{}:
	case <-time.After(5 * time.Second):
		require.FailNow(t, "no job runs to end")
	}
}

// answer is one response's status, the headers asked about and body.
type answer struct {
	key, status, retry, remaining, code string
}

func ask(t *testing.T, base, key string, out chan<- answer) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/test", nil)
	if !assert.NoError(t, err) {
		return
	}
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if !assert.NoError(t, err) {
		return
	}
	defer func() { _ = resp.Body.Close() }()
	var body ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&body)
	out <- answer{key, resp.Status, resp.Header.Get(HeaderRetryAfter), resp.Header.Get(HeaderRemaining), body.Error.Code}
}

func TestMiddlewareQueueShedsWaitingFreeWorkAndServesPaidFirst(t *testing.T) {
	base, q, local, release := queueServer(t, time.Minute)
	out := make(chan answer, 4)
	go ask(t, base, "pro-1", out) // runs: holds the one slot
	require.Eventually(t, func() bool { return freeSlots(q) == 0 }, 5*time.Second, time.Millisecond)
	go ask(t, base, "free-1", out)
	require.Eventually(t, func() bool { return q.Stats().WaitingSheddable == 1 }, 5*time.Second, time.Millisecond)
	go ask(t, base, "pro-1", out)
	require.Eventually(t, func() bool { return q.Stats().Waiting == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 1, local.Slots.Held(time.Now(), "free-1"), "the waiting job holds its key's concurrency slot")

	require.Equal(t, 1, q.Shed()) // the cluster went DEGRADED
	assert.Equal(t, answer{"free-1", "503 Service Unavailable", "60", "19", "shed"}, <-out,
		"refused at once, its hit counted, back in a window")
	assert.Zero(t, local.Slots.Held(time.Now(), "free-1"), "its concurrency slot given back")

	releaseOne(t, release) // the running job ends: the waiting paid one runs
	assert.Equal(t, answer{"pro-1", "200 OK", "", "149", ""}, <-out)
	releaseOne(t, release)
	assert.Equal(t, answer{"pro-1", "200 OK", "", "148", ""}, <-out)
	assert.Equal(t, QueueStats{Ran: 1, Shed: 1}, q.Stats())
}

func TestMiddlewareQueueTimesOutWithA503(t *testing.T) {
	base, q, local, release := queueServer(t, 30*time.Millisecond)
	out := make(chan answer, 2)
	go ask(t, base, "pro-1", out)
	require.Eventually(t, func() bool { return freeSlots(q) == 0 }, 5*time.Second, time.Millisecond)
	go ask(t, base, "free-2", out)
	assert.Equal(t, answer{"free-2", "503 Service Unavailable", "1", "19", "queue_timeout"}, <-out)
	assert.Zero(t, local.Slots.Held(time.Now(), "free-2"))
	releaseOne(t, release)
	assert.Equal(t, "200 OK", (<-out).status)
	assert.Equal(t, QueueStats{TimedOut: 1}, q.Stats())
}
