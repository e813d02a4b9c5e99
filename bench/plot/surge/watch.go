package surge

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/api"
)

// Watch keeps what one node's GET /system/health answers over a run: the
// changes of its state, and per second its view of the cluster's load and
// its own signal. It is safe for concurrent use; it never reads the clock.
type Watch struct {
	start   time.Time
	seconds int

	// mu guards the fields below.
	mu                        sync.Mutex
	node                      Node
	sat, dem, sig, sigMax     []float64 // sums, and the largest signal
	polls                     []int
	lastStatus, lastVer, mode string
}

// NewWatch returns a Watch of the node at target over seconds whole
// seconds from start (offset 0).
func NewWatch(target string, start time.Time, seconds int) *Watch {
	return &Watch{start: start, seconds: seconds, node: Node{Target: target},
		sat: make([]float64, seconds), dem: make([]float64, seconds), sig: make([]float64, seconds),
		sigMax: make([]float64, seconds), polls: make([]int, seconds)}
}

// Answer takes a poll's answer h, which arrived at offset at.
func (w *Watch) Answer(at Offset, h api.HealthResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.node.Polls++
	w.node.Name = h.Node
	status, version := h.Status.String(), fmt.Sprint(h.Version)
	if len(w.node.Changes) == 0 || status != w.lastStatus || version != w.lastVer || h.Mode != w.mode {
		c := Change{At: at, Status: status, Version: version, Origin: h.Origin, Mode: h.Mode, Why: h.Why}
		if !h.UpdatedAt.IsZero() {
			written := Offset(h.UpdatedAt.Sub(w.start))
			c.Written = &written
		}
		w.node.Changes = append(w.node.Changes, c)
		w.lastStatus, w.lastVer, w.mode = status, version, h.Mode
	}
	if h.Cluster != nil {
		w.node.Writer = h.Cluster.Writer
	}
	s := int(at.Duration() / time.Second)
	if at < 0 || s >= w.seconds || h.Load == nil || h.Cluster == nil {
		return
	}
	w.polls[s]++
	w.sat[s] += h.Cluster.Saturation
	w.dem[s] += h.Cluster.Demand
	w.sig[s] += h.Load.Signal
	w.sigMax[s] = max(w.sigMax[s], h.Load.Signal)
}

// Failed counts a poll that got no answer.
func (w *Watch) Failed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.node.Polls++
	w.node.PollErrors++
}

// Status returns the last status the node reported, "" before its first
// answer.
func (w *Watch) Status() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastStatus
}

// Mode returns the last mode the node reported.
func (w *Watch) Mode() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mode
}

// Node returns what the node reported so far.
func (w *Watch) Node() Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.node
	n.Changes = slices.Clone(n.Changes)
	n.LoadPolls = slices.Clone(w.polls)
	n.SignalMax = slices.Clone(w.sigMax)
	n.Saturation, n.Demand, n.Signal = make([]float64, w.seconds), make([]float64, w.seconds), make([]float64, w.seconds)
	for s, p := range w.polls {
		if p > 0 {
			n.Saturation[s], n.Demand[s], n.Signal[s] = round3(w.sat[s]/float64(p)), round3(w.dem[s]/float64(p)), round3(w.sig[s]/float64(p))
		}
	}
	return n
}

// round3 rounds x to three decimals, to keep the JSON short.
func round3(x float64) float64 {
	return math.Round(x*1000) / 1000
}
