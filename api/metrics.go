package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes counted by Metrics.
const (
	outcomeAllowed         = "allowed"
	outcomeLimited         = "limited"
	outcomeUnauthenticated = "unauthenticated"
)

// TierNone is the tier label of decisions made without a tier: requests
// refused with 401 (no valid API key), and keys a Keys store gave a tier
// without a name. A label value is never empty.
const TierNone = "none"

// Paths the middleware names itself in tierlimit_decision_duration_seconds.
const (
	// PathBlocked: the key's tier has no room at all (a limit below 1, as
	// a Keys store may give to block a key); the Checker is not asked.
	PathBlocked = "blocked"
	// PathOther: decided by a Checker that is not a PathChecker.
	PathOther = "other"
)

// Metrics counts the middleware's decisions and times them. It is a
// prometheus.Collector: register it where its series should be scraped. A
// nil *Metrics records nothing. It is safe for concurrent use.
//
// It exports tierlimit_decisions_total{tier,outcome} and
// tierlimit_decision_duration_seconds{path}. The series of the tiers given
// to NewMetrics, of TierNone, and of every path of the Limiter it is given
// to exist from the start, at zero.
type Metrics struct {
	decisions *prometheus.CounterVec
	took      *prometheus.HistogramVec
	// byTier holds the counters of known tiers, resolved once, so the
	// request path does no label hashing.
	byTier map[string][2]prometheus.Counter
	unauth prometheus.Counter
}

// NewMetrics returns the decision series, with those of tiers resolved
// ahead; other tiers' are made on first use (or by AddTiers).
func NewMetrics(tiers []string) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierlimit_decisions_total",
			Help: "Rate-limit decisions by tier and outcome (allowed, limited, unauthenticated; the tier of an unauthenticated request is \"" + TierNone + "\").",
		}, []string{"tier", "outcome"}),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tierlimit_decision_duration_seconds",
			Help: "Time the middleware took to decide a request with a valid API key, from reading the key to the decision, by the path that decided it.",
			// 1 µs to 25 ms, three per decade, so that a local decision
			// (about a microsecond), a lease, and a check forwarded to its
			// owner (tens of microseconds up to the forward deadline) each
			// fall in buckets of their own.
			Buckets: []float64{
				1e-6, 2.5e-6, 5e-6,
				10e-6, 25e-6, 50e-6,
				100e-6, 250e-6, 500e-6,
				1e-3, 2.5e-3, 5e-3,
				10e-3, 25e-3,
			},
		}, []string{"path"}),
		byTier: make(map[string][2]prometheus.Counter, len(tiers)),
	}
	for _, t := range tiers {
		m.byTier[t] = [2]prometheus.Counter{
			m.decisions.WithLabelValues(t, outcomeLimited),
			m.decisions.WithLabelValues(t, outcomeAllowed),
		}
	}
	m.unauth = m.decisions.WithLabelValues(TierNone, outcomeUnauthenticated)
	return m
}

// AddTiers makes the series of tiers that have none yet, at zero: for the
// tiers a reload brings. Their decisions are counted either way.
func (m *Metrics) AddTiers(tiers []string) {
	if m == nil {
		return
	}
	for _, t := range tiers {
		if t == "" {
			continue
		}
		m.decisions.WithLabelValues(t, outcomeLimited)
		m.decisions.WithLabelValues(t, outcomeAllowed)
	}
}

// Describe describes the decision series.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.decisions.Describe(ch)
	m.took.Describe(ch)
}

// Collect reads the decision series.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.decisions.Collect(ch)
	m.took.Collect(ch)
}

// timers returns the histograms of paths, resolved once so that timing a
// decision does no label lookup, or nil for a nil m.
func (m *Metrics) timers(paths []string) []prometheus.Observer {
	if m == nil {
		return nil
	}
	out := make([]prometheus.Observer, len(paths))
	for i, p := range paths {
		out[i] = m.took.WithLabelValues(p)
	}
	return out
}

func (m *Metrics) decided(tier string, allowed bool) {
	if m == nil {
		return
	}
	i := 0
	if allowed {
		i = 1
	}
	if c, ok := m.byTier[tier]; ok {
		c[i].Inc()
		return
	}
	outcome := outcomeLimited
	if allowed {
		outcome = outcomeAllowed
	}
	if tier == "" {
		tier = TierNone
	}
	m.decisions.WithLabelValues(tier, outcome).Inc()
}

func (m *Metrics) rejected(string) {
	if m == nil {
		return
	}
	m.unauth.Inc()
}

// observe records a decision by path i of timers that began at start. It
// does nothing without timers or for an index out of range (a PathChecker
// that returned one).
func observe(timers []prometheus.Observer, i int, start time.Time) {
	if uint(i) < uint(len(timers)) {
		timers[i].Observe(time.Since(start).Seconds())
	}
}
