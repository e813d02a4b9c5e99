package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Plan is the timing of a run. Every key starts at once (staggered within
// one request interval) and so has its first window at about the same
// time; the owner is stopped Warmup into it.
type Plan struct {
	Rate    float64       `json:"rate"`    // requests a second per key
	Warmup  time.Duration `json:"warmup"`  // load before the owner is stopped
	Stall   time.Duration `json:"stall"`   // how long it stays stopped
	Windows int           `json:"windows"` // windows each key is loaded for, the stall's first
	Timeout time.Duration `json:"timeout"` // the client's, per request
	// ProbeAfter is how long after SIGCONT a key's next request goes to
	// the owner to read its count (and the next ones, until one is
	// admitted, at most maxProbes).
	ProbeAfter time.Duration `json:"probe_after"`
	// WitnessProbeAfter is when, after SIGCONT, a witness key (loaded like
	// its key until SIGCONT, then left idle) is probed: after its leases
	// on the other nodes have ended and been given back.
	WitnessProbeAfter time.Duration `json:"witness_probe_after"`
}

// maxProbes is how many requests in a row a key sends the owner to find
// one that is admitted.
const maxProbes = 5

// Key is one API key of a run and how it is loaded.
type Key struct {
	Variant string `json:"variant"`
	// Role names it in the run: its tier, and " witness" for a witness.
	Role    string `json:"role"`
	Tier    string `json:"tier"`
	APIKey  string `json:"api_key"`
	Limit   int    `json:"limit"` // in force, NORMAL: the tier's burst
	Witness bool   `json:"witness,omitempty"`
	// Targets are the nodes its requests go to, round-robin, by name.
	Targets []string `json:"targets"`
}

// session is one run under way: the nodes, the keys, the clock of the
// scenario and the records coming in.
type session struct {
	plan    Plan
	window  time.Duration
	nodes   map[string]Node
	owner   Node
	keys    []Key
	client  *http.Client
	t0      time.Time // first requests
	stop    time.Time // SIGSTOP to the owner
	cont    time.Time // SIGCONT
	probeAt time.Time // keys' next requests go to the owner from then

	// mu guards recs.
	mu   sync.Mutex
	recs []Record
}

// drive sends k's requests, the idx-th of the session's keys, on its
// schedule until its last window ends (a witness: until SIGCONT, then one
// probe), each in a goroutine of its own so that one hanging at the
// stopped owner holds up none of the next. It returns when every request
// it sent has been answered or given up.
func (s *session) drive(ctx context.Context, k Key, idx int) {
	interval := time.Duration(float64(time.Second) / s.plan.Rate)
	offset := time.Duration(idx) * interval / time.Duration(len(s.keys))
	var wg sync.WaitGroup
	defer wg.Wait()
	var end time.Time
	probes := 0
	for seq := 0; ; seq++ {
		at := s.t0.Add(offset + time.Duration(seq)*interval)
		if (k.Witness && !at.Before(s.cont)) || (!end.IsZero() && !at.Before(end)) {
			break
		}
		if !sleepUntil(ctx, at) {
			return
		}
		if seq == 0 {
			end = time.Now().Add(time.Duration(s.plan.Windows) * s.window)
		}
		if !k.Witness && probes >= 0 && !at.Before(s.probeAt) {
			// The probe replaces the request due now, so the key's load
			// stays what it was; it is waited for, to know whether to
			// probe again.
			if s.send(ctx, k, seq, s.owner.Name, true).Admitted() || probes+1 == maxProbes {
				probes = -1 // done
			} else {
				probes++
			}
			continue
		}
		node := k.Targets[seq%len(k.Targets)]
		wg.Go(func() { s.send(ctx, k, seq, node, false) })
	}
	if k.Witness {
		wg.Wait() // the witness is idle from here on
		if sleepUntil(ctx, s.cont.Add(s.plan.WitnessProbeAfter)) {
			s.send(ctx, k, -1, s.owner.Name, true)
		}
	}
}

// send sends one request for k to node and records what came back.
func (s *session) send(ctx context.Context, k Key, seq int, node string, probe bool) Record {
	r := Record{Variant: k.Variant, Key: k.Role, Seq: seq, Node: node, Probe: probe, H: noHeaders}
	r.Sent = time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.nodes[node].URL+"/test", nil)
	var resp *http.Response
	if err == nil {
		req.Header.Set("X-API-Key", k.APIKey)
		resp, err = s.client.Do(req)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.Status = resp.StatusCode
		r.H = readHeaders(resp.Header)
	}
	r.Done = time.Now()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.Err = "timeout"
		} else {
			r.Err = err.Error()
		}
		r.Status, r.H = 0, noHeaders
	}
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.mu.Unlock()
	return r
}

// records returns what was recorded, sorted by variant, key and send time.
func (s *session) records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.recs)
	slices.SortStableFunc(out, func(a, b Record) int {
		if a.Variant != b.Variant {
			return cmp.Compare(a.Variant, b.Variant)
		}
		if a.Key != b.Key {
			return cmp.Compare(a.Key, b.Key)
		}
		return a.Sent.Compare(b.Sent)
	})
	return out
}

// stallOwner stops the owner's process at s.stop and lets it go on at
// s.cont, or as soon as ctx ends: the owner is never left stopped.
func (s *session) stallOwner(ctx context.Context) error {
	if !sleepUntil(ctx, s.stop) {
		return nil
	}
	if err := syscall.Kill(s.owner.PID, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP %s (pid %d): %w", s.owner.Name, s.owner.PID, err)
	}
	sleepUntil(ctx, s.cont)
	if err := syscall.Kill(s.owner.PID, syscall.SIGCONT); err != nil {
		return fmt.Errorf("SIGCONT %s (pid %d): %w", s.owner.Name, s.owner.PID, err)
	}
	return nil
}

// sleepUntil waits until t and reports whether ctx was still live then.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
