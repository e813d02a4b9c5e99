package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// Messages of cmd/node's logs the measurements look for.
const (
	msgMembers     = "members changed"                // the ring was rebuilt from these members
	msgAdopted     = "adopted health state from peer" // a peer's health state is in force here
	msgPeerLeft    = "peer left"                      // memberlist says the peer left
	msgPeerFailed  = "peer failed"                    // memberlist says the peer is dead
	msgNodeStopped = "node stopped"                   // the process is about to exit
	msgJoinFailed  = "join failed; retrying"          // no seed answered yet
)

// logLine is what the measurements read of a node's JSON log line, which
// slog stamps to the nanosecond.
type logLine struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Msg     string    `json:"msg"`
	Members []string  `json:"members"`
	Peer    string    `json:"peer"`
	// Version is a health state's version, a uint64 that a float64 would
	// round: kept as its digits.
	Version json.Number `json:"version"`
	Via     string      `json:"via"`
}

// parseLogLine decodes one log line; ok is false for a line that is not a
// JSON object with a time (a panic's output, say).
func parseLogLine(b []byte) (l logLine, ok bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return l, false
	}
	if err := json.Unmarshal(b, &l); err != nil || l.Time.IsZero() {
		return logLine{}, false
	}
	return l, true
}

// tail reads a growing log file line by line, from where it last stopped.
// It is not safe for concurrent use.
type tail struct {
	path string
	off  int64
	part []byte // the start of a line not yet ended by a newline
}

// lines returns the lines completed since the last call, without their
// newlines. A file that does not exist yet has no lines.
func (t *tail) lines() ([][]byte, error) {
	f, err := os.Open(t.path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seek %s: %w", t.path, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.path, err)
	}
	t.off += int64(len(b))
	b = append(t.part, b...)
	var out [][]byte
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		out = append(out, b[:i])
		b = b[i+1:]
	}
	t.part = slices.Clone(b)
	return out, nil
}

// goal is something one node's log must show: the first line at or after
// the watch's start that ok accepts.
type goal struct {
	node string
	ok   func(logLine) bool
	// met is the matching line; its Time is zero while the goal is open.
	met logLine
}

// done reports whether the goal is met.
func (g *goal) done() bool { return !g.met.Time.IsZero() }

// watcher reads the logs of a set of nodes and checks goals against their
// lines. It is not safe for concurrent use.
type watcher struct {
	tails map[string]*tail
	poll  time.Duration
	// counts holds, by message, the lines read at or after the since of the
	// watch that read them.
	counts map[string]int
}

// newWatcher returns a watcher over the nodes' logs, each read from its
// start.
func newWatcher(nodes []node) *watcher {
	w := &watcher{tails: make(map[string]*tail, len(nodes)), poll: 50 * time.Millisecond, counts: map[string]int{}}
	for _, n := range nodes {
		w.tails[n.Name] = &tail{path: n.Log}
	}
	return w
}

// watch reads the logs until every goal is met by a line stamped at or
// after since, or ctx ends; goals still open then stay open. Lines read
// here are gone for later calls, so a later call's goals must be about
// later lines.
func (w *watcher) watch(ctx context.Context, since time.Time, goals []*goal) error {
	byNode := map[string][]*goal{}
	for _, g := range goals {
		if _, ok := w.tails[g.node]; !ok {
			return fmt.Errorf("goal for unknown node %s", g.node)
		}
		byNode[g.node] = append(byNode[g.node], g)
	}
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		open := 0
		for name, gs := range byNode {
			lines, err := w.tails[name].lines()
			if err != nil {
				return err
			}
			for _, b := range lines {
				l, ok := parseLogLine(b)
				if !ok || l.Time.Before(since) {
					continue
				}
				w.counts[l.Msg]++
				for _, g := range gs {
					if !g.done() && g.ok(l) {
						g.met = l
					}
				}
			}
			for _, g := range gs {
				if !g.done() {
					open++
				}
			}
		}
		if open == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sameSet reports whether a and b hold the same names, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// ringIs accepts a "members changed" line that lists exactly want.
func ringIs(want []string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg == msgMembers && sameSet(l.Members, want) }
}

// peerGone accepts memberlist's word that name left, or that it failed:
// a node that declared a leaving peer dead first never hears it left.
func peerGone(name string) func(logLine) bool {
	return func(l logLine) bool { return (l.Msg == msgPeerLeft || l.Msg == msgPeerFailed) && l.Peer == name }
}

// stopped accepts the node's last line.
func stopped(l logLine) bool { return l.Msg == msgNodeStopped }

// adopted accepts the adoption of the health state of version v.
func adopted(v string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg == msgAdopted && l.Version.String() == v }
}
