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
	"log/slog"
	"net/http"
	"slices"
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

// Local is the Checker of a single node: every key is counted in Store.
type Local struct {
	Store *bucket.Store
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
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.Allow(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// Authorize returns the forward-auth handler, for a proxy that asks before
// it passes a request on (nginx auth_request, Envoy's HTTP ext_authz,
// Traefik's ForwardAuth) and for a sidecar's client such as the Python
// middleware. It takes any method and any path, and decides the request's
// X-API-Key exactly as Middleware does: 200 with the rate-limit headers and
// no body when the request may go on, else the 401 or 429 Middleware would
// write, headers and JSON body included. The request's body is never read.
func (l *Limiter) Authorize() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.Allow(w, r) {
			w.WriteHeader(http.StatusOK)
		}
	})
}

// Allow decides r, writes the rate-limit headers, and reports whether the
// request may go on. When it returns false it has already written the 401
// or 429 response. Use it where a handler cannot be wrapped.
func (l *Limiter) Allow(w http.ResponseWriter, r *http.Request) bool {
	start := time.Now() // the decision's time, with the default clock, and the start of its timing
	key, problem := apiKey(r.Header)
	if problem != "" {
		l.metrics.rejected(outcomeUnauthenticated)
		WriteError(w, http.StatusUnauthorized, "invalid_api_key", problem)
		return false
	}
	tier, ok := l.keys.Lookup(key)
	if !ok {
		l.metrics.rejected(outcomeUnauthenticated)
		WriteError(w, http.StatusUnauthorized, "invalid_api_key", "unknown API key")
		return false
	}
	status := l.health.Status()
	limit := tier.LimitFor(status == health.Degraded)
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
	case l.paths != nil:
		d, path = l.paths.CheckPath(r.Context(), now, key, limit)
	default:
		d = l.checker.Check(r.Context(), now, key, limit)
	}
	observe(l.timers, path, start)
	writeHeaders(w.Header(), tier.Name, l.window, d, now)
	l.metrics.decided(tier.Name, d.Allowed)
	if l.log.Enabled(r.Context(), slog.LevelDebug) {
		l.log.Debug("decision", "key_hash", config.KeyHash(key), "tier", tier.Name, "status", status.String(),
			"limit", limit, "allowed", d.Allowed, "remaining", d.Remaining)
	}
	if !d.Allowed {
		writeRateLimited(w, tier.Name, d.Limit, l.window, d, now)
		return false
	}
	return true
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
