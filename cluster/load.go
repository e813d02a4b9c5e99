package cluster

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/tierlimit/tierlimit/loadctl"
)

// msgLoad tags a member's load sample in gossip.
const msgLoad byte = 2

// maxLoadEncoded bounds an encoded sample.
const maxLoadEncoded = 256

// wireLoad is a load sample on the wire, JSON with short keys.
type wireLoad struct {
	Name   string  `json:"n"`
	Boot   string  `json:"b"`
	Seq    uint64  `json:"s"`
	Signal float64 `json:"v"`
	Demand float64 `json:"d"`
}

// loadEntry is the last sample this node took from one member.
type loadEntry struct {
	boot           string
	seq            uint64
	signal, demand float64
	heard          time.Time // when this node took it, by its own clock
}

// MemberLoad is one member's last load sample as this node holds it.
type MemberLoad struct {
	// Name is the member's name.
	Name string
	// Signal is how saturated the work behind it is, 1.0 being full.
	Signal float64
	// Demand is the signal with the work DEGRADED refuses added back: what
	// the member would carry in NORMAL (equal to Signal in NORMAL).
	Demand float64
	// Age is how long ago this node took the sample: for its own, since
	// it last published one.
	Age time.Duration
	// Self reports whether the sample is this node's.
	Self bool
}

// validSignal reports whether v is a load signal gossip carries.
func validSignal(v float64) bool { return loadctl.CheckSignal(v) == nil }

// PublishLoad makes signal and demand this node's load sample, sent to
// every member by gossip (each receiver passes a sample newer than the one
// it holds on). It refuses, and returns false for, values that
// loadctl.CheckSignal refuses; the members then keep the last good sample until it grows
// stale.
func (n *Node) PublishLoad(signal, demand float64, now time.Time) bool {
	if !validSignal(signal) || !validSignal(demand) || n.closed.Load() {
		return false
	}
	n.loadMu.Lock()
	n.loadSeq++
	w := wireLoad{Name: n.cfg.Name, Boot: string(n.boot), Seq: n.loadSeq, Signal: signal, Demand: demand}
	n.loads[n.cfg.Name] = loadEntry{boot: w.Boot, seq: w.Seq, signal: signal, demand: demand, heard: now}
	n.loadMu.Unlock()
	b, err := json.Marshal(w)
	if err != nil {
		return false // only NaN or Inf fail, and they were refused
	}
	n.queue.QueueBroadcast(&broadcast{name: "load:" + w.Name, msg: append([]byte{msgLoad}, b...)})
	return true
}

// mergeLoad takes a member's sample heard by gossip, if it is newer than
// the one held, and passes it on.
func (n *Node) mergeLoad(b []byte) {
	if len(b) > maxLoadEncoded {
		return
	}
	var w wireLoad
	if err := json.Unmarshal(b, &w); err != nil || w.Name == "" || w.Name == n.cfg.Name ||
		!validSignal(w.Signal) || !validSignal(w.Demand) {
		return
	}
	n.mu.Lock()
	_, member := n.view.members[w.Name]
	boot, known := n.boots[w.Name]
	n.mu.Unlock()
	if !member || (known && boot != w.Boot) {
		return // not a member, or a process the name no longer stands for
	}
	n.loadMu.Lock()
	held, ok := n.loads[w.Name]
	if ok && held.boot == w.Boot && held.seq >= w.Seq {
		n.loadMu.Unlock()
		return
	}
	n.loads[w.Name] = loadEntry{boot: w.Boot, seq: w.Seq, signal: w.Signal, demand: w.Demand, heard: time.Now()}
	n.loadMu.Unlock()
	if !n.closed.Load() {
		msg := append([]byte{msgLoad}, b...) // b is memberlist's buffer: copy
		n.queue.QueueBroadcast(&broadcast{name: "load:" + w.Name, msg: msg})
	}
}

// Loads returns the last sample of every alive member that sent one, this
// node's own included, sorted by name, with its age at now. Samples of
// members no longer in the view, or of a process a restarted member's name
// no longer stands for, are dropped.
func (n *Node) Loads(now time.Time) []MemberLoad {
	n.mu.Lock()
	alive := make(map[string]bool, len(n.view.members))
	for name, m := range n.view.members {
		alive[name] = m.State == StateAlive
	}
	boots := make(map[string]string, len(n.boots))
	for name, b := range n.boots {
		boots[name] = b
	}
	n.mu.Unlock()
	n.loadMu.Lock()
	out := make([]MemberLoad, 0, len(n.loads))
	for name, e := range n.loads {
		isAlive, inView := alive[name]
		if name != n.cfg.Name && (!inView || (boots[name] != "" && boots[name] != e.boot)) {
			// Gone, or restarted: the new process may have no signal at
			// all, and its old sample must not name it the writer.
			delete(n.loads, name)
			continue
		}
		if !isAlive && name != n.cfg.Name {
			continue
		}
		out = append(out, MemberLoad{Name: name, Signal: e.signal, Demand: e.demand,
			Age: max(now.Sub(e.heard), 0), Self: name == n.cfg.Name})
	}
	n.loadMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
