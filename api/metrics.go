package api

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes counted by Metrics.
const (
	outcomeAllowed         = "allowed"
	outcomeLimited         = "limited"
	outcomeUnauthenticated = "unauthenticated"
)

// Metrics counts the middleware's decisions. It is a prometheus.Collector:
// register it where its series should be scraped. A nil *Metrics counts
// nothing. It is safe for concurrent use.
type Metrics struct {
	decisions *prometheus.CounterVec
	// byTier holds the counters of known tiers, resolved once, so the
	// request path does no label hashing.
	byTier map[string][2]prometheus.Counter
	unauth prometheus.Counter
}

// NewMetrics returns the counters of tierlimit_decisions_total{tier,outcome},
// with the series of tiers resolved ahead; others are made on first use.
func NewMetrics(tiers []string) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierlimit_decisions_total",
			Help: "Rate-limit decisions by tier and outcome (allowed, limited, unauthenticated).",
		}, []string{"tier", "outcome"}),
		byTier: make(map[string][2]prometheus.Counter, len(tiers)),
	}
	for _, t := range tiers {
		m.byTier[t] = [2]prometheus.Counter{
			m.decisions.WithLabelValues(t, outcomeLimited),
			m.decisions.WithLabelValues(t, outcomeAllowed),
		}
	}
	m.unauth = m.decisions.WithLabelValues("", outcomeUnauthenticated)
	return m
}

// Describe describes the decision counters.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.decisions.Describe(ch) }

// Collect reads the decision counters.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.decisions.Collect(ch) }

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
	m.decisions.WithLabelValues(tier, outcome).Inc()
}

func (m *Metrics) rejected(string) {
	if m == nil {
		return
	}
	m.unauth.Inc()
}
