package tierlimit

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/handoff"
	"github.com/tierlimit/tierlimit/ownership"
)

// The middleware times decisions by the path each took only through a
// PathChecker.
var (
	_ api.PathChecker = (*ownership.Router)(nil)
	_ api.PathChecker = api.Local{}
)

// The series read the Limiter through the interfaces below, each what one
// group of series asks, never through its fields. A Prometheus registry
// calls their methods when it is scraped, from its own goroutines, so they
// must be safe for concurrent use and quick: no I/O, no wait.
var (
	_ healthReader = (*Limiter)(nil)
	_ tierReader   = (*Limiter)(nil)
	_ storeReader  = (*Limiter)(nil)
	_ memberReader = (*Limiter)(nil)
	_ peerReader   = (*Limiter)(nil)
	_ leaseReader  = (*Limiter)(nil)
)

// limiterSource is what the series of every Limiter read.
type limiterSource interface {
	healthReader
	tierReader
	storeReader
}

// memberSource is what the series of a cluster member read besides.
type memberSource interface {
	memberReader
	peerReader
	leaseReader
}

// healthReader reads the health state in force (tierlimit_health_*).
type healthReader interface {
	Health() State
}

// tierReader names the tiers of the key store in force, so that each has
// its decision series from the start.
type tierReader interface {
	// tierNames returns the tiers' names; nil if the key store does not
	// tell them (Config.Keys).
	tierNames() []string
}

// storeReader reads the stores of counts (tierlimit_store_keys,
// tierlimit_fallback_store_keys, tierlimit_store_evictions_total).
type storeReader interface {
	// storeLen returns the keys in the store of owned counts.
	storeLen() int
	// fallbackLen returns the keys in the store of local fallback counts;
	// 0 on a single node.
	fallbackLen() int
	// evicted returns the live keys dropped from either store to keep it
	// under Config.MaxKeys.
	evicted() uint64
}

// memberReader reads this member's view of the cluster
// (tierlimit_cluster_members, tierlimit_cluster_reachable_members,
// tierlimit_limit_share, tierlimit_backup_keys,
// tierlimit_health_states_refused_total).
type memberReader interface {
	// aliveMembers returns the alive members, this node included.
	aliveMembers() int
	// reachableMembers returns the members heard from lately (a call or a
	// ping), this node included.
	reachableMembers() int
	// limitShare returns the share of each limit this node's side
	// applies: 1, or less without a majority.
	limitShare() float64
	// backupLen returns the copies of other members' counts held here.
	backupLen() int
	// refusedStates returns the peers' health states refused as stamped
	// too far ahead of this node's clock.
	refusedStates() uint64
}

// peerReader reads the other members of the ring and the state kept for
// each (the series labelled by peer).
type peerReader interface {
	// peers returns the other members of the ring, whom checks may be
	// forwarded to.
	peers() []string
	// breakers returns the state at now of the breaker of each peer
	// forwarded to so far.
	breakers(now time.Time) map[string]ownership.BreakerState
	// deadlines returns how long a check forwarded now to each peer
	// forwarded to so far may wait.
	deadlines() map[string]time.Duration
}

// leaseReader reads the leases this member holds (tierlimit_leases).
type leaseReader interface {
	// leasesHeld returns the leases held on keys other members own.
	leasesHeld() int
}

// metrics are the Limiter's Prometheus series. A nil *metrics (no
// Registerer) records nothing.
type metrics struct {
	reg          prometheus.Registerer
	registered   []prometheus.Collector // on reg, to take off again at Close
	tiers        tierReader
	decisions    *api.Metrics
	reloads      *prometheus.CounterVec
	peers        *peerSeries
	fallbackKeys prometheus.GaugeFunc
	fallbacks    *prometheus.CounterVec
	overLimitHit prometheus.Counter
	moved        *prometheus.CounterVec
	restored     prometheus.Counter
	leaseHits    prometheus.Counter
	leaseGrants  *prometheus.CounterVec
	leaseGranted prometheus.Counter
	leasesEnded  *prometheus.CounterVec
	leaseUnused  *prometheus.CounterVec
}

// newMetrics registers the series of every Limiter with cfg.Registerer
// and returns them, or nil if it is nil. cfg has its defaults filled in;
// its forward deadline sets the buckets of the forward durations. Gauges
// read src when scraped.
func newMetrics(cfg Config, src limiterSource) (*metrics, error) {
	reg := cfg.Registerer
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		reg:       reg,
		tiers:     src,
		decisions: api.NewMetrics(src.tierNames()),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierlimit_config_reloads_total",
			Help: "Reloads of the key store, by result: ok, or error (the config in force stayed).",
		}, []string{"result"}),
		peers: &peerSeries{
			took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "tierlimit_forward_duration_seconds",
				Help:    "Checks forwarded to a key's owner, by peer: time until an answer or giving up.",
				Buckets: forwardBuckets(longestForward(cfg)),
			}, []string{"peer"}),
			errs: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "tierlimit_forward_errors_total",
				Help: "Forwarded checks that got no answer from the owner, by peer.",
			}, []string{"peer"}),
		},
		fallbackKeys: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_fallback_store_keys",
			Help: "Keys held in the store of local-only fallback counts.",
		}, func() float64 { return float64(src.fallbackLen()) }),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierlimit_local_fallbacks_total",
			Help: "Checks for keys owned elsewhere decided locally against a share of the limit, by reason.",
		}, []string{"reason"}),
		overLimitHit: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tierlimit_overlimit_cache_hits_total",
			Help: "Checks refused from the over-limit cache without asking the owner.",
		}),
		moved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierlimit_counts_moved_total",
			Help: "Keys' counts sent to peers, by kind (handoff: to a key's new owner; backup: a copy for the member that would own it if this one failed) and result (ok, error).",
		}, []string{"kind", "result"}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tierlimit_counts_restored_total",
			Help: "Keys' counts taken over from the copies of members that failed, or given back from those of restarted members' old processes.",
		}),
		leaseHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tierlimit_lease_decisions_total",
			Help: "Checks for keys owned elsewhere admitted from a lease, without asking the owner.",
		}),
		leaseGrants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierlimit_lease_grants_total",
			Help: "Leases owners granted this node, by kind: new (asked with a check) or renewal (asked ahead, off the request path).",
		}, []string{"kind"}),
		leaseGranted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tierlimit_lease_granted_hits_total",
			Help: "Hits owners granted this node in leases, counted at the owner when granted.",
		}),
		leasesEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierlimit_leases_ended_total",
			Help: "Leases this node ended, by reason: expired, revoked (the limit in force changed), moved (the key is this node's now), stopped, no_room.",
		}, []string{"reason"}),
		leaseUnused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tierlimit_lease_returned_hits_total",
			Help: "Leased hits given back to their owners unused, by the reason the lease ended.",
		}, []string{"reason"}),
	}
	for _, why := range []string{ownership.FallbackTimeout, ownership.FallbackError, ownership.FallbackBreakerOpen,
		ownership.FallbackNoPeer, ownership.FallbackCanceled, ownership.FallbackClosed} {
		m.fallbacks.WithLabelValues(why)
	}
	for _, kind := range []string{"new", "renewal"} {
		m.leaseGrants.WithLabelValues(kind)
	}
	for _, why := range []string{ownership.LeaseExpired, ownership.LeaseRevoked, ownership.LeaseMoved, ownership.LeaseStopped, ownership.LeaseNoRoom} {
		m.leasesEnded.WithLabelValues(why)
		m.leaseUnused.WithLabelValues(why)
	}
	for _, kind := range []string{"handoff", "backup"} {
		for _, result := range []string{"ok", "error"} {
			m.moved.WithLabelValues(kind, result)
		}
	}
	for _, result := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(result) // present from the start, at 0
	}
	err := m.register(m.decisions, m.reloads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_store_keys",
			Help: "Keys held in the store of owned counts.",
		}, func() float64 { return float64(src.storeLen()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tierlimit_store_evictions_total",
			Help: "Live keys dropped to keep a store under MaxKeys.",
		}, func() float64 { return float64(src.evicted()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_health_degraded",
			Help: "1 when the system state is DEGRADED, 0 when NORMAL.",
		}, func() float64 { return float64(src.Health().Status) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_health_version",
			Help: "Version of the health state in force.",
		}, func() float64 { return float64(src.Health().Version) }),
	)
	return m, err
}

// registerCluster registers the series of a cluster member, which read src
// when scraped, once its parts exist.
func (m *metrics) registerCluster(src memberSource) error {
	if m == nil {
		return nil
	}
	m.peers.ring = src
	return m.register(m.peers, m.fallbackKeys, m.fallbacks, m.overLimitHit, m.moved, m.restored,
		m.leaseHits, m.leaseGrants, m.leaseGranted, m.leasesEnded, m.leaseUnused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_backup_keys",
			Help: "Copies of other members' counts held here, in case one of them fails.",
		}, func() float64 { return float64(src.backupLen()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tierlimit_health_states_refused_total",
			Help: "Health states from peers refused as stamped more than MaxClockOffset ahead of this node's clock.",
		}, func() float64 { return float64(src.refusedStates()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_cluster_members",
			Help: "Alive cluster members, this node included.",
		}, func() float64 { return float64(src.aliveMembers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_cluster_reachable_members",
			Help: "Members that answered a call or a ping within the last second or so, this node included: fewer than a majority of the members known fences this node to its share.",
		}, func() float64 { return float64(src.reachableMembers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_limit_share",
			Help: "The share of every limit this node applies: 1 with a majority of the members, else reachable / known (each limit is cut to ceil(limit x share)).",
		}, func() float64 { return src.limitShare() }),
		&breakerCollector{peers: src, desc: prometheus.NewDesc("tierlimit_peer_breaker_state",
			"Circuit breaker of each other member, by state: 1 for the state it is in, 0 for the others: closed (forwarding), open (skipping the peer), half_open (probing).",
			[]string{"peer", "state"}, nil)},
		&deadlineCollector{peers: src, desc: prometheus.NewDesc("tierlimit_forward_deadline_seconds",
			"How long a check forwarded to each peer may wait for it now: fixed, or adapted to the peer's recent round trips.",
			[]string{"peer"}, nil)},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_leases",
			Help: "Leases this node holds on keys other members own.",
		}, func() float64 { return float64(src.leasesHeld()) }),
	)
}

// The forward durations' buckets start at forwardBucketLowest (a round
// trip on loopback, about 35 µs, falls in the second) and reach at least
// forwardBucketTop whatever the deadline, so that a node stalled past a
// short deadline shows by how much.
const (
	forwardBucketLowest = 25 * time.Microsecond
	forwardBucketTop    = 25 * time.Millisecond
)

// forwardBuckets returns the bucket bounds, in seconds, of
// tierlimit_forward_duration_seconds for forwards that wait at most
// longest: 25, 50, 100, 250, 500 µs, 1 ms and so on (the bounds of
// tierlimit_decision_duration_seconds) up to 25 ms, or further, to the
// first bound a quarter or more above longest. So a check given up at its
// deadline, and noticed up to a quarter late, lands in a finite bucket;
// +Inf holds only forwards that overran it further. Every deadline up to
// 20 ms, DefaultForwardTimeoutMax's included, gets the same ten buckets,
// 25 µs to 25 ms, so that the series of nodes with different deadlines
// add up.
func forwardBuckets(longest time.Duration) []float64 {
	top := max(longest+longest/4, forwardBucketTop)
	var bounds []float64
	for d, i := forwardBucketLowest, 0; ; i++ {
		bounds = append(bounds, d.Seconds())
		if d >= top || d > math.MaxInt64/3 {
			return bounds
		}
		if i%3 == 2 {
			d = d * 5 / 2 // 100 µs to 250 µs, 1 ms to 2.5 ms, …
		} else {
			d *= 2
		}
	}
}

// longestForward returns the longest a forwarded check may wait under cfg
// (defaults filled in): the fixed ForwardTimeout if set, else the adaptive
// deadline's ForwardTimeoutMax.
func longestForward(cfg Config) time.Duration {
	if cfg.ForwardTimeout > 0 {
		return cfg.ForwardTimeout
	}
	return cfg.ForwardTimeoutMax
}

// register registers cs on m.reg, and remembers them for unregister. A
// series already there means a second Limiter on one registry.
func (m *metrics) register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			if errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				return &ConfigError{Field: "Registerer", Err: err, Reason: fmt.Sprintf(
					"%v: it holds another Limiter's series; give each Limiter a registry of its own, or wrap each with prometheus.WrapRegistererWith and a label of its own", err)}
			}
			return &ConfigError{Field: "Registerer", Err: err}
		}
		m.registered = append(m.registered, c)
	}
	return nil
}

// unregister takes every series off the registry, so that a later Limiter
// may register its own there.
func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}

// decisionMetrics returns the middleware's series, or nil for none.
func (m *metrics) decisionMetrics() *api.Metrics {
	if m == nil {
		return nil
	}
	return m.decisions
}

// reloaded counts one reload that ended with err.
func (m *metrics) reloaded(err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reloads.WithLabelValues(result).Inc()
	if err == nil {
		m.decisions.AddTiers(m.tiers.tierNames()) // a new tier's series are there from the reload on
	}
}

// observer returns the Router's Observer: m, or nil for none.
func (m *metrics) observer() ownership.Observer {
	if m == nil {
		return nil
	}
	return m
}

// keeperObserver returns the Keeper's KeeperObserver: m, or nil for none.
func (m *metrics) keeperObserver() handoff.Observer {
	if m == nil {
		return nil
	}
	return m
}

// Moved counts n counts sent to a peer.
func (m *metrics) Moved(kind string, n int, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.moved.WithLabelValues(kind, result).Add(float64(n))
}

// Restored counts n counts taken over from the copies of a failed member,
// or given back from those of a restarted member's old process.
func (m *metrics) Restored(n int) { m.restored.Add(float64(n)) }

// Forwarded records a forwarded check.
func (m *metrics) Forwarded(peer string, d time.Duration, err error) { m.peers.forwarded(peer, d, err) }

// Fallback records a local decision for a key owned elsewhere.
func (m *metrics) Fallback(reason string) { m.fallbacks.WithLabelValues(reason).Inc() }

// OverLimitCacheHit records a refusal served from the over-limit cache.
func (m *metrics) OverLimitCacheHit() { m.overLimitHit.Inc() }

// LeaseDecision records a check admitted from a lease.
func (m *metrics) LeaseDecision() { m.leaseHits.Inc() }

// LeaseGranted records a lease granted to this node.
func (m *metrics) LeaseGranted(hits int, renewal bool) {
	kind := "new"
	if renewal {
		kind = "renewal"
	}
	m.leaseGrants.WithLabelValues(kind).Inc()
	m.leaseGranted.Add(float64(hits))
}

// LeaseEnded records a lease that ended and the hits it gave back.
func (m *metrics) LeaseEnded(why string, unused int) {
	m.leasesEnded.WithLabelValues(why).Inc()
	m.leaseUnused.WithLabelValues(why).Add(float64(unused))
}

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
		state ownership.BreakerState
		label string
	}{
		{ownership.BreakerClosed, "closed"},
		{ownership.BreakerOpen, "open"},
		{ownership.BreakerHalfOpen, "half_open"},
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

// What a Limiter tells its series: the interfaces at the top of this file.

// tierNames returns the tiers of the tiers file, or nil with Config.Keys.
func (l *Limiter) tierNames() []string {
	if l.file == nil {
		return nil
	}
	return l.file.Tiers().Names()
}

func (l *Limiter) storeLen() int { return l.store.Len() }

func (l *Limiter) fallbackLen() int {
	if l.fallback == nil {
		return 0
	}
	return l.fallback.Len()
}

func (l *Limiter) evicted() uint64 {
	n := l.store.Evicted()
	if l.fallback != nil {
		n += l.fallback.Evicted()
	}
	return n
}

func (l *Limiter) aliveMembers() int     { return len(l.node.Alive()) }
func (l *Limiter) reachableMembers() int { return l.router.Reachable(time.Now()) }
func (l *Limiter) limitShare() float64   { return l.router.Share() }
func (l *Limiter) backupLen() int        { return l.keeper.BackupLen() }
func (l *Limiter) refusedStates() uint64 { return l.node.RefusedStates() }

func (l *Limiter) leasesHeld() int {
	held, _ := l.router.Leases()
	return held
}

func (l *Limiter) peers() []string {
	members := l.ring.Members()
	out := make([]string, 0, len(members))
	for _, name := range members {
		if name != l.cfg.NodeName {
			out = append(out, name)
		}
	}
	return out
}

func (l *Limiter) breakers(now time.Time) map[string]ownership.BreakerState {
	return l.router.Breakers(now)
}

func (l *Limiter) deadlines() map[string]time.Duration { return l.router.Deadlines() }
