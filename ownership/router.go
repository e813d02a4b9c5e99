package ownership

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
)

// Reasons a Router decides locally a check for a key it does not own, as
// passed to Observer.Fallback. They are stable: use them as metric labels.
const (
	// FallbackTimeout: the owner did not answer within the deadline.
	FallbackTimeout = "timeout"
	// FallbackError: the call to the owner failed.
	FallbackError = "error"
	// FallbackBreakerOpen: the owner failed repeatedly and is skipped for
	// a while.
	FallbackBreakerOpen = "breaker_open"
	// FallbackNoPeer: the PeerSource does not know the owner (yet).
	FallbackNoPeer = "no_peer"
	// FallbackCanceled: the caller's ctx ended before the owner answered.
	FallbackCanceled = "canceled"
	// FallbackClosed: the Router is closed, or the owner was forgotten
	// while the check was in flight.
	FallbackClosed = "closed"
)

// How a Router decided a check, as CheckPath returns it: an index into
// Paths, whose names are stable metric labels.
const (
	// PathLocal ("local"): this node owns the key and counted it.
	PathLocal = iota
	// PathLease ("lease"): admitted from a lease this node holds, without
	// asking the owner.
	PathLease
	// PathForwarded ("forwarded"): the owner answered a check forwarded to
	// it.
	PathForwarded
	// PathCached ("cached"): refused from the owner's last answer,
	// remembered in the over-limit cache, without asking it.
	PathCached
	// PathFallback ("fallback"): decided locally against a share of the
	// limit because the owner could not be reached; Observer.Fallback
	// says why.
	PathFallback
)

// Paths returns the names of the paths CheckPath reports, by index: local,
// lease, forwarded, cached, fallback.
func (r *Router) Paths() []string {
	return []string{"local", "lease", "forwarded", "cached", "fallback"}
}

// warnEvery is the least time between two Warn logs about one peer, so a
// dead peer does not flood the log.
const warnEvery = time.Second

// Observer receives events for metrics. The Router calls it from request
// goroutines, once per event; its methods must be safe for concurrent use
// and must not block.
type Observer interface {
	// Forwarded reports a check sent to peer, how long it took until the
	// Router had an answer or gave up, and the error, if any.
	Forwarded(peer string, d time.Duration, err error)
	// Fallback reports a check for a key this node does not own that was
	// decided locally, and why: one of the Fallback… constants.
	Fallback(reason string)
	// OverLimitCacheHit reports a check refused from the over-limit cache,
	// without asking the owner.
	OverLimitCacheHit()
	// LeaseDecision reports a check admitted from a lease, without asking
	// the owner.
	LeaseDecision()
	// LeaseGranted reports a lease, or a renewal of one (renewal true),
	// granted to this node for hits hits.
	LeaseGranted(hits int, renewal bool)
	// LeaseEnded reports a lease that ended, why (one of the Lease…
	// constants), and the hits it left unused, given back to the owner.
	LeaseEnded(why string, unused int)
}

// Why leases end, as passed to Observer.LeaseEnded. They are stable: use
// them as metric labels.
const (
	// LeaseExpired: its time ran out with hits left.
	LeaseExpired = "expired"
	// LeaseRevoked: the limit in force changed (a new health state, a
	// reload, this side's share of a partition).
	LeaseRevoked = "revoked"
	// LeaseStopped: the node is stopping.
	LeaseStopped = "stopped"
	// LeaseMoved: the key is now this node's own.
	LeaseMoved = "moved"
	// LeaseNoRoom: the node holds MaxLeases leases already.
	LeaseNoRoom = "no_room"
)

// RouterConfig configures a Router. Ring, Local, Fallback and Peers are
// required; other zero values mean the defaults.
type RouterConfig struct {
	// Self is this node's member name in Ring.
	Self string
	// Ring maps keys to owners. Required.
	Ring *Ring
	// Local counts the keys this node owns, for itself and for the checks
	// other nodes forward to it. Required.
	Local *bucket.Store
	// Fallback counts checks decided locally because their owner could not
	// be reached. It is kept apart from Local so these local-only counts
	// never mix with the counts this node is authoritative for. Required;
	// use the same Window as Local.
	Fallback *bucket.Store
	// Imports, if not nil, holds the keys this node has just taken over
	// from a live member to their share until the member's hand-off lands
	// (see Imports).
	Imports *Imports
	// Owed, if not nil, takes every hit a local decision admits, until the
	// Keeper hands it to the key's owner (KeeperConfig.Owed): the hits a
	// node admits on its own count against the key wherever it is counted.
	// Use the same Window as Local.
	Owed *bucket.Store
	// Peers looks up the Peer for an owner's name. Required.
	Peers PeerSource
	// ForwardTimeout, if positive, is a fixed bound on how long a check
	// waits for its owner, queueing included, before it is decided
	// locally. Zero (the default) adapts the bound to each owner's recent
	// round trips: rttFactor times their p99, within ForwardTimeoutMin and
	// ForwardTimeoutMax, so that a busy host does not fall back needlessly
	// and a slow one is still given up on.
	ForwardTimeout time.Duration
	// ForwardTimeoutMin and ForwardTimeoutMax bound the adaptive deadline.
	// Defaults 1ms and 4ms; the adaptive deadline starts at the maximum.
	ForwardTimeoutMin, ForwardTimeoutMax time.Duration
	// Batch configures the Batcher made for each peer. Its Timeout, the
	// deadline of one batch RPC, defaults to the longest a check may wait:
	// ForwardTimeout if set, else ForwardTimeoutMax.
	Batch BatchConfig
	// Breaker configures the Breaker made for each peer. A breaker counts
	// failed batches (calls to the peer), not the checks waiting on them,
	// so one slow call with many checks queued behind it is one failure.
	Breaker BreakerConfig
	// Clock tells the breakers the time, both when a check asks one and
	// when a batch's outcome (which comes without a check's now) reaches
	// it, so a breaker sees one clock. Default time.Now.
	Clock func() time.Time
	// OverLimitCacheSize bounds how many keys' last answers from their
	// owners are remembered: refusals, answered here until they end, and
	// what was left, which bounds a local decision while the owner cannot
	// be reached. Default 100,000; negative turns the cache off.
	OverLimitCacheSize int
	// LeaseTTL is how long the leases this node asks for last (the owner
	// decides; this sizes what is asked for and when to renew). Default
	// DefaultLeaseTTL; negative asks for none, so every check for a key
	// this node does not own goes to the owner.
	LeaseTTL time.Duration
	// MaxLeases bounds the leases held at once. Default DefaultMaxLeases.
	MaxLeases int
	// Logger receives fallbacks and breaker trips at Warn (at most one per
	// peer per second) and per-check detail at Debug. Keys appear only as
	// a short hash (key_hash). Nil discards.
	Logger *slog.Logger
	// Observer receives events for metrics. Nil means none.
	Observer Observer
}

// Router decides checks: for a key this node owns it counts locally, and
// for any other key it asks the owner through a per-peer Batcher, falling
// back to a local share of the limit when the owner cannot answer in time.
// It has the method the api package's Checker wants.
//
// A Router is safe for concurrent use. It keeps one Batcher (with its
// goroutine) and one Breaker per peer, made when first needed and dropped
// by Forget or Close.
type Router struct {
	self           string
	ring           *Ring
	local          *bucket.Store
	fallback       *bucket.Store
	owed           *bucket.Store // may be nil
	imports        *Imports      // may be nil
	peers          PeerSource
	forwardTimeout time.Duration // fixed; 0: adaptive
	forwardMin     time.Duration
	forwardMax     time.Duration
	batch          BatchConfig
	breaker        BreakerConfig
	clock          func() time.Time
	log            *slog.Logger
	obs            Observer
	answers        *answers
	noPeerWarn     warnGate
	leases         *leases // nil: leases are off
	leaseTTL       time.Duration

	// givesMu guards gives, the unused hits of ended leases not yet given
	// back; giveNow wakes Run to give them back at once.
	givesMu sync.Mutex
	gives   []giveBack
	giveNow chan struct{}
	// returning counts the give-backs queued and not yet given back.
	returning atomic.Int64

	// share is this side's share of the cluster: the alive members (upper
	// 32 bits) and the members known (lower 32); 0 means full limits.
	share atomic.Uint64

	// contacts is when each member last answered; pings waits for the
	// pings Run sends.
	contacts *contacts
	pings    sync.WaitGroup

	// renewals carries the leases due for renewal from the request path
	// to renewLoop, which sends each in a goroutine of renewing; stop
	// ends the loop (Close).
	renewals  chan renewal
	renewing  sync.WaitGroup
	stop      chan struct{}
	closeOnce sync.Once

	// mu guards links, forgets and closed.
	mu    sync.RWMutex
	links map[string]*link
	// forgets counts calls to Forget: a peer looked up while it moved on
	// may be a Client already released, so link looks it up again.
	forgets uint64
	closed  bool
}

// link is what the Router keeps for one peer.
type link struct {
	batcher *Batcher
	breaker *Breaker
	rtt     *rtt // nil with a fixed deadline
	warn    warnGate
}

// NewRouter returns a Router. It panics if Ring, Local, Fallback or Peers
// is nil, which is a programming error.
func NewRouter(cfg RouterConfig) *Router {
	switch {
	case cfg.Ring == nil:
		panic("ownership: RouterConfig.Ring is nil")
	case cfg.Local == nil:
		panic("ownership: RouterConfig.Local is nil")
	case cfg.Fallback == nil:
		panic("ownership: RouterConfig.Fallback is nil")
	case cfg.Peers == nil:
		panic("ownership: RouterConfig.Peers is nil")
	}
	if cfg.ForwardTimeoutMin <= 0 {
		cfg.ForwardTimeoutMin = DefaultForwardTimeoutMin
	}
	if cfg.ForwardTimeoutMax <= 0 {
		cfg.ForwardTimeoutMax = DefaultForwardTimeoutMax
	}
	cfg.ForwardTimeoutMax = max(cfg.ForwardTimeoutMax, cfg.ForwardTimeoutMin)
	if cfg.Batch.Timeout <= 0 {
		// The RPC may take as long as the caller is willing to wait.
		cfg.Batch.Timeout = cfg.ForwardTimeoutMax
		if cfg.ForwardTimeout > 0 {
			cfg.Batch.Timeout = cfg.ForwardTimeout
		}
	}
	if cfg.OverLimitCacheSize == 0 {
		cfg.OverLimitCacheSize = DefaultOverLimitCacheSize
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.MaxLeases <= 0 {
		cfg.MaxLeases = DefaultMaxLeases
	}
	var ls *leases
	if cfg.LeaseTTL > 0 {
		ls = newLeases(cfg.MaxLeases)
	}
	r := &Router{
		self:           cfg.Self,
		ring:           cfg.Ring,
		local:          cfg.Local,
		fallback:       cfg.Fallback,
		owed:           cfg.Owed,
		imports:        cfg.Imports,
		peers:          cfg.Peers,
		forwardTimeout: max(cfg.ForwardTimeout, 0),
		forwardMin:     cfg.ForwardTimeoutMin,
		forwardMax:     cfg.ForwardTimeoutMax,
		batch:          cfg.Batch,
		breaker:        cfg.Breaker,
		clock:          cfg.Clock,
		log:            cfg.Logger,
		obs:            cfg.Observer,
		answers:        newAnswers(cfg.OverLimitCacheSize, cfg.Local.Window()),
		leases:         ls,
		leaseTTL:       cfg.LeaseTTL,
		giveNow:        make(chan struct{}, 1),
		links:          make(map[string]*link),
		contacts:       newContacts(),
		renewals:       make(chan renewal, renewQueue),
		stop:           make(chan struct{}),
	}
	r.contacts.track(cfg.Ring.Members(), cfg.Self, cfg.Clock())
	r.renewing.Go(r.renewLoop)
	return r
}

// Check decides one hit for key against limit at now. It never fails: if
// the owner cannot answer within ForwardTimeout (or ctx ends first), or
// its breaker is open, Check decides locally against a share of the limit
// (ceil(limit / members)), counted apart from owned keys.
//
// key must pass config.CheckKey and limit must be at least 1, as the
// middleware guarantees: the owner refuses anything else, and with it the
// whole batch the check travels in.
func (r *Router) Check(ctx context.Context, now time.Time, key string, limit int) bucket.Decision {
	d, _ := r.CheckPath(ctx, now, key, limit)
	return d
}

// CheckPath is Check, and also returns how it decided: one of the Path…
// constants.
func (r *Router) CheckPath(ctx context.Context, now time.Time, key string, limit int) (bucket.Decision, int) {
	limit = r.shareOf(limit)
	owner, ok := r.ring.Owner(key)
	if !ok || owner == r.self {
		return r.local.Take(now, key, 1, r.imports.Limit(now, key, limit)), PathLocal
	}
	var held *lease // a lease this node holds on key, spent or not
	if r.leases != nil {
		if held = r.leases.get(key); held != nil {
			if d, ok := r.fromLease(now, key, held, limit, owner); ok {
				return d, PathLease
			}
		}
	}
	if d, ok := r.answers.get(key, limit, now); ok {
		r.obs.OverLimitCacheHit()
		return d, PathCached
	}
	l, reason := r.link(owner)
	if l == nil {
		return r.decideLocally(now, key, limit, owner, reason, nil, nil, held), PathFallback
	}
	if !l.breaker.Allow(r.clock()) {
		return r.decideLocally(now, key, limit, owner, FallbackBreakerOpen, nil, &l.warn, held), PathFallback
	}

	want, renewing := 0, uint64(0)
	if r.leases != nil {
		// The lease is dry, ended or missing: this check asks for one,
		// unless another check or a renewal already does.
		if ls, ask := r.leases.asking(key, limit); ask {
			want, renewing = ls.want(now.UnixNano(), r.leaseTTL), ls.renewalOf(limit)
			defer ls.renewing.Store(false)
		}
	}
	timeout := r.timeout(l)
	start := time.Now() // for the latency metric and the deadline
	fctx, cancel := context.WithDeadline(ctx, start.Add(timeout))
	res, err := l.batcher.Check(fctx, Item{Key: key, Hits: 1, Limit: limit, Window: r.local.Window(), Want: want, LeaseID: renewing,
		Deadline: start.Add(timeout)})
	cancel()
	took := time.Since(start)
	r.obs.Forwarded(owner, took, err)
	if l.rtt != nil && (err == nil || errors.Is(err, context.DeadlineExceeded)) {
		l.rtt.record(took)
		if err != nil && ctx.Err() == nil {
			l.rtt.backOff(timeout)
		}
	}
	if err == nil {
		d := res.Decision
		if res.Granted > 0 {
			r.granted(key, limit, res, now, false) // keeps what the owner had left; now was before the send
			d.Remaining += res.Granted             // this node's to spend
		} else if r.worthKeeping(d, limit) {
			// Under the limit the owner applied, which may be less than
			// limit while it imports the key (Imports).
			r.answers.put(key, min(limit, max(d.Limit, 1)), d, now)
		}
		return d, PathForwarded
	}

	switch {
	case errors.Is(err, ErrClosed):
		reason = FallbackClosed
	case ctx.Err() != nil:
		// The caller gave up; that says nothing about the peer.
		reason = FallbackCanceled
	case errors.Is(err, context.DeadlineExceeded):
		reason = FallbackTimeout
	default:
		reason = FallbackError
	}
	// The breaker hears of failures from the batch itself (see report):
	// the checks waiting on one failed call are one failure, not many.
	return r.decideLocally(now, key, limit, owner, reason, err, &l.warn, held), PathFallback
}

// timeout returns how long a check forwarded over l may wait.
func (r *Router) timeout(l *link) time.Duration {
	if l.rtt == nil {
		return r.forwardTimeout
	}
	return l.rtt.timeout()
}

// Deadlines returns the deadline a check forwarded now to each peer the
// Router has forwarded to would get.
func (r *Router) Deadlines() map[string]time.Duration {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]time.Duration, len(r.links))
	for name, l := range r.links {
		out[name] = r.timeout(l)
	}
	return out
}

// rollDeadlines starts a new period of round trips for every peer's
// adaptive deadline. Run calls it every second.
func (r *Router) rollDeadlines() {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, l := range r.links {
		if l.rtt != nil {
			l.rtt.roll()
		}
	}
}

// localShare is the share of limit one of members decides on its own:
// ceil(limit / members).
func localShare(limit, members int) int { return (limit + members - 1) / members }

// partLeft is one member's part of left, what the owner last said a key had
// left, shared by the members other than the owner: ceil(left / (members -
// 1)). members must be at least 2.
func partLeft(left, members int) int { return (left + members - 2) / (members - 1) }

// worthKeeping reports whether the owner's answer d under limit is worth
// keeping in the answers cache: a refusal, which answers the key's checks
// until it lapses, or an answer that leaves less than a local decision
// would spend, which holds one to its part of what is left (see
// decideLocally). Any other answer would change nothing, so it costs no
// write and takes no room from refusals. (An older answer that left less
// may then stay until its window ends; a local decision is only the more
// careful for it.)
func (r *Router) worthKeeping(d bucket.Decision, limit int) bool {
	if !d.Allowed {
		return true
	}
	members := r.ring.Len()
	return members > 1 && partLeft(d.Remaining, members) < localShare(limit, members)
}

// decideLocally counts key in the fallback store against this node's share
// of limit and reports why. It logs at Warn, at most once per warnEvery
// through gate (nil: the Router's gate for checks without a peer), unless
// the reason is not the peer's fault; everything else goes to Debug. ls, if
// not nil, is the lease this node holds on key, spent: what it knows of the
// key bounds the decision further.
func (r *Router) decideLocally(now time.Time, key string, limit int, owner, reason string, err error, gate *warnGate, ls *lease) bucket.Decision {
	members := max(1, r.ring.Len())
	share := localShare(limit, members)
	budget, until := share, time.Time{}
	if left, end, ok := r.answers.remaining(key, limit, now); ok && members > 1 {
		// The owner's last answer said how much the key had left: the
		// other members, which may all be deciding locally now, share that
		// rather than each taking a share of the whole limit. The last
		// hits of a window, those the owner grants no lease on, are the
		// owner's alone to decide: locally, none.
		budget, until = min(share, partLeft(left, members)), end
		if left < leaseParts*members {
			budget = 0
		}
	}
	if ls != nil && !ls.pending() && ls.limit == limit && members > 1 {
		// The node spent a lease on the key and cannot renew it: it
		// admits its part of what the owner had left beyond every grant
		// at the last one, as with any answer of the owner's.
		rest := int(ls.rest.Load())
		budget = min(budget, partLeft(rest, members))
		if rest < leaseParts*members {
			budget = 0
		}
		until = ls.reset
	}
	// The decision's Limit and Remaining are the budget this node applies
	// and what is left of it: the truth about this answer, not the limit's.
	d := r.fallback.Take(now, key, 1, budget)
	if d.Allowed && r.owed != nil {
		// Owed to the owner's count, in the frame of the window it was
		// admitted in.
		r.owed.Add(now, bucket.Count{Key: key, Start: d.ResetAt.Add(-r.fallback.Window()), Current: 1})
	}
	if !d.Allowed {
		// Refused without the owner: when it lifts depends on the owner,
		// which is asked again once its breaker lets a call through (or
		// at the next check), and whose own count frees room at the end
		// of its window, if that is sooner than this node's count does.
		if !until.IsZero() && until.Before(d.RetryAt) {
			d.RetryAt = until
		}
		if again := now.Add(r.breakerCooldown()); again.Before(d.RetryAt) {
			d.RetryAt = again
		}
	}
	r.obs.Fallback(reason)

	warn := reason != FallbackCanceled && reason != FallbackClosed
	var suppressed int64
	if warn {
		if gate == nil {
			gate = &r.noPeerWarn
		}
		warn, suppressed = gate.allow(now)
	}
	level := slog.LevelDebug
	if warn {
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !r.log.Enabled(ctx, level) {
		return d
	}
	r.log.LogAttrs(ctx, level, "owner unreachable, deciding locally",
		slog.String("peer", owner),
		slog.String("reason", reason),
		slog.String("key_hash", config.KeyHash(key)),
		slog.Int("limit", limit),
		slog.Int("local_limit", share),
		slog.Int64("suppressed", suppressed),
		slog.Any("error", err))
	return d
}

// link returns the link to the peer called name, making it if needed, or
// nil and the reason there is none.
//
// The PeerSource is asked outside the lock, but a Forget may run between
// the answer and the lock (the member's address changed, and the Client
// the answer holds is released): then the lookup is made again under the
// lock, so that no link is ever made on a Client released before it.
func (r *Router) link(name string) (*link, string) {
	r.mu.RLock()
	l, closed, gen := r.links[name], r.closed, r.forgets
	r.mu.RUnlock()
	switch {
	case l != nil:
		return l, ""
	case closed:
		return nil, FallbackClosed
	}
	p, ok := r.peers.Peer(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, FallbackClosed
	}
	if l = r.links[name]; l != nil {
		return l, ""
	}
	if r.forgets != gen {
		p, ok = r.peers.Peer(name) // PeerSource does no I/O
	}
	if !ok || p == nil {
		return nil, FallbackNoPeer
	}
	l = &link{breaker: NewBreaker(r.breaker)}
	if r.forwardTimeout == 0 {
		l.rtt = newRTT(r.forwardMin, r.forwardMax)
	}
	cfg := r.batch
	cfg.Report = func(err error) { r.report(name, l, err) }
	cfg.Unclaimed = func(it Item, res Result) { r.unclaimed(it, res, cfg.Timeout) }
	l.batcher = NewBatcher(p, cfg)
	r.links[name] = l
	return l, ""
}

// unclaimed takes the answer res to item it, which came after its check
// gave up (the call's deadline was timeout) and counted something at the
// owner. A lease is counted there all the same: keep it (the check was sent
// no earlier than timeout ago). Hits were decided here meanwhile; if this
// node admitted one, it is owed to the owner's count, where it is now
// counted already, so it is owed no more.
func (r *Router) unclaimed(it Item, res Result, timeout time.Duration) {
	now := r.clock()
	if it.Hits > 0 && res.Allowed && r.owed != nil {
		r.owed.Give(now, it.Key, now, it.Hits)
	}
	if res.Granted > 0 && r.leases != nil {
		r.granted(it.Key, it.Limit, res, now.Add(-timeout), it.Hits == 0)
	}
}

// report feeds the outcome of one batch sent to the peer called name to
// its breaker. A batch cut short by Close says nothing about the peer.
func (r *Router) report(name string, l *link, err error) {
	switch {
	case err == nil:
		l.breaker.Success()
		r.contacts.heard(name, r.clock())
	case errors.Is(err, ErrClosed):
	case l.breaker.Failure(r.clock()):
		r.log.Warn("peer failing, skipping it for a while",
			slog.String("peer", name),
			slog.String("cooldown", r.breakerCooldown().String()),
			slog.Any("error", err))
	}
}

// Forget drops what the Router keeps for the peer called name: its Batcher
// is closed (checks in flight to it are decided locally) and its Breaker
// forgotten. Call it when the peer leaves the cluster or its address
// changes; the next check for a key it owns looks it up afresh.
func (r *Router) Forget(name string) {
	r.mu.Lock()
	l := r.links[name]
	delete(r.links, name)
	r.forgets++
	r.mu.Unlock()
	if l != nil {
		l.batcher.Close()
	}
}

// SetShare tells the Router what part of the cluster this node's side of
// it holds: alive members out of known ones. While alive is not a strict
// majority of known, every limit is cut to ceil(limit × alive / known), so
// that the sides of a partition together admit the limit plus the
// minority's share (1.33 limits for a 2 + 1 split of 3), not one per
// side; with a majority, or known ≤ alive, limits are whole. Call it when
// membership changes and as failed members age out of known.
func (r *Router) SetShare(alive, known int) {
	if alive <= 0 || known <= alive || 2*alive > known {
		r.share.Store(0)
		return
	}
	r.share.Store(uint64(alive)<<32 | uint64(uint32(known)))
}

// shareOf returns limit cut to this side's share, as SetShare says.
func (r *Router) shareOf(limit int) int {
	s := r.share.Load()
	if s == 0 {
		return limit
	}
	alive, known := int(s>>32), int(uint32(s))
	return (limit*alive + known - 1) / known
}

// Breakers returns the state at now of the breaker of every peer the
// Router has forwarded to since it was made or the peer was forgotten.
func (r *Router) Breakers(now time.Time) map[string]BreakerState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]BreakerState, len(r.links))
	for name, l := range r.links {
		out[name] = l.breaker.State(now)
	}
	return out
}

// Unreachable returns how many members of the ring the Router cannot reach
// at now: those whose breaker is not closed (open, or half-open and not yet
// proven back). A cut network shows here within a few failed calls, long
// before failure detection drops the members.
func (r *Router) Unreachable(now time.Time) int {
	members := r.ring.Members()
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, m := range members {
		if l := r.links[m]; l != nil && l.breaker.State(now) != BreakerClosed {
			n++
		}
	}
	return n
}

// Reachable returns how many members of the ring this node counts as
// reachable at now, itself included: those whose breaker is closed and who
// answered a call or a ping (or joined the ring) within FenceAfter. A node
// cut off from the others sees this fall within FenceAfter of the cut,
// whether or not it forwards anything, long before failure detection drops
// its peers. A Peer that is not a Pinger counts while its breaker is
// closed, as it cannot be asked.
func (r *Router) Reachable(now time.Time) int {
	members := r.ring.Members()
	r.contacts.track(members, r.self, now)
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 1
	for _, m := range members {
		if m == r.self {
			continue
		}
		if l := r.links[m]; l != nil && l.breaker.State(now) != BreakerClosed {
			continue
		}
		if r.contacts.fresh(m, now, FenceAfter) || !r.pingable(m) {
			n++
		}
	}
	return n
}

// pingable reports whether the Peer of member can be pinged.
func (r *Router) pingable(member string) bool {
	p, ok := r.peers.Peer(member)
	_, can := p.(Pinger)
	return ok && can
}

// recordRTT adds a round trip of d to member's adaptive deadline, if it
// has one.
func (r *Router) recordRTT(member string, d time.Duration) {
	r.mu.RLock()
	l := r.links[member]
	r.mu.RUnlock()
	if l != nil && l.rtt != nil {
		l.rtt.record(d)
	}
}

// Heard records that member answered a call at now: the Keeper reports its
// backups and hand-offs here, so that they count as contact too.
func (r *Router) Heard(member string, now time.Time) { r.contacts.heard(member, now) }

// ping pings, each in its own goroutine (r.pings), the members not heard
// from within PingEvery before now and not being pinged already.
func (r *Router) ping(ctx context.Context, now time.Time) {
	r.contacts.track(r.ring.Members(), r.self, now)
	for _, m := range r.contacts.toPing(now, PingEvery) {
		p, _ := r.peers.Peer(m)
		pinger, ok := p.(Pinger)
		if !ok {
			r.contacts.pinged(m, now, false)
			continue
		}
		r.pings.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			start := time.Now()
			err := pinger.Ping(pctx)
			took := time.Since(start)
			cancel()
			r.contacts.pinged(m, r.clock(), err == nil)
			if err == nil {
				r.recordRTT(m, took)
			}
		})
	}
}

// ClearOverLimit forgets every owner's answer remembered, so the next check
// for each key asks its owner, and revokes every lease (RevokeLeases). Call
// it when the limits in force change (the health state moved), since an
// answer or a lease under one limit may not hold under another.
func (r *Router) ClearOverLimit() {
	r.answers.clear()
	r.RevokeLeases()
}

// Close stops every Batcher and the lease renewals, and waits for their
// goroutines. Checks made
// afterwards still get an answer: owned keys are counted as before, and
// others are decided locally.
func (r *Router) Close() {
	r.closeOnce.Do(func() { close(r.stop) })
	r.mu.Lock()
	links := r.links
	r.links = make(map[string]*link)
	r.closed = true
	r.mu.Unlock()
	for _, l := range links {
		l.batcher.Close()
	}
	r.renewing.Wait()
}

// breakerCooldown returns the cooldown the Breakers use.
func (r *Router) breakerCooldown() time.Duration {
	return r.breaker.withDefaults().Cooldown
}

// warnGate lets one warning through per warnEvery and counts the rest. It
// is safe for concurrent use; the zero value lets the first one through.
type warnGate struct {
	last       atomic.Int64 // Unix nanoseconds of the last warning let through; 0: none
	suppressed atomic.Int64 // warnings held back since then
}

// allow reports whether a warning may be logged at now and, if so, how many
// were held back since the last one.
func (g *warnGate) allow(now time.Time) (bool, int64) {
	n := now.UnixNano()
	last := g.last.Load()
	if (last != 0 && n-last < int64(warnEvery)) || !g.last.CompareAndSwap(last, n) {
		g.suppressed.Add(1)
		return false, 0
	}
	return true, g.suppressed.Swap(0)
}

// nopObserver is the Observer used when none is given.
type nopObserver struct{}

func (nopObserver) Forwarded(string, time.Duration, error) {}
func (nopObserver) Fallback(string)                        {}
func (nopObserver) OverLimitCacheHit()                     {}
func (nopObserver) LeaseDecision()                         {}
func (nopObserver) LeaseGranted(int, bool)                 {}
func (nopObserver) LeaseEnded(string, int)                 {}
