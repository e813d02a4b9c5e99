// Package api is the HTTP face of the rate limiter: the net/http middleware
// that every API instance puts in front of its handlers, and the admin
// endpoints.
//
// The middleware reads X-API-Key, finds the key's tier through Keys, picks
// the limit in force from the health state (one atomic load), and asks a
// Checker for a decision. The Checker is where the count lives: Local counts
// in this process, and package ownership's Router counts at the key's owner
// across the cluster. The middleware never blocks on anything but the
// Checker, and the Checker bounds its own wait.
//
// The module's root package, tierlimit, builds all of this from one Config;
// use this package directly only to put another Checker behind the
// middleware.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

// Checker decides one hit for key against limit. The middleware calls it on
// the request's goroutine, once per limited request; it must be safe for
// concurrent use and must return within a bounded time whatever ctx says,
// deciding locally if it has to. now is the middleware's clock.
type Checker interface {
	Check(ctx context.Context, now time.Time, key string, limit int) bucket.Decision
}

// PathChecker is a Checker that also says how it decided each check, for
// the decision-time histogram (tierlimit_decision_duration_seconds{path}).
// The middleware calls CheckPath instead of Check when its Checker has it.
type PathChecker interface {
	Checker
	// Paths names the ways CheckPath decides, in the order of the indexes
	// it returns: short, stable, distinct and not empty, as they become
	// metric labels. NewLimiter calls it once.
	Paths() []string
	// CheckPath is Check, and also returns the index in Paths of the way
	// it decided.
	CheckPath(ctx context.Context, now time.Time, key string, limit int) (bucket.Decision, int)
}

// Keys maps an API key to its tier. config.File (tiers.json) is the first
// implementation; a database of customer keys can replace it. Lookup is
// called on every limited request, with a key that passed config.CheckKey:
// it must be safe for concurrent use and fast (no I/O).
type Keys interface {
	Lookup(apiKey string) (config.Tier, bool)
}

// Local is the Checker of a single node: every key is counted in Store,
// and, as a Spender, its cost in Store too, under its counter key
// (config.CostKey), and its jobs in Slots (needed only for tiers that
// limit concurrency).
type Local struct {
	Store *bucket.Store
	Slots *bucket.Slots
}

// Check counts one hit for key in l.Store.
func (l Local) Check(_ context.Context, now time.Time, key string, limit int) bucket.Decision {
	return l.Store.Take(now, key, 1, limit)
}

// Paths returns Local's one path, "local".
func (Local) Paths() []string { return []string{"local"} }

// CheckPath is Check, by path 0.
func (l Local) CheckPath(_ context.Context, now time.Time, key string, limit int) (bucket.Decision, int) {
	return l.Store.Take(now, key, 1, limit), 0
}

// Config configures a Limiter. Keys, Checker, Health and Window are
// required.
type Config struct {
	Keys    Keys
	Checker Checker
	Health  *health.Holder
	// Window is the counting window of the Checker's store, written in the
	// RateLimit-Policy header and the 429 message.
	Window time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Metrics, if not nil, counts decisions by tier and outcome and times
	// them by path: the Checker's Paths if it is a PathChecker, else
	// PathOther; and PathBlocked.
	Metrics *Metrics
	// Logger receives per-request Debug events. Nil discards.
	Logger *slog.Logger

	// Spender counts the cost and the concurrency of tiers that limit
	// them; Local is one. Without it, a request of such a tier gets a 500
	// (limiter_misconfigured): such limits are never ignored.
	Spender Spender
	// CostUnit names what a cost counts, for the headers and the 429
	// message (config.Tiers.CostUnit).
	CostUnit string
	// EstimateCost returns a request's estimated cost, and whether it
	// gave one; an error refuses the request with a 400 that says it.
	// Default: HeaderEstimate, the Tierlimit-Cost header. A request
	// without an estimate reserves its tier's CostEstimate.
	EstimateCost func(r *http.Request) (cost int, given bool, err error)
	// MaxJobDuration is how long a concurrency slot is held at most if
	// its job never ends (a lost release). Default DefaultMaxJobDuration.
	MaxJobDuration time.Duration

	// InFlight, if not nil, counts the requests Middleware admitted whose
	// handler has not returned: the work in flight behind this instance,
	// its load signal's numerator.
	InFlight *atomic.Int64
	// Admitted, if not nil, counts every request admitted (Middleware,
	// Authorize, Allow and Admit alike).
	Admitted *atomic.Int64
	// Shed, if not nil, is told of every request refused while the state
	// is DEGRADED, with its key and tier: the demand DEGRADED refuses.
	Shed func(key string, tier config.Tier, now time.Time)
	// Queue, if not nil, is where the requests Middleware admitted wait
	// for a slot before next sees them, the sheddable tiers'
	// (config.Tier.Sheddable) behind the others'. A request it refuses
	// gets a 503: its hit stays counted, its cost and concurrency are
	// given back.
	Queue *Queue
}

// Limiter is the rate-limiting middleware. It is safe for concurrent use.
type Limiter struct {
	keys    Keys
	checker Checker
	paths   PathChecker // checker, if it is one; else nil
	health  *health.Holder
	window  int64            // seconds
	now     func() time.Time // nil: time.Now, read once per request for both the decision and its timing
	metrics *Metrics
	// timers are the decision-time histograms of the checker's paths, then
	// of PathBlocked; nil without metrics.
	timers  []prometheus.Observer
	blocked int // index of PathBlocked in timers
	log     *slog.Logger

	spender  Spender
	unit     string
	estimate func(r *http.Request) (int, bool, error)
	maxJob   time.Duration
	reserved reservations  // Jobs /authorize keeps open until their settle call
	inFlight *atomic.Int64 // nil: not counted
	admitted *atomic.Int64 // nil: not counted
	shed     func(string, config.Tier, time.Time)
	queue    *Queue // nil: next runs at once
}

// NewLimiter returns a Limiter. It panics if Keys, Checker or Health is nil
// or Window is not positive, which are programming errors.
func NewLimiter(cfg Config) *Limiter {
	if cfg.Keys == nil || cfg.Checker == nil || cfg.Health == nil || cfg.Window <= 0 {
		panic("api: Config needs Keys, Checker, Health and a positive Window")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		keys:    cfg.Keys,
		checker: cfg.Checker,
		health:  cfg.Health,
		window:  int64((cfg.Window + time.Second - 1) / time.Second),
		now:     cfg.Now,
		metrics: cfg.Metrics,
		log:     cfg.Logger,

		spender:  cfg.Spender,
		unit:     cfg.CostUnit,
		estimate: cfg.EstimateCost,
		maxJob:   cfg.MaxJobDuration,
		inFlight: cfg.InFlight,
		admitted: cfg.Admitted,
		shed:     cfg.Shed,
		queue:    cfg.Queue,
	}
	if l.estimate == nil {
		l.estimate = HeaderEstimate
	}
	if l.maxJob <= 0 {
		l.maxJob = DefaultMaxJobDuration
	}
	paths := []string{PathOther}
	if pc, ok := cfg.Checker.(PathChecker); ok {
		l.paths, paths = pc, slices.Clone(pc.Paths())
	}
	l.blocked = len(paths)
	l.timers = cfg.Metrics.timers(append(paths, PathBlocked))
	return l
}

// Middleware wraps next so that every request is counted against its API
// key's tier before next sees it. A request without a valid key gets 401
// and is not counted; one over its limit gets 429 at once. Both carry a
// JSON error body. A key with a control byte or DEL never gets here:
// net/http refuses a header value HTTP forbids with its own plain-text 400
// before any handler runs. next sees the request unchanged (putting the tier in its
// context would cost a copy of the request, three allocations and about a
// third more time per request); Keys.Lookup tells the tier at no cost.
//
// For a tier that limits cost or concurrency, next sees the request with
// its Job in the context (JobOf, ReportCost), and the Job ends when next
// returns: its slot is given back and its cost settles, the whole
// reservation given back if next answered 5xx or panicked without having
// reported a cost.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j, tier, ok := l.admit(w, r)
		if !ok {
			return
		}
		if l.inFlight != nil {
			l.inFlight.Add(1)
			defer l.inFlight.Add(-1)
		}
		if l.queue != nil {
			if !l.enter(w, r, tier, j) {
				return
			}
			defer l.queue.Leave()
		}
		if j == nil {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		failed := true // until next returns: a panic fails the job
		defer func() { j.End(r.Context(), failed) }()
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), jobKey{}, j)))
		failed = sw.status >= 500
	})
}

// trueValue is a header's value "true", shared: never modified.
var trueValue = []string{"true"}

// enter waits in the Queue for a slot for r, admitted, of tier, and
// reports whether it got one. When it did not, its Job (if any) has ended
// as failed, and the 503 is written, unless the client is gone.
func (l *Limiter) enter(w http.ResponseWriter, r *http.Request, tier config.Tier, j *Job) bool {
	err := l.queue.Enter(r.Context(), tier.Sheddable())
	if err == nil {
		return true
	}
	j.End(r.Context(), true)
	switch {
	case errors.Is(err, ErrShed):
		w.Header()[keyRetryAfter] = []string{strconv.FormatInt(l.window, 10)}
		WriteError(w, http.StatusServiceUnavailable, "shed",
			"the cluster is DEGRADED: tier "+tier.Name+"'s requests that were still waiting for a slot are refused")
	case errors.Is(err, ErrQueueTimeout):
		wait := l.queue.MaxWait()
		w.Header()[keyRetryAfter] = []string{strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10)}
		WriteError(w, http.StatusServiceUnavailable, "queue_timeout",
			"waited "+wait.String()+" for a slot: this instance is full")
	}
	return false // else the client is gone: no answer
}

// statusWriter remembers the status a handler answered with. Unwrap lets
// http.ResponseController reach the writer beneath (Flush, Hijack, ...).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes on to the writer beneath, which a streaming handler (or
// httputil.ReverseProxy) may need without a ResponseController.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Authorize returns the forward-auth handler, for a proxy that asks before
// it passes a request on (nginx auth_request, Envoy's HTTP ext_authz,
// Traefik's ForwardAuth) and for a sidecar's client such as the Python
// middleware. It takes any method and any path, and decides the request's
// X-API-Key exactly as Middleware does: 200 with the rate-limit headers and
// no body when the request may go on, else the 401 or 429 Middleware would
// write, headers and JSON body included. The request's body is never read.
//
// For a tier that limits cost or concurrency, the request's Job ends at
// once (its estimate stands, its slot is given back), unless the request
// asks to settle later (HeaderSettle "later"): then the 200 names the
// reservation (HeaderReservation), which holds the estimate and the slot
// until the settle call (Settle) or MaxJobDuration.
func (l *Limiter) Authorize() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j, tier, ok := l.admit(w, r)
		if !ok {
			return
		}
		if tier.Sheddable() {
			w.Header()[keySheddable] = trueValue
		}
		if j != nil {
			if keepOpen(r) {
				now := l.clock()
				if id := l.reserved.open(r.Context(), j, now, now.Add(l.maxJob)); id != "" {
					w.Header()[keyReservation] = []string{id}
				}
			} else {
				j.End(r.Context(), false)
			}
		}
		w.WriteHeader(http.StatusOK)
	})
}

// Allow decides r, writes the rate-limit headers, and reports whether the
// request may go on. When it returns false it has already written the 401,
// 400 or 429 response. Use it where a handler cannot be wrapped. For a
// tier that limits cost or concurrency, Allow ends the request's Job at
// once: the estimate is charged and the slot given back, so use Admit
// there, and end the Job when the work is done.
func (l *Limiter) Allow(w http.ResponseWriter, r *http.Request) bool {
	j, ok := l.Admit(w, r)
	j.End(r.Context(), false)
	return ok
}

// Admit is Allow that, for a tier that limits cost or concurrency, also
// returns the request's Job: the cost reserved and the slot taken, until
// the Job's End. The Job is nil when the request was refused, or when its
// tier limits neither.
func (l *Limiter) Admit(w http.ResponseWriter, r *http.Request) (*Job, bool) {
	j, _, ok := l.admit(w, r)
	return j, ok
}

// admit is Admit that also returns the request's tier when it was
// admitted (the zero Tier otherwise).
func (l *Limiter) admit(w http.ResponseWriter, r *http.Request) (*Job, config.Tier, bool) {
	start := time.Now() // the decision's time, with the default clock, and the start of its timing
	key, problem := apiKey(r.Header)
	if problem != "" {
		l.metrics.rejected(outcomeUnauthenticated)
		WriteError(w, http.StatusUnauthorized, "invalid_api_key", problem)
		return nil, config.Tier{}, false
	}
	tier, ok := l.keys.Lookup(key)
	if !ok {
		l.metrics.rejected(outcomeUnauthenticated)
		WriteError(w, http.StatusUnauthorized, "invalid_api_key", "unknown API key")
		return nil, config.Tier{}, false
	}
	more := tier.Cost.Set() || tier.Concurrency.Set()
	estimate := 0
	if more {
		if l.spender == nil {
			WriteError(w, http.StatusInternalServerError, "limiter_misconfigured", "tier "+tier.Name+" limits cost or concurrency, which this limiter does not count")
			return nil, config.Tier{}, false
		}
		if tier.Cost.Set() {
			est, given, err := l.estimate(r)
			if err != nil {
				WriteError(w, http.StatusBadRequest, "invalid_cost", err.Error())
				return nil, config.Tier{}, false
			}
			estimate = tier.CostEstimate
			if given {
				estimate = est
			}
		}
	}
	status := l.health.Status()
	degraded := status == health.Degraded
	limit := tier.LimitFor(degraded)
	now := start
	if l.now != nil {
		now = l.now()
	}
	var d bucket.Decision
	path := 0
	switch {
	case limit < 1:
		// A key store may block a key with a zero limit; nothing to count.
		end := now.Add(time.Duration(l.window) * time.Second)
		d, path = bucket.Decision{ResetAt: end, RetryAt: end}, l.blocked
		more = false // a blocked key takes nothing
	case l.paths != nil:
		d, path = l.paths.CheckPath(r.Context(), now, key, limit)
	default:
		d = l.checker.Check(r.Context(), now, key, limit)
	}
	why, refused := refusal{dim: LimitRequests, limit: d.Limit}, d
	var (
		j    *Job
		room [2]dimState // dims' backing: no allocation
		dims []dimState
	)
	if more && d.Allowed {
		var ok bool
		j, dims, ok = l.admitMore(r.Context(), key, tier, degraded, estimate, now, d.ResetAt, room[:0])
		if !ok {
			// The request's hit was given back: the request headers say
			// what is left with it.
			d.Remaining = min(d.Remaining+1, d.Limit)
			refused = dims[len(dims)-1].d
			why = refusal{dim: dims[len(dims)-1].dim, limit: refused.Limit, unit: l.unit}
		}
	}
	allowed := d.Allowed && refused.Allowed
	observe(l.timers, path, start)
	h := w.Header()
	writeAllHeaders(h, tier.Name, l.window, l.unit, dims, d, now)
	if why.dim != LimitRequests && !allowed {
		// Refused by another limit: the request is admitted when that
		// one lifts.
		at := retryMoment(refused, now)
		h[keyReset] = []string{strconv.FormatInt(ceilUnix(at), 10)}
		h[keyRetryAfter] = []string{strconv.FormatInt(retryAfter(refused, now), 10)}
	}
	l.metrics.decided(tier.Name, allowed)
	if l.log.Enabled(r.Context(), slog.LevelDebug) {
		l.log.Debug("decision", "key_hash", config.KeyHash(key), "tier", tier.Name, "status", status.String(),
			"limit", limit, "allowed", allowed, "remaining", d.Remaining, "refused_by", why.dim, "cost", estimate)
	}
	if !allowed {
		if degraded && l.shed != nil {
			l.shed(key, tier, now)
		}
		writeRateLimited(w, tier.Name, why, l.window, refused, now)
		return nil, config.Tier{}, false
	}
	if l.admitted != nil {
		l.admitted.Add(1)
	}
	return j, tier, true
}

// apiKey returns the request's API key, or a reason to refuse it.
func apiKey(h http.Header) (key, problem string) {
	vs := h["X-Api-Key"] // the canonical form of X-API-Key, without canonicalising per request
	switch {
	case len(vs) == 0:
		return "", "missing X-API-Key header"
	case len(vs) > 1:
		return "", "more than one X-API-Key header"
	}
	if err := config.CheckKey(vs[0]); err != nil {
		return "", "X-API-Key: " + err.Error()
	}
	return vs[0], ""
}
