package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
)

// What a 429 says refused it, in its JSON error's "limit".
const (
	LimitRequests    = "requests"
	LimitCost        = "cost"
	LimitConcurrency = "concurrency"
)

// HeaderCost carries a cost: on a request, its estimate (cmd/node,
// /authorize); on an upstream's response behind -upstream, the actual
// cost of the work it did.
const HeaderCost = "Tierlimit-Cost"

// keyCost is HeaderCost's canonical form.
const keyCost = "Tierlimit-Cost"

// DefaultMaxJobDuration is how long a job's concurrency slot is held at
// most when Config.MaxJobDuration is zero.
const DefaultMaxJobDuration = time.Hour

// maxCost bounds a cost a request or an upstream may state, as the tiers
// file bounds a cost limit.
const maxCost = 1_000_000_000

// Spender counts what a tier's cost and concurrency limits need, beside
// the one hit per request a Checker counts. Local is one, and package
// ownership's Router is the cluster's.
type Spender interface {
	// TakeCost reserves cost units of key's cost per window at now if
	// they fit under limit, and counts them only then; a cost of 0
	// admits unless the key is over its limit already.
	TakeCost(ctx context.Context, now time.Time, key string, cost, limit int) bucket.Decision
	// SettleCost changes key's cost reserved in the window that ends at
	// reset (the reservation's Decision.ResetAt) by delta at now: a
	// positive delta is charged now, over the limit if need be (the work
	// is done); a negative one is given back to that window, if it still
	// counts.
	SettleCost(ctx context.Context, now time.Time, key string, reset time.Time, delta int)
	// Refund gives back the request the Checker counted for key in the
	// window that ends at reset (its Decision.ResetAt): another dimension
	// refused the request.
	Refund(ctx context.Context, now time.Time, key string, reset time.Time)
	// Acquire takes one of key's slots at now if fewer than limit are
	// held, for until at the latest. It returns the slot's id, 0 when
	// refused, and how many slots are held.
	Acquire(ctx context.Context, now time.Time, key string, limit int, until time.Time) (id uint64, held int)
	// Release gives slot id of key back.
	Release(ctx context.Context, key string, id uint64)
}

// TakeCost reserves cost for key in l.Store, under its counter key
// (config.CostKey).
func (l Local) TakeCost(_ context.Context, now time.Time, key string, cost, limit int) bucket.Decision {
	return l.Store.Take(now, config.CostKey(key), cost, limit)
}

// SettleCost charges delta for key's cost in l.Store, or gives -delta
// back.
func (l Local) SettleCost(_ context.Context, now time.Time, key string, reset time.Time, delta int) {
	switch ck := config.CostKey(key); {
	case delta > 0:
		l.Store.Add(now, bucket.Count{Key: ck, Current: uint64(delta)})
	case delta < 0:
		l.Store.Give(now, ck, reset.Add(-l.Store.Window()), -delta)
	}
}

// Refund gives back the hit counted for key in l.Store in the window that
// ends at reset.
func (l Local) Refund(_ context.Context, now time.Time, key string, reset time.Time) {
	l.Store.Give(now, key, reset.Add(-l.Store.Window()), 1)
}

// Acquire takes a slot of key in l.Slots.
func (l Local) Acquire(_ context.Context, now time.Time, key string, limit int, until time.Time) (uint64, int) {
	return l.Slots.Acquire(now, key, "", limit, until)
}

// Release gives slot id of key back to l.Slots.
func (l Local) Release(_ context.Context, key string, id uint64) { l.Slots.Release(key, id) }

// Job is one admitted request of a tier that limits cost or concurrency,
// from its admission to its end: it holds the cost reserved for it and
// its concurrency slot. End it once the work is done (Middleware does).
// A Job is safe for concurrent use.
type Job struct {
	sp       Spender
	key      string
	reset    time.Time // when the window the cost was reserved in ends
	cost     bool      // a cost was reserved (the tier limits cost)
	reserved int       // what was reserved
	slot     uint64    // the concurrency slot, 0 if none
	now      func() time.Time
	actual   atomic.Int64 // the cost reported, plus 1; 0: none
	ended    atomic.Bool
}

// ReportCost tells the job what its work actually cost, to be settled
// against the reservation when it ends; the last report counts. A
// negative cost counts as 0, one above 1e9 as 1e9.
func (j *Job) ReportCost(cost int) {
	j.actual.Store(int64(min(max(cost, 0), maxCost)) + 1)
}

// End ends the job: its slot is given back, and its cost settles: what
// ReportCost said, charged or refunded against the reservation; with no
// report, the reservation stands, unless failed (the work failed: a 5xx),
// which gives it all back. Only the first End counts.
func (j *Job) End(ctx context.Context, failed bool) {
	if j == nil || j.ended.Swap(true) {
		return
	}
	now := j.now()
	if j.slot != 0 {
		j.sp.Release(ctx, j.key, j.slot)
	}
	if !j.cost {
		return
	}
	actual := j.reserved
	switch a := j.actual.Load(); {
	case a > 0:
		actual = int(a - 1)
	case failed:
		actual = 0
	}
	if delta := actual - j.reserved; delta != 0 {
		j.sp.SettleCost(ctx, now, j.key, j.reset, delta)
	}
}

type jobKey struct{}

// JobOf returns the Job of the request whose context is ctx, or nil: the
// request was not admitted by a Middleware, or its tier limits neither
// cost nor concurrency.
func JobOf(ctx context.Context) *Job {
	j, _ := ctx.Value(jobKey{}).(*Job)
	return j
}

// ReportCost tells the Middleware that admitted the request whose context
// is ctx what its work actually cost (see Job.ReportCost), and reports
// whether there was a job to tell.
func ReportCost(ctx context.Context, cost int) bool {
	j := JobOf(ctx)
	if j == nil {
		return false
	}
	j.ReportCost(cost)
	return true
}

// HeaderEstimate is the default cost estimator: the request's
// Tierlimit-Cost header, a whole number from 0 to 1e9; given is false
// without one.
func HeaderEstimate(r *http.Request) (cost int, given bool, err error) {
	return parseCost(r.Header)
}

// parseCost reads HeaderCost from h.
func parseCost(h http.Header) (int, bool, error) {
	vs := h[keyCost]
	switch {
	case len(vs) == 0:
		return 0, false, nil
	case len(vs) > 1:
		return 0, false, errors.New("more than one " + HeaderCost + " header")
	}
	v := strings.TrimSpace(vs[0])
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > maxCost {
		return 0, false, errors.New(HeaderCost + ": want a whole number from 0 to 1000000000, got " + strconv.Quote(shortValue(v)))
	}
	return int(n), true, nil
}

// ParseCost reads a cost from the Tierlimit-Cost field of h: the actual
// cost an upstream reports on its response. ok is false when there is
// none or it is not a whole number from 0 to 1e9.
func ParseCost(h http.Header) (cost int, ok bool) {
	n, given, err := parseCost(h)
	return n, given && err == nil
}

// shortValue cuts a header value for an error message.
func shortValue(v string) string {
	if len(v) > 32 {
		return v[:32] + "..."
	}
	return v
}

// dimState is a limit beyond requests as a response tells it: which, and
// the decision taken on it.
type dimState struct {
	dim string // LimitCost or LimitConcurrency
	d   bucket.Decision
}

// admitMore takes, for a request admitted in the request dimension at now,
// what the tier's cost and concurrency limits ask, all or nothing: when
// one refuses, what was taken is given back, the request's hit too, and ok
// is false, the refusal last in dims. hit is when the window the request's
// hit was counted in ends. A tier that limits neither gets a nil Job.
func (l *Limiter) admitMore(ctx context.Context, key string, tier config.Tier, degraded bool, estimate int, now time.Time, hit time.Time, dims []dimState) (*Job, []dimState, bool) {
	var (
		slot  uint64
		reset time.Time
	)
	if tier.Cost.Set() {
		d := l.spender.TakeCost(ctx, now, key, estimate, tier.Cost.For(degraded))
		dims = append(dims, dimState{LimitCost, d})
		if !d.Allowed {
			l.spender.Refund(ctx, now, key, hit)
			return nil, dims, false
		}
		reset = d.ResetAt
	}
	if tier.Concurrency.Set() {
		limit := tier.Concurrency.For(degraded)
		id, held := l.spender.Acquire(ctx, now, key, limit, now.Add(l.maxJob))
		d := bucket.Decision{Allowed: id != 0, Limit: limit, Remaining: max(0, limit-held)}
		if id == 0 {
			// When a slot frees is up to the jobs running: look again in a
			// second.
			d.RetryAt = now.Add(time.Second)
			dims = append(dims, dimState{LimitConcurrency, d})
			l.spender.Refund(ctx, now, key, hit)
			if tier.Cost.Set() && estimate > 0 {
				l.spender.SettleCost(ctx, now, key, reset, -estimate)
			}
			return nil, dims, false
		}
		dims = append(dims, dimState{LimitConcurrency, d})
		slot = id
	}
	return &Job{sp: l.spender, key: key, reset: reset, now: l.clock, cost: tier.Cost.Set(), reserved: estimate, slot: slot}, dims, true
}

// clock returns the Limiter's time.
func (l *Limiter) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}
