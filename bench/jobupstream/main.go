// Command jobupstream is a counting stand-in for a GPU service behind a
// tierlimit node in reverse-proxy mode (-upstream): it holds each job for
// the time the request asks, answers with the job's actual cost in
// Tierlimit-Cost for the node to settle, and counts, per API key, the jobs
// it got, their cost and how many ran at once, so that a test can check
// the cluster's cost and concurrency limits where the work happens.
//
//	jobupstream -addr 127.0.0.1:0 -addr-file /tmp/up.addr
//
// A request is a job when its query has work (a duration to hold it, such
// as 300ms; at most 10m) or cost (a whole number, the actual cost to
// report), as in GET /job?work=300ms&cost=30; any method and path but
// /stats. For each job it records the X-API-Key the node passed on, adds
// cost to the key's total when the job arrives (every job the node passes
// on was admitted, and in a test whose estimate equals the actual cost
// that is what it reserved), counts the job in flight until its work is
// done (or its request is cancelled: counted as canceled, with no answer),
// and keeps the most jobs of the key seen in flight at once and when that
// was first seen. A job ends before its answer is written, so a job is
// never counted in flight after the node could have seen its end and let
// another one in. It answers 200, with Tierlimit-Cost: <cost> when cost
// was given; a bad work or cost gets 400. A request with neither (the
// request-limit load of a test that shares the nodes) gets 200 at once and
// is counted as plain.
//
// GET /stats returns the counts as JSON (stats below), of the keys that
// start with ?prefix= if given. It runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "jobupstream:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobupstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on (host:port; port 0 picks a free one)")
	addrFile := fs.String("addr-file", "", "write the address listened on (host:port) to this file once listening")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if *addrFile != "" {
		if err := writeAtomic(*addrFile, lis.Addr().String()+"\n"); err != nil {
			_ = lis.Close()
			return err
		}
	}
	log.Info("listening", "addr", lis.Addr().String())
	srv := &http.Server{Handler: newUpstream(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx) // jobs still held are cut off: the test is over
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// writeAtomic writes data to path through a temporary file renamed over
// it, so that a reader polling for path never sees it half written.
func writeAtomic(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".jobupstream-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// maxWork bounds a job's work.
const maxWork = 10 * time.Minute

// stats is what GET /stats returns.
type stats struct {
	Plain    uint64               `json:"plain"`    // requests that were no job
	Jobs     uint64               `json:"jobs"`     // jobs, of every key
	Bad      uint64               `json:"bad"`      // requests refused for a bad work or cost
	Canceled uint64               `json:"canceled"` // jobs whose request ended before their work did
	Keys     map[string]*keyStats `json:"keys"`
}

// keyStats are the counts of one API key.
type keyStats struct {
	Jobs        uint64 `json:"jobs"`
	Cost        uint64 `json:"cost"`          // sum of the cost of its jobs
	InFlight    int    `json:"in_flight"`     // jobs running now
	MaxInFlight int    `json:"max_in_flight"` // the most that ran at once
	// MaxAtUnixMS is when MaxInFlight was first reached, in Unix
	// milliseconds.
	MaxAtUnixMS int64  `json:"max_at_unix_ms"`
	Canceled    uint64 `json:"canceled"`
}

// upstream is the HTTP handler: jobs and /stats.
type upstream struct {
	now  func() time.Time
	hold func(ctx context.Context, work time.Duration) bool // hold, but in tests
	mu   sync.Mutex
	s    stats // guarded by mu
}

func newUpstream() *upstream {
	return &upstream{now: time.Now, hold: hold, s: stats{Keys: make(map[string]*keyStats)}}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		u.serveStats(w, r)
		return
	}
	q := r.URL.Query()
	if !q.Has("work") && !q.Has("cost") {
		u.mu.Lock()
		u.s.Plain++
		u.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
		return
	}
	work, cost, err := parseJob(q.Get("work"), q.Get("cost"), q.Has("cost"))
	if err != nil {
		u.mu.Lock()
		u.s.Bad++
		u.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	key := r.Header.Get("X-Api-Key")
	u.begin(key, cost)
	completed := u.hold(r.Context(), work)
	u.end(key, !completed)
	if !completed {
		return // the node gave up on the job: nobody to answer
	}
	if cost >= 0 {
		w.Header().Set("Tierlimit-Cost", strconv.Itoa(cost))
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "cost": cost, "work": work.String()})
}

// parseJob reads a job's work (a duration, "" for none) and cost (a whole
// number, -1 when hasCost is false).
func parseJob(workParam, costParam string, hasCost bool) (time.Duration, int, error) {
	var work time.Duration
	if workParam != "" {
		d, err := time.ParseDuration(workParam)
		if err != nil || d < 0 || d > maxWork {
			return 0, 0, fmt.Errorf("work: want a duration from 0 to %v, such as 300ms, got %q", maxWork, workParam)
		}
		work = d
	}
	cost := -1
	if hasCost {
		n, err := strconv.Atoi(costParam)
		if err != nil || n < 0 || n > 1_000_000_000 {
			return 0, 0, fmt.Errorf("cost: want a whole number from 0 to 1000000000, got %q", costParam)
		}
		cost = n
	}
	return work, cost, nil
}

// hold waits for work, or until ctx ends; it reports whether the work was
// done.
func hold(ctx context.Context, work time.Duration) bool {
	if work <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(work)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// begin counts a job of key, of cost (none when negative), in flight.
func (u *upstream) begin(key string, cost int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	k := u.s.Keys[key]
	if k == nil {
		k = &keyStats{}
		u.s.Keys[key] = k
	}
	u.s.Jobs++
	k.Jobs++
	if cost > 0 {
		k.Cost += uint64(cost)
	}
	k.InFlight++
	if k.InFlight > k.MaxInFlight {
		k.MaxInFlight = k.InFlight
		k.MaxAtUnixMS = u.now().UnixMilli()
	}
}

// end counts a job of key as done, or canceled.
func (u *upstream) end(key string, canceled bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	k := u.s.Keys[key]
	k.InFlight--
	if canceled {
		k.Canceled++
		u.s.Canceled++
	}
}

// serveStats writes the counts, of the keys with ?prefix= only if given.
func (u *upstream) serveStats(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	u.mu.Lock()
	out := u.s
	out.Keys = make(map[string]*keyStats, len(u.s.Keys))
	for k, v := range u.s.Keys {
		if strings.HasPrefix(k, prefix) {
			c := *v
			out.Keys[k] = &c
		}
	}
	u.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
