package tierlimit

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/handoff"
	"github.com/tierlimit/tierlimit/health"
	"github.com/tierlimit/tierlimit/ownership"
)

// The middleware times decisions by the path each took only through a
// PathChecker.
var (
	_ api.PathChecker = (*ownership.Router)(nil)
	_ api.PathChecker = api.Local{}
)

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
	queueWait    *prometheus.HistogramVec // nil without Config.QueueWait
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
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_requests_in_flight",
			Help: "Requests the middleware admitted whose handler has not returned: the work in flight behind this instance.",
		}, func() float64 { l, _ := src.Load(); return float64(l.InFlight) }),
	)
	if err == nil {
		err = m.registerAuto(src)
	}
	if err == nil && cfg.QueueWait > 0 {
		m.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tierlimit_queue_wait_seconds",
			Help:    "How long admitted requests that got one of -capacity's slots after waiting waited for it, by class: protected (tiers DEGRADED leaves alone, served first) and sheddable.",
			Buckets: queueWaitBuckets,
		}, []string{"class"})
		err = m.registerQueue(src)
	}
	if err == nil && cfg.Capacity > 0 {
		err = m.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_load_signal",
			Help: "This instance's load signal: requests in flight over -capacity, the jobs it runs at once (1 is full; above 1 the work queues).",
		}, func() float64 { l, _ := src.Load(); return l.Signal }))
	}
	return m, err
}

// registerQueue registers the series of the queue (Config.QueueWait).
func (m *metrics) registerQueue(src loadReader) error {
	waiting := func(class string, n func(api.QueueStats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "tierlimit_queue_waiting",
			Help:        "Admitted requests waiting for one of -capacity's slots, by class: protected (tiers DEGRADED leaves alone, served first) and sheddable.",
			ConstLabels: prometheus.Labels{"class": class},
		}, func() float64 { return float64(n(src.queueStats())) })
	}
	refused := func(reason string, n func(api.QueueStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "tierlimit_queue_refused_total",
			Help:        "Admitted requests refused with a 503 while they waited for a slot: timeout (waited -queue-wait), shed (sheddable, when the cluster went DEGRADED).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(n(src.queueStats())) })
	}
	return m.register(
		waiting("protected", func(s api.QueueStats) int { return s.Waiting }),
		waiting("sheddable", func(s api.QueueStats) int { return s.WaitingSheddable }),
		refused("timeout", func(s api.QueueStats) int64 { return s.TimedOut }),
		refused("shed", func(s api.QueueStats) int64 { return s.Shed }),
		m.queueWait,
	)
}

// queueWaitBuckets are the bounds of tierlimit_queue_wait_seconds, in
// seconds: from a job's tail (a few ms) to the longest -queue-wait worth
// having.
var queueWaitBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// queueWaited observes a wait in the queue that ended with a slot.
func (m *metrics) queueWaited(sheddable bool, d time.Duration) {
	class := "protected"
	if sheddable {
		class = "sheddable"
	}
	m.queueWait.WithLabelValues(class).Observe(d.Seconds())
}

// autoReader reads the automatic switch's state.
type autoReader interface {
	healthReader
	autoPilot() *autopilot
}

// registerAuto registers the series of the automatic switch.
func (m *metrics) registerAuto(src autoReader) error {
	a := src.autoPilot()
	view := func(f func(*api.ClusterLoad) float64) func() float64 {
		return func() float64 {
			if v := a.ClusterLoad(); v != nil {
				return f(v)
			}
			return 0
		}
	}
	switches := func(status health.Status) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "tierlimit_auto_switches_total",
			Help:        "Health writes this node made for the cluster's automatic switch, by the status written.",
			ConstLabels: prometheus.Labels{"status": status.String()},
		}, func() float64 { return float64(a.Switches(status)) })
	}
	return m.register(
		switches(health.Normal),
		switches(health.Degraded),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_load_demand",
			Help: "This node's demand: its load signal plus the work the requests DEGRADED refuses would bring (1 is full).",
		}, a.Demand),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_cluster_saturation",
			Help: "The cluster's saturation as this node sees it: the mean load signal of the members whose sample is fresh.",
		}, view(func(v *api.ClusterLoad) float64 { return v.Saturation })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_cluster_demand",
			Help: "The cluster's demand as this node sees it, which the automatic switch compares with its marks.",
		}, view(func(v *api.ClusterLoad) float64 { return v.Demand })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_cluster_load_members_stale",
			Help: "Members whose load sample is stale: unknown, left out of the cluster's saturation.",
		}, view(func(v *api.ClusterLoad) float64 { return float64(v.Unknown) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_cluster_load_members_fresh",
			Help: "Members whose load sample is fresh: those the cluster's saturation is the mean of.",
		}, view(func(v *api.ClusterLoad) float64 { return float64(v.Known) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_health_pinned",
			Help: "1 while a person's write pins the health state (manual mode), 0 while the automatic switch may move it.",
		}, func() float64 { return b2f(src.Health().Manual()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tierlimit_shed_demand_total",
			Help: "Requests refused in DEGRADED that NORMAL would admit, counted as demand (at most each key's share of burst - degraded per window).",
		}, func() float64 { return float64(a.shed.total.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tierlimit_load_signal_refused_total",
			Help: "Readings of the embedder's load signal that were not a number from 0 to 10, dropped.",
		}, func() float64 { return float64(a.refused.Load()) }),
	)
}

// b2f is 1 for true, 0 for false.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
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
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tierlimit_lease_hits_credited_total",
			Help: "Hits this node, as a key's owner, took back from the leases of members that failed or restarted: what each holder last said its lease had left.",
		}, func() float64 { return float64(src.leaseHitsCredited()) }),
		slotsHeld(src, "owned"),
		slotsHeld(src, "fallback"),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tierlimit_slots_freed_total",
			Help: "Concurrency slots this node, as a key's owner, gave back because the member that held them failed or restarted.",
		}, func() float64 { return float64(src.slotsFreed()) }),
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

// slotsHeld returns tierlimit_slots_held of one table, "owned" or
// "fallback", read from src when scraped.
func slotsHeld(src memberSource, table string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "tierlimit_slots_held",
		Help:        "Concurrency slots held now in this node's tables: of the keys it owns (table owned: its own jobs', other members' and their slot leases), or taken on its own while an owner could not be reached (table fallback).",
		ConstLabels: prometheus.Labels{"table": table},
	}, func() float64 {
		owned, fallback := src.slotsHeld()
		if table == "owned" {
			return float64(owned)
		}
		return float64(fallback)
	})
}
