package tierlimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/cluster"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/handoff"
	"github.com/tierlimit/tierlimit/health"
	"github.com/tierlimit/tierlimit/ownership"
	"github.com/tierlimit/tierlimit/peer"
	"github.com/tierlimit/tierlimit/ring"
)

// The types a user of the Limiter meets, from the packages that define them.
type (
	// Tier is one tier's limits per window: Burst in NORMAL, Degraded in
	// DEGRADED, Limit the SLA between them.
	Tier = config.Tier
	// State is the system state in force: its Status and the write that
	// set it.
	State = health.State
	// Status is NORMAL or DEGRADED.
	Status = health.Status
	// Member is one cluster member as this node sees it.
	Member = api.Member
)

// The two statuses.
const (
	Normal   = health.Normal
	Degraded = health.Degraded
)

// Checks that the pieces fit where they meet.
var (
	_ api.Checker        = (*ownership.Router)(nil)
	_ api.Spender        = (*ownership.Router)(nil)
	_ api.Checker        = api.Local{}
	_ KeyStore           = (*config.File)(nil)
	_ forward.PeerSource = (*peer.Book)(nil)
)

// leaveTimeout bounds how long Close waits for a peer to confirm that this
// node leaves.
const leaveTimeout = 2 * time.Second

// Limiter is the rate limiter of one API instance: the middleware, the key
// store, the counts and the health state, and in a cluster this node's
// membership, its share of the keys and the peers that own the others. It
// is safe for concurrent use. Make one with New and stop it with Close.
type Limiter struct {
	cfg    Config
	log    *slog.Logger
	keys   KeyStore
	file   *config.File // the key store when it is TiersFile; else nil
	window time.Duration
	health *health.Holder
	store  *bucket.Store // counts of the keys this node owns (all of them, alone)
	slots  *bucket.Slots // the jobs running of keys whose tiers limit them; in a cluster, the keys this node owns

	inFlight atomic.Int64 // requests the Middleware admitted whose handler runs now
	queue    *api.Queue   // nil without Config.QueueWait
	auto     *autopilot   // the automatic switch's part on this node
	mw       *api.Limiter
	admin    http.Handler
	metrics  *metrics

	// In a cluster; nil on a single node.
	fallback  *bucket.Store // local-only counts while an owner is unreachable
	owed      *bucket.Store // the hits of those, until the Keeper sends them to the owners
	ring      *ring.Ring
	router    *ownership.Router
	owner     *ownership.Owner // the owner side of forwarded checks and leases
	imports   *ownership.Imports
	book      *peer.Book
	endpoint  *peer.Endpoint
	node      *cluster.Node
	ringMoved chan struct{}  // capacity 1: the ring changed, move counts
	pending   *memberReports // what memberlist reported, for applyMembers
	applyMu   sync.Mutex     // serialises applyMembers
	keeper    *handoff.Keeper
	quorumMu  sync.Mutex   // serialises updateQuorum
	alive     atomic.Int64 // members alive, this node included (Quorum)
	known     atomic.Int64 // members alive or failed less than QuorumGrace ago

	state *stateFile // Config.StateFile; nil if none
	// remembered are the gossip addresses of the members the state file
	// held at start, tried as peers.
	remembered []string

	// reloadMu serialises Reload.
	reloadMu sync.Mutex

	closing   atomic.Bool // set as Close (or kill) starts
	closeOnce sync.Once   // runs the stop once
	closeErr  error       // what the stop returned; read after closeOnce.Do

	stopBG context.CancelFunc // stops the background work (sweeping)
	bg     sync.WaitGroup
}

// New builds a Limiter from cfg and starts it: it loads the key store,
// and, with Config.GossipAddr, binds the gRPC and gossip ports and starts
// joining the seeds in the background (Ready reports when it has). It
// returns a *ConfigError for a field it cannot run with, and an error for a
// tiers file it cannot load or a port it cannot bind; whatever it started is
// stopped again.
func New(cfg Config) (*Limiter, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		cfg:       cfg,
		log:       cfg.Logger.With("node", cfg.NodeName),
		keys:      cfg.Keys,
		window:    cfg.Window,
		health:    health.NewHolder(cfg.NodeName),
		ringMoved: make(chan struct{}, 1),
		pending:   newMemberReports(),
	}
	if l.keys == nil {
		if l.file, err = config.Open(cfg.TiersFile); err != nil {
			return nil, err
		}
		l.keys = l.file
		if cfg.Window != 0 && cfg.Window != l.file.Window() {
			return nil, &ConfigError{Field: "Window", Reason: fmt.Sprintf("%v differs from the window_seconds of %s (%v)",
				cfg.Window, cfg.TiersFile, l.file.Window())}
		}
		l.window = l.file.Window()
	}
	if l.window == 0 {
		l.window = DefaultWindow
	}
	l.store = bucket.New(bucket.Config{Window: l.window, MaxKeys: cfg.MaxKeys, TrackChanges: cfg.clustered()})
	if err := l.openState(); err != nil {
		return nil, err
	}
	bgCtx, stop := context.WithCancel(context.Background())
	l.stopBG = stop
	started := false
	defer func() {
		if !started {
			l.kill()
		}
	}()
	l.auto = newAutopilot(l)
	if l.metrics, err = newMetrics(cfg, l); err != nil {
		return nil, err
	}

	l.slots = bucket.NewSlots()
	local := api.Local{Store: l.store, Slots: l.slots}
	checker, spender := api.Checker(local), api.Spender(local)
	if cfg.clustered() {
		if err := l.startCluster(); err != nil {
			return nil, err
		}
		checker, spender = l.router, l.router
		if err := l.metrics.registerCluster(l); err != nil {
			return nil, err
		}
	}
	if cfg.QueueWait > 0 {
		l.queue = api.NewQueue(cfg.Capacity, cfg.QueueWait)
		if l.metrics != nil {
			l.queue.ObserveWaits(l.metrics.queueWaited)
		}
		// On the switch to DEGRADED only: work admitted in NORMAL does not
		// run ahead of the paid tiers', while a free request admitted in
		// DEGRADED (within its DEGRADED limit) keeps its place when a later
		// write keeps DEGRADED (a pin, a hand-back). The calls come one at
		// a time, so was needs no lock.
		was := l.health.Status()
		l.health.OnChange(func(s health.State) {
			if s.Status == health.Degraded && was != health.Degraded {
				l.queue.Shed()
			}
			was = s.Status
		})
	}
	l.mw = api.NewLimiter(api.Config{
		Keys:    l.keys,
		Checker: checker,
		Health:  l.health,
		Window:  l.window,
		Metrics: l.metrics.decisionMetrics(),
		Logger:  l.log,

		Spender:        spender,
		CostUnit:       l.costUnit(),
		EstimateCost:   cfg.EstimateCost,
		MaxJobDuration: cfg.MaxJobDuration,
		InFlight:       &l.inFlight,
		Admitted:       &l.auto.admitted,
		Shed:           l.countShed,
		Queue:          l.queue,
	})
	l.admin = api.NewAdmin(api.AdminConfig{
		Token:   cfg.AdminToken,
		Health:  l.health,
		Set:     l.setHealth,
		Node:    cfg.NodeName,
		Members: l.Members,
		Load:    l.Load,
		Logger:  l.log,

		ClusterLoad: l.auto.ClusterLoad,
		Report:      l.auto.Report,
	})
	if cfg.AdminToken == "" {
		l.log.Warn("no admin token: the admin endpoints refuse every request")
	}
	l.bg.Go(func() { l.sweep(bgCtx) })
	l.bg.Go(func() { l.auto.run(bgCtx) })
	if l.node != nil {
		l.bg.Go(func() { l.applyChanges(bgCtx) })
		l.bg.Go(func() { l.watchQuorum(bgCtx) })
		l.bg.Go(func() { l.followRing(bgCtx) })
		l.bg.Go(func() { l.keeper.Run(bgCtx) })
		l.bg.Go(func() { l.router.Run(bgCtx) })
	}
	if l.state != nil {
		l.bg.Go(func() {
			l.state.run(bgCtx, func(err error) { l.log.Error("health state not saved", "err", err) })
		})
	}
	started = true
	l.log.Info("limiter started", l.startAttrs()...)
	return l, nil
}

// openState reads Config.StateFile, if set, and puts the state it holds in
// force, so that a node restarted in DEGRADED comes back DEGRADED.
func (l *Limiter) openState() error {
	if l.cfg.StateFile == "" {
		return nil
	}
	f, doc, err := openStateFile(l.cfg.StateFile)
	if err != nil {
		return &ConfigError{Field: "StateFile", Err: err}
	}
	f.maxOffset = l.cfg.MaxClockOffset
	l.state = f
	l.remembered = doc.Members
	s := doc.Health
	defer l.health.OnChange(f.later) // every state adopted from now on, from peers too
	if s.Version == 0 {
		return nil
	}
	if _, err := l.health.Merge(s, time.Now(), l.cfg.MaxClockOffset); err != nil {
		l.log.Warn("state file holds a state stamped in the future; starting NORMAL", "state_file", l.cfg.StateFile, "err", err)
		return nil
	}
	l.log.Info("health state restored", "state_file", l.cfg.StateFile, "status", s.Status.String(),
		"version", s.Version, "origin", s.Origin)
	return nil
}

// startAttrs describes the Limiter for its start log.
func (l *Limiter) startAttrs() []any {
	attrs := []any{"window", l.window.String()}
	if l.file != nil {
		t := l.file.Tiers()
		attrs = append(attrs, "config", l.file.Path(), "config_hash", t.Hash(),
			"tiers", len(t.Names()), "api_keys", t.KeyCount())
	}
	if l.node != nil {
		attrs = append(attrs, "gossip_addr", l.node.GossipAddr(), "grpc_addr", l.endpoint.Addr().String(),
			"seeds", l.cfg.Join, "forward_timeout", forwardTimeoutAttr(l.cfg))
	}
	return attrs
}

// Middleware wraps next so that every request is counted against its API
// key (the X-API-Key header) before next sees it: a request over its
// tier's limit in force gets 429 at once, and one without a known key 401,
// not counted, both with a JSON error body. Every counted response carries
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset, and a 429
// Retry-After. It works with any router.
//
// For a tier that limits cost or concurrency, a request is admitted only
// if every limit admits it (a refused one spends nothing), with its
// estimated cost reserved (Config.EstimateCost) and a slot taken; when
// next returns, the slot is given back and the cost settles against what
// next reported with ReportCost (nothing reported: the estimate stands;
// a 5xx: the reservation is given back).
func (l *Limiter) Middleware(next http.Handler) http.Handler { return l.mw.Middleware(next) }

// ReportCost tells the Middleware that admitted the request whose context
// is ctx what its work actually cost, in the tiers file's cost_unit, to
// settle against what was reserved when the handler returns; the last
// report counts. It reports whether the request had a reservation to
// settle (its tier limits cost or concurrency).
func ReportCost(ctx context.Context, cost int) bool { return api.ReportCost(ctx, cost) }

// costUnit returns the unit a cost counts in: the file's, or Config's.
func (l *Limiter) costUnit() string {
	if l.file != nil {
		return l.file.Tiers().CostUnit
	}
	if l.cfg.CostUnit != "" {
		return l.cfg.CostUnit
	}
	return "cost"
}

// AuthorizeHandler returns the forward-auth endpoint: for any method and
// any path under it, it counts the request's X-API-Key as Middleware does
// and answers 200 with the rate-limit headers and no body, or the 429 or
// 401 Middleware would write. Mount it where a proxy or a sidecar's client
// asks, as cmd/node does:
//
//	mux.Handle("/authorize", lim.AuthorizeHandler())
//	mux.Handle("/authorize/", lim.AuthorizeHandler()) // Envoy appends the original path
func (l *Limiter) AuthorizeHandler() http.Handler { return l.mw.Authorize() }

// Load returns this node's load signal: the requests in flight through the
// Middleware over Config.Capacity (1.0: the instance's GPUs are full;
// above it the work queues), and whether it has one (Capacity above 0).
func (l *Limiter) Load() (api.Load, bool) {
	n := l.inFlight.Load()
	if l.cfg.Capacity <= 0 {
		return api.Load{InFlight: n}, false
	}
	return api.Load{InFlight: n, Capacity: l.cfg.Capacity, Signal: float64(n) / float64(l.cfg.Capacity)}, true
}

// queueStats returns the queue's counts: zero without Config.QueueWait.
func (l *Limiter) queueStats() api.QueueStats {
	if l.queue == nil {
		return api.QueueStats{}
	}
	return l.queue.Stats()
}

// countShed counts a request refused in DEGRADED as demand (autopilot).
func (l *Limiter) countShed(key string, tier Tier, now time.Time) {
	members := int64(1)
	if l.node != nil {
		members = max(l.alive.Load(), 1)
	}
	l.auto.shed.count(key, tier, now, members)
}

// SettleHandler returns the settle call's endpoint (api.Limiter.Settle):
// POST with the request's X-API-Key, the Tierlimit-Reservation a 200 of
// AuthorizeHandler gave (to a request sent with Tierlimit-Settle: later),
// and the actual Tierlimit-Cost, or Tierlimit-Failed: true. cmd/node
// serves it at /system/settle.
func (l *Limiter) SettleHandler() http.Handler { return l.mw.Settle() }

// AdminHandler returns the handler of the admin endpoints, which routes on
// the last element of the path, so mount it under any prefix:
// mux.Handle("/system/", lim.AdminHandler()) serves
//
//	GET  /system/health   the health state in force
//	POST /system/health   {"status":"DEGRADED"} or {"status":"NORMAL"}, for the whole cluster
//	GET  /system/cluster  the members, their state and addresses
//
// Each request needs "Authorization: Bearer <Config.AdminToken>".
func (l *Limiter) AdminHandler() http.Handler { return l.admin }

// Ready returns nil when the Limiter should take traffic, or why not: it
// is closed; it has seeds and has not reached any of them yet; or it is
// alone, a minority, while it knows of two or more other members that
// failed less than Config.QuorumGrace ago, or, for Config.QuorumGrace
// after it started, that are in its state file (cut off from them, it
// would count every key on its own, so it applies its share of each limit
// meanwhile; after the grace it takes them for gone and is ready, the
// cluster being itself).
//
// A node alone with one other member known, such as the survivor of a
// 2-node cluster, is half of the cluster, not a minority, and is ready:
// a crash of its peer looks the same as a cut, and to refuse traffic would
// make the loss of either node a full outage behind a readiness-aware load
// balancer. Readiness only steers traffic; the share bounds what is
// admitted: it applies half of each limit for the grace, so that the two
// sides of a cut 2-node cluster, both ready, admit about one limit in all.
func (l *Limiter) Ready() error {
	switch {
	case l.closing.Load():
		return errors.New("limiter closed")
	case l.node != nil && l.node.Err() != nil:
		return l.node.Err()
	case l.node != nil && !l.node.Joined():
		return errors.New("cluster not joined yet: no seed reached")
	case l.node != nil && l.alive.Load() == 1 && l.known.Load() > 2:
		return fmt.Errorf("alone: the %d other members known within the last %v are unreachable",
			l.known.Load()-1, l.cfg.QuorumGrace)
	}
	return nil
}

// ReadyHandler answers a readiness probe: 200 {"status":"ready"} when
// Ready returns nil, else 503 with the reason in the JSON error body.
func (l *Limiter) ReadyHandler() http.Handler { return api.ReadyHandler(l.Ready) }

// Tier returns the tier of apiKey in the key store, and reports whether
// the key is known.
func (l *Limiter) Tier(apiKey string) (Tier, bool) { return l.keys.Lookup(apiKey) }

// Health returns the health state in force. It is one atomic load.
func (l *Limiter) Health() State { return l.health.Current() }

// SetHealth makes status the system state, for the whole cluster (gossip
// carries it to every member), as POST /system/health does, and returns
// the state now in force. It pins the state (manual mode): the automatic
// switch leaves it until ResumeAuto. It is a new write even if status is
// in force already, so that it wins over every earlier write, also one
// this node has not heard of yet. With Config.StateFile it returns once the
// state is saved, or the error that kept it from being saved (the state is
// in force all the same).
func (l *Limiter) SetHealth(status Status) (State, error) {
	s, _, err := l.setHealth(health.Write{Status: status, Pinned: true, Why: "SetHealth"}, time.Now())
	l.log.Info("health state set", "status", s.Status.String(), "version", s.Version)
	return s, err
}

// ResumeAuto hands the state back to the automatic switch, as a POST of
// {"mode":"auto"} does: the status in force stays until the cluster's load
// moves it.
func (l *Limiter) ResumeAuto() (State, error) {
	s, _, err := l.setHealth(health.Write{Status: l.health.Status(), Why: "ResumeAuto"}, time.Now())
	l.log.Info("health state handed to the automatic switch", "status", s.Status.String(), "version", s.Version)
	return s, err
}

// setHealth writes w at now, saves it if there is a state file, and
// reports whether the status changed.
func (l *Limiter) setHealth(w health.Write, now time.Time) (State, bool, error) {
	s, changed := l.health.Write(w, now)
	return l.saveHealth(s, changed)
}

// saveHealth saves s, the state this node just wrote, if there is a state
// file, and passes s and changed on with the error that kept it unsaved.
func (l *Limiter) saveHealth(s State, changed bool) (State, bool, error) {
	if l.state != nil {
		if err := l.state.save(s); err != nil {
			l.log.Error("health state set but not saved", "err", err)
			return s, changed, err
		}
	}
	return s, changed, nil
}

// Members returns the cluster as this node sees it, sorted by name: every
// member alive or recently gone, this node included (Self). A single node
// returns itself.
func (l *Limiter) Members() []Member {
	if l.node == nil {
		return []Member{{Name: l.cfg.NodeName, State: cluster.StateAlive, Self: true}}
	}
	ms := l.node.Members()
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{Name: m.Name, Addr: m.Addr, GRPCAddr: m.GRPCAddr, State: m.State, ConfigHash: m.ConfigHash, Leaving: m.Leaving, Self: m.Self}
	}
	return out
}

// Reload reads the key store again: with TiersFile, the file is validated
// whole and swapped in at once, so a request sees the old table or the new
// one. Counts are kept: a used-up key stays refused, a changed limit applies
// to the next request, a removed key gets 401 at once. A file that is not
// valid, or that changes window_seconds (counts are kept per window), is
// refused with an error naming the field, and the table in force stays.
// With Keys, Reload calls its Reload() error method if it has one.
//
// Each node reloads its own file; in a cluster, peers see the new config
// hash in /system/cluster and log a warning while files differ.
func (l *Limiter) Reload() error {
	l.reloadMu.Lock()
	defer l.reloadMu.Unlock()
	r, ok := l.keys.(interface{ Reload() error })
	if !ok {
		err := errors.New("tierlimit: reload: the key store has no Reload method")
		l.metrics.reloaded(err)
		return err
	}
	if err := r.Reload(); err != nil {
		l.metrics.reloaded(err)
		l.log.Error("reload refused; the config in force stays", "err", err)
		return fmt.Errorf("tierlimit: reload: %w", err)
	}
	l.metrics.reloaded(nil)
	if l.router != nil {
		// Limits may have changed: refusals remembered under the old ones
		// no longer hold.
		l.router.ClearOverLimit()
	}
	if l.file == nil {
		l.log.Info("key store reloaded")
		return nil
	}
	t := l.file.Tiers()
	l.log.Info("config reloaded", "config", l.file.Path(), "config_hash", t.Hash(),
		"tiers", len(t.Names()), "api_keys", t.KeyCount())
	if l.node != nil {
		if err := l.node.SetConfigHash(t.Hash(), leaveTimeout); err != nil {
			l.log.Warn("new config hash not confirmed by any peer yet; push/pull will carry it", "err", err)
		}
	}
	return nil
}

// sweep reclaims expired keys about twice a window.
func (l *Limiter) sweep(ctx context.Context) {
	t := time.NewTicker(max(l.window/2, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			removed := l.store.Sweep(now) + l.slots.Sweep(now) + l.auto.shed.keys.Sweep(now)
			if l.fallback != nil {
				removed += l.fallback.Sweep(now) + l.owed.Sweep(now) + l.router.SweepSlots(now)
			}
			if l.keeper != nil {
				removed += l.keeper.Sweep(now)
			}
			if removed > 0 {
				l.log.Debug("swept expired keys", "removed", removed)
			}
		}
	}
}

// forwardTimeoutAttr describes the forward deadline in force, for the log.
func forwardTimeoutAttr(cfg Config) string {
	if cfg.ForwardTimeout > 0 {
		return cfg.ForwardTimeout.String()
	}
	return "adaptive " + cfg.ForwardTimeoutMin.String() + "–" + cfg.ForwardTimeoutMax.String()
}
