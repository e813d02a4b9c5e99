package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/bench/plot/internal/loadrun"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

// watcher polls one node's health state and keeps every change it sees.
type watcher struct {
	admin    loadrun.Admin
	target   string
	start    time.Time
	interval time.Duration

	// mu guards node.
	mu   sync.Mutex
	node timeline.Node
}

// run polls until ctx ends. Each poll waits for the one before.
func (w *watcher) run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		pollCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		h, err := w.admin.Health(pollCtx, w.target)
		cancel()
		at := timeline.Offset(time.Since(w.start))
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.node.Polls++
		if err != nil {
			w.node.PollErrors++
		} else {
			w.node.Name = h.Node
			c := timeline.Change{At: at, Status: h.Status.String(), Version: fmt.Sprint(h.Version), Origin: h.Origin}
			if n := len(w.node.Changes); n == 0 || w.node.Changes[n-1].Status != c.Status || w.node.Changes[n-1].Version != c.Version {
				w.node.Changes = append(w.node.Changes, c)
			}
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// status returns the last status w saw, "" before the first answer.
func (w *watcher) status() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.node.Changes); n > 0 {
		return w.node.Changes[n-1].Status
	}
	return ""
}

// record returns a copy of what w saw.
func (w *watcher) record() timeline.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.node
	n.Target = w.target
	n.Changes = append([]timeline.Change(nil), n.Changes...)
	return n
}
