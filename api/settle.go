package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"time"
)

// Headers of a reservation kept open past /authorize, for a client that
// settles it when the work ends (the Python middleware; see Settle).
const (
	// HeaderSettle on a request to /authorize, with the value "later",
	// keeps the Job of a tier that limits cost or concurrency open: its
	// cost stays reserved and its slot held until the settle call.
	HeaderSettle = "Tierlimit-Settle"
	// HeaderReservation names the open Job: on /authorize's 200, and on
	// the settle call.
	HeaderReservation = "Tierlimit-Reservation"
	// HeaderFailed, "true" on the settle call, says the work failed: with
	// no cost reported, the whole reservation is given back.
	HeaderFailed = "Tierlimit-Failed"
	// HeaderSheddable, "true" on /authorize's 200, says the key's tier is
	// sheddable (config.Tier.Sheddable: DEGRADED cuts it below its base
	// limit), so that a middleware that holds requests, as the Python one
	// does with a queue, serves it after the others.
	HeaderSheddable = "Tierlimit-Sheddable"
)

// Canonical forms, read without canonicalising per request.
const (
	keySettle      = "Tierlimit-Settle"
	keyReservation = "Tierlimit-Reservation"
	keyFailed      = "Tierlimit-Failed"
	keySheddable   = "Tierlimit-Sheddable"
)

// MaxReservations bounds the reservations open at once on one Limiter;
// past it, /authorize ends a request's Job at once, as without
// HeaderSettle, and gives no reservation.
const MaxReservations = 100_000

// reservations holds the Jobs /authorize left open, by id, until their
// settle call or their end (the Limiter's MaxJobDuration), when the
// estimate stands and the slot is given back. It is safe for concurrent
// use.
type reservations struct {
	mu   sync.Mutex
	m    map[string]reservation
	puts int
}

type reservation struct {
	job   *Job
	until time.Time
}

// reservationSweepEvery is how many reservations are opened between two
// sweeps of the ended ones.
const reservationSweepEvery = 1024

// open keeps j open until until and returns its id, or "" when the table is
// full (j is then ended at once).
func (rs *reservations) open(ctx context.Context, j *Job, now, until time.Time) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24 on)
	id := hex.EncodeToString(b[:])
	rs.mu.Lock()
	if rs.m == nil {
		rs.m = make(map[string]reservation)
	}
	var ended []*Job
	if rs.puts++; rs.puts%reservationSweepEvery == 0 || len(rs.m) >= MaxReservations {
		ended = rs.sweep(now)
	}
	full := len(rs.m) >= MaxReservations
	if !full {
		rs.m[id] = reservation{job: j, until: until}
	}
	rs.mu.Unlock()
	for _, e := range ended {
		e.End(ctx, false)
	}
	if full {
		j.End(ctx, false)
		return ""
	}
	return id
}

// sweep drops the reservations ended by now and returns their Jobs, to be
// ended. rs.mu must be held.
func (rs *reservations) sweep(now time.Time) []*Job {
	var ended []*Job
	for id, r := range rs.m {
		if !now.Before(r.until) {
			ended = append(ended, r.job)
			delete(rs.m, id)
		}
	}
	return ended
}

// take removes and returns the open Job id of key, or nil: unknown, of
// another key, or ended by now.
func (rs *reservations) take(ctx context.Context, id, key string, now time.Time) *Job {
	rs.mu.Lock()
	r, ok := rs.m[id]
	if ok && r.job.key == key {
		delete(rs.m, id)
	}
	rs.mu.Unlock()
	switch {
	case !ok || r.job.key != key:
		return nil
	case !now.Before(r.until):
		// Ended at its deadline: the estimate stands. Outside the lock: a
		// slot's release may be a call to its owner.
		r.job.End(ctx, false)
		return nil
	}
	return r.job
}

// Settle returns the handler of the settle call, for a client that asked
// /authorize to keep a request's reservation open (HeaderSettle "later")
// and now that the work is done: POST with the request's X-API-Key, the
// reservation's id (HeaderReservation), and the actual cost
// (HeaderCost), or HeaderFailed "true" if the work failed. The Job ends
// as when a Middleware's handler returns: its slot is given back and its
// cost settles (the estimate stands without a cost; failed without a cost
// gives it all back). 204 when settled; 404 for a reservation unknown,
// settled already, ended at its deadline, or of another key; 400 for a
// missing id or a bad cost; 405 for another method.
func (l *Limiter) Settle() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			MethodNotAllowed(w, http.MethodPost)
			return
		}
		key, problem := apiKey(r.Header)
		if problem != "" {
			WriteError(w, http.StatusUnauthorized, "invalid_api_key", problem)
			return
		}
		ids := r.Header[keyReservation]
		if len(ids) != 1 || len(ids[0]) != 32 {
			WriteError(w, http.StatusBadRequest, "invalid_reservation", "want one "+HeaderReservation+" header, the 32 hex digits /authorize gave")
			return
		}
		cost, given, err := parseCost(r.Header)
		if err != nil {
			WriteError(w, http.StatusBadRequest, "invalid_cost", err.Error())
			return
		}
		failed := false
		switch vs := r.Header[keyFailed]; {
		case len(vs) == 0:
		case len(vs) == 1 && (vs[0] == "true" || vs[0] == "false"):
			failed = vs[0] == "true"
		default:
			WriteError(w, http.StatusBadRequest, "invalid_failed", HeaderFailed+": want one header, true or false")
			return
		}
		j := l.reserved.take(r.Context(), ids[0], key, l.clock())
		if j == nil {
			WriteError(w, http.StatusNotFound, "unknown_reservation", "no open reservation "+shortValue(ids[0])+" for this key: settled already, ended at its deadline, or never made")
			return
		}
		if given {
			j.ReportCost(cost)
		}
		j.End(r.Context(), failed)
		w.WriteHeader(http.StatusNoContent)
	})
}

// keepOpen reports whether r asks /authorize to keep its Job open.
func keepOpen(r *http.Request) bool {
	vs := r.Header[keySettle]
	return len(vs) == 1 && vs[0] == "later"
}
