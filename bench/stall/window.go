package main

import (
	"time"

	"github.com/tierlimit/tierlimit/bucket"
)

// windowOf returns which window of length w, counted from 1 at start, t
// falls in; 0 before start.
func windowOf(start time.Time, w time.Duration, t time.Time) int {
	if t.Before(start) {
		return 0
	}
	return int(t.Sub(start)/w) + 1
}

// WindowCount is what one key was offered and admitted in one window.
type WindowCount struct {
	Window int `json:"window"` // from 1
	// Offered counts the requests sent in the window, answered or not.
	Offered  int `json:"offered"`
	Admitted int `json:"admitted"`
	Refused  int `json:"refused"`
	// NoAnswer counts requests the client gave up on (or that failed);
	// Other, answers other than 200 and 429.
	NoAnswer int `json:"no_answer"`
	Other    int `json:"other"`
	// Reference is how many of the window's requests the reference (one
	// store that sees every request, see reference) admits.
	Reference int `json:"reference"`
	// FirstAdmitted and FirstReference are when the first request the
	// cluster admitted, and the first the reference admits, were sent,
	// from the window's start; -1 for none.
	FirstAdmitted  time.Duration `json:"first_admitted"`
	FirstReference time.Duration `json:"first_reference"`
}

// countWindows counts recs, one key's requests sorted by Sent, into n
// windows of length w from start, by the time each was sent; ref is the
// reference's decision for each record. Requests sent before start or
// after the n-th window are left out.
func countWindows(recs []Record, ref []bool, start time.Time, w time.Duration, n int) []WindowCount {
	out := make([]WindowCount, n)
	for i := range out {
		out[i] = WindowCount{Window: i + 1, FirstAdmitted: -1, FirstReference: -1}
	}
	for i, r := range recs {
		k := windowOf(start, w, r.Sent)
		if k < 1 || k > n {
			continue
		}
		c := &out[k-1]
		since := r.Sent.Sub(start.Add(time.Duration(k-1) * w))
		c.Offered++
		if r.Admitted() && c.FirstAdmitted < 0 {
			c.FirstAdmitted = since
		}
		if ref[i] && c.FirstReference < 0 {
			c.FirstReference = since
		}
		switch {
		case r.Admitted():
			c.Admitted++
		case r.Refused():
			c.Refused++
		case !r.Answered():
			c.NoAnswer++
		default:
			c.Other++
		}
		if ref[i] {
			c.Reference++
		}
	}
	return out
}

// reference returns, for each of recs (one key's requests sorted by Sent),
// whether a single sliding-window store with the cluster's own counting
// (bucket.Store), deciding every request at the moment it was sent and
// never stalled, admits it under limit: what a customer would see from a
// limiter with no owner to lose. It is fed every request, answered or not.
func reference(recs []Record, limit int, w time.Duration) []bool {
	s := bucket.New(bucket.Config{Window: w, Shards: 1})
	out := make([]bool, len(recs))
	for i, r := range recs {
		out[i] = s.Take(r.Sent, "k", 1, limit).Allowed
	}
	return out
}
