package handoff

import (
	"context"
	"slices"
	"sync"

	"github.com/tierlimit/tierlimit/bucket"
)

// heirQueue is the backups waiting for one heir: the latest count of each
// key changed since the last send to it. One goroutine at a time sends it
// (busy), so an heir that does not answer holds back only its own copies,
// which wait here, one per key, until it answers or leaves the heirs.
type heirQueue struct {
	// mu guards pending and busy.
	mu      sync.Mutex
	pending map[string]bucket.Count
	busy    bool
}

// add queues counts, each replacing the one queued for its key, and
// reports whether the caller must start sending the queue: it holds
// something and was idle.
func (q *heirQueue) add(counts []bucket.Count) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending == nil {
		q.pending = make(map[string]bucket.Count, len(counts))
	}
	for _, c := range counts {
		q.pending[c.Key] = c
	}
	start := !q.busy && len(q.pending) > 0
	q.busy = q.busy || start
	return start
}

// take empties the queue and returns what it held, or nil, and then the
// queue is idle, if it held nothing.
func (q *heirQueue) take() []bucket.Count {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		q.busy = false
		return nil
	}
	out := make([]bucket.Count, 0, len(q.pending))
	for _, c := range q.pending {
		out = append(out, c)
	}
	clear(q.pending)
	return out
}

// giveUp puts back the counts a send failed with, except those of keys
// queued again since (newer), and makes the queue idle: the next round
// tries again.
func (q *heirQueue) giveUp(failed []bucket.Count) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range failed {
		if _, newer := q.pending[c.Key]; !newer {
			q.pending[c.Key] = c
		}
	}
	q.busy = false
}

// backUp queues the counts changed since the last round for the members
// that would own them if this node failed, and starts sending each heir's
// queue that holds something and is not being sent already (copies a
// failed send put back are tried again each round).
func (k *Keeper) backUp(ctx context.Context) {
	byHeir := make(map[string][]bucket.Count)
	if k.heirs.Len() > 0 {
		for _, c := range k.store.Changed() {
			if heir, ok := k.heirs.Owner(c.Key); ok {
				byHeir[heir] = append(byHeir[heir], c)
			}
		}
	}
	k.queuesMu.Lock()
	for heir := range k.queues {
		if _, ok := byHeir[heir]; !ok {
			byHeir[heir] = nil
		}
	}
	k.queuesMu.Unlock()
	for heir, counts := range byHeir {
		if q := k.queue(heir); q.add(counts) {
			k.flushes.Go(func() { k.flush(ctx, heir, q) })
		}
	}
}

// flush sends q to heir until it is empty or a send fails.
func (k *Keeper) flush(ctx context.Context, heir string, q *heirQueue) {
	window := k.store.Window()
	for {
		counts := q.take()
		if counts == nil {
			return
		}
		if failed := k.sendTo(ctx, heir, window, counts, "backup"); len(failed) > 0 {
			q.giveUp(failed)
			return
		}
	}
}

// queue returns heir's backup queue, making it if needed.
func (k *Keeper) queue(heir string) *heirQueue {
	k.queuesMu.Lock()
	defer k.queuesMu.Unlock()
	q := k.queues[heir]
	if q == nil {
		q = &heirQueue{}
		k.queues[heir] = q
	}
	return q
}

// dropQueues drops the queues of members that are no longer heirs; every
// key is queued afresh for the heirs that hold its copies now.
func (k *Keeper) dropQueues(heirs []string) {
	k.queuesMu.Lock()
	defer k.queuesMu.Unlock()
	for name := range k.queues {
		if !slices.Contains(heirs, name) {
			delete(k.queues, name)
		}
	}
}
