package tierlimit

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tierlimit/tierlimit/forward"
)

// peerSeries holds the series labelled by peer that forwarded checks make,
// and drops those of peers no longer in the ring when it is scraped, so a
// member that left the cluster leaves no series behind.
type peerSeries struct {
	ring peerReader // set by registerCluster, before the series are registered
	took *prometheus.HistogramVec
	errs *prometheus.CounterVec
	// seen holds the names of the peers that may have series, as keys.
	seen sync.Map
}

// forwarded records a check forwarded to peer. The peer is marked seen
// after its series are made, so that a prune running meanwhile, which
// unmarks a peer before it deletes its series, leaves it marked whenever
// it leaves series: no series outlives its mark.
func (p *peerSeries) forwarded(peer string, d time.Duration, err error) {
	p.took.WithLabelValues(peer).Observe(d.Seconds())
	if err != nil {
		p.errs.WithLabelValues(peer).Inc()
	}
	if _, ok := p.seen.Load(peer); !ok {
		p.errs.WithLabelValues(peer) // at 0 from the peer's first check on
		p.seen.Store(peer, struct{}{})
	}
}

// Describe describes the series.
func (p *peerSeries) Describe(ch chan<- *prometheus.Desc) {
	p.took.Describe(ch)
	p.errs.Describe(ch)
}

// Collect drops the series of peers no longer in the ring, then reads the
// others.
func (p *peerSeries) Collect(ch chan<- prometheus.Metric) {
	members := make(map[string]bool)
	for _, name := range p.ring.peers() {
		members[name] = true
	}
	p.seen.Range(func(k, _ any) bool {
		if name := k.(string); !members[name] {
			p.seen.Delete(name)
			p.took.DeleteLabelValues(name)
			p.errs.DeleteLabelValues(name)
		}
		return true
	})
	p.took.Collect(ch)
	p.errs.Collect(ch)
}

// breakerCollector exports tierlimit_peer_breaker_state{peer,state} for
// every member of the ring but this node: 1 for the state its breaker is in
// and 0 for the other two, so a member that left has no series. A member
// not forwarded to yet has a closed breaker.
type breakerCollector struct {
	peers peerReader
	desc  *prometheus.Desc
}

// Describe sends the one series description.
func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect reads the breakers at scrape time.
func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	labels := [...]struct {
		state forward.BreakerState
		label string
	}{
		{forward.BreakerClosed, "closed"},
		{forward.BreakerOpen, "open"},
		{forward.BreakerHalfOpen, "half_open"},
	}
	states := c.peers.breakers(time.Now())
	for _, peer := range c.peers.peers() {
		st := states[peer] // BreakerClosed, the zero value, if none yet
		for _, s := range labels {
			v := 0.0
			if st == s.state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, peer, s.label)
		}
	}
}

// deadlineCollector exports tierlimit_forward_deadline_seconds{peer} for
// every peer the Router has forwarded to.
type deadlineCollector struct {
	peers peerReader
	desc  *prometheus.Desc
}

// Describe sends the one series description.
func (c *deadlineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect reads the deadlines at scrape time.
func (c *deadlineCollector) Collect(ch chan<- prometheus.Metric) {
	for peer, d := range c.peers.deadlines() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, d.Seconds(), peer)
	}
}
