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
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/internal/warn"
	"github.com/tierlimit/tierlimit/ring"
)

// RouterConfig configures a Router. Ring, Local, Fallback and Peers are
// required; other zero values mean the defaults.
type RouterConfig struct {
	// Self is this node's member name in Ring.
	Self string
	// Ring maps keys to owners. Required.
	Ring *ring.Ring
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
	// Slots holds the concurrency slots of the keys this node owns
	// (Owner.Slots), where the Router takes its own. Nil: a table of its
	// own.
	Slots *bucket.Slots
	// Holder names this node as the holder of the slots it takes in Slots
	// (HolderOf its name and boot id), so that they are given back if it
	// fails once they are handed over to another owner.
	Holder string
	// Peers looks up the forward.Peer for an owner's name. Required.
	Peers forward.PeerSource
	// ForwardTimeout, if positive, is a fixed bound on how long a check
	// waits for its owner, queueing included, before it is decided
	// locally. Zero (the default) adapts the bound to each owner's recent
	// round trips (a forward.Deadline): twice their p99, within
	// ForwardTimeoutMin and ForwardTimeoutMax, so that a busy host does not
	// fall back needlessly and a slow one is still given up on.
	ForwardTimeout time.Duration
	// ForwardTimeoutMin and ForwardTimeoutMax bound the adaptive deadline.
	// Defaults 1ms and 4ms; the adaptive deadline starts at the maximum.
	ForwardTimeoutMin, ForwardTimeoutMax time.Duration
	// Batch configures the forward.Batcher made for each peer. Its
	// Timeout, the deadline of one batch RPC, defaults to the longest a
	// check may wait (ForwardTimeout if set, else ForwardTimeoutMax) plus
	// 550 ms, and its Wait to that longest wait: the checks on a call give
	// up at their own deadline, the next batch goes out then, and an
	// answer that comes later still lands, so that what it counted at the
	// owner (a lease granted, hits) is settled, not lost or counted twice.
	Batch forward.BatchConfig
	// Breaker configures the forward.Breaker made for each peer. A breaker
	// counts failed batches (calls to the peer), not the checks waiting on
	// them, so one slow call with many checks queued behind it is one
	// failure.
	Breaker forward.BreakerConfig
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
// for any other key it asks the owner through a per-peer forward.Batcher,
// falling back to a local share of the limit when the owner cannot answer
// in time. It has the method the api package's Checker wants.
//
// A Router is safe for concurrent use. It keeps one forward.Batcher (with
// its goroutine) and one forward.Breaker per peer, made when first needed
// and dropped by Forget or Close.
type Router struct {
	self           string
	ring           *ring.Ring
	local          *bucket.Store
	fallback       *bucket.Store
	owed           *bucket.Store // may be nil
	imports        *Imports      // may be nil
	peers          forward.PeerSource
	forwardTimeout time.Duration // fixed; 0: adaptive
	forwardMin     time.Duration
	forwardMax     time.Duration
	batch          forward.BatchConfig
	breaker        forward.BreakerConfig
	clock          func() time.Time
	log            *slog.Logger
	obs            Observer
	book           *book // the pure core: leases, answers, local budgets
	noPeerWarn     warn.Gate

	// givesMu guards gives, the unused hits of ended leases not yet given
	// back, and releases, the slots on their way back to their owners;
	// giveNow wakes Run to send them at once.
	givesMu  sync.Mutex
	gives    []giveBack
	releases []slotRelease  // guarded by givesMu too
	refunds  []forward.Item // refunds for owners, sent once; guarded by givesMu
	giveNow  chan struct{}
	// returning counts the give-backs queued and not yet given back.
	returning atomic.Int64
	// awaiting holds the keys with checks given up on whose answer may
	// still come (see Awaiting).
	awaiting awaiting

	// slots holds the slots of keys this node owns; fallbackSlots those
	// taken here while an owner could not be reached; slotAt, by slot id,
	// the slots this node's jobs hold, and where; holder is this node's
	// holder name.
	slots         *bucket.Slots
	fallbackSlots *bucket.Slots
	slotAt        sync.Map // slot id → *heldSlot
	slotLeases    sync.Map // key → *slotLease
	holder        string

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
	batcher  *forward.Batcher
	breaker  *forward.Breaker
	deadline *forward.Deadline // nil with a fixed deadline
	warn     warn.Gate
	late     atomic.Int64 // batches in a row that missed their deadline
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
		// The RPC outlives the checks on it, which give up at their own
		// deadline: it waits until the owner can no longer count what it
		// carries (their deadline plus the clock offset it allows), so
		// that what a late answer counted there (a lease, hits) is settled
		// here (Router.abandoned) rather than lost or counted twice. The
		// Batcher sends the next batch once the checks have given up.
		cfg.Batch.Timeout = max(cfg.ForwardTimeoutMax, cfg.ForwardTimeout) + lateAnswerWait
		if cfg.Batch.Wait <= 0 {
			cfg.Batch.Wait = max(cfg.ForwardTimeoutMax, cfg.ForwardTimeout)
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
	if cfg.Slots == nil {
		cfg.Slots = bucket.NewSlots()
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
		book: &book{leases: ls, answers: newAnswers(cfg.OverLimitCacheSize, cfg.Local.Window()),
			leaseTTL: cfg.LeaseTTL, window: cfg.Local.Window()},
		giveNow:       make(chan struct{}, 1),
		slots:         cfg.Slots,
		holder:        cfg.Holder,
		fallbackSlots: bucket.NewSlots(),
		links:         make(map[string]*link),
		contacts:      newContacts(),
		renewals:      make(chan renewal, renewQueue),
		stop:          make(chan struct{}),
	}
	r.contacts.track(cfg.Ring.Members(), cfg.Self, cfg.Clock())
	r.renewing.Go(r.renewLoop)
	return r
}

// lateAnswerWait is how long past its checks' deadline a batch's call
// waits for its answer by default (see RouterConfig.Batch): the owner's
// default clock offset, past which it counts none of them, and a margin.
const lateAnswerWait = DefaultMaxClockOffset + 50*time.Millisecond

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
// constants. It is the shell around the book, the pure core: this side's
// share of the limit; then the local count for a key this node owns; else
// the book's answer (a lease, or the owner's remembered refusal); else one
// forward to the owner; else, when the owner cannot answer in time, a local
// decision within the book's budget.
func (r *Router) CheckPath(ctx context.Context, now time.Time, key string, limit int) (bucket.Decision, int) {
	return r.checkHits(ctx, now, key, 1, limit)
}

// checkHits is CheckPath for hits hits at once (a cost): all admitted or
// none. With hits 0 it counts nothing and admits unless the key is known
// to be over its limit.
func (r *Router) checkHits(ctx context.Context, now time.Time, key string, hits, limit int) (bucket.Decision, int) {
	limit = r.shareOf(limit)
	owner, ok := r.ring.Owner(key)
	if !ok || owner == r.self {
		return r.local.Take(now, key, hits, r.imports.Limit(now, key, limit)), PathLocal
	}
	known := r.book.check(now, key, hits, limit)
	if known.ended != nil {
		r.ended(*known.ended)
	}
	switch known.path {
	case PathLease:
		r.obs.LeaseDecision()
		if rn := known.renew; rn != nil {
			rn.owner = owner
			r.queueRenewal(*rn)
		}
		return known.d, PathLease
	case PathCached:
		r.obs.OverLimitCacheHit()
		return known.d, PathCached
	}
	l, reason := r.link(owner)
	if l == nil {
		return r.decideLocally(now, key, hits, limit, owner, reason, nil, nil, known.held), PathFallback
	}
	if !l.breaker.Allow(r.clock()) {
		return r.decideLocally(now, key, hits, limit, owner, FallbackBreakerOpen, nil, &l.warn, known.held), PathFallback
	}
	// The lease is dry, ended or missing: this check asks for one, unless
	// another check or a renewal already does.
	want, leaseID, asking := r.book.ask(now, key, hits, limit)
	if asking != nil {
		defer asking.renewing.Store(false)
	}
	// A check of no hits that asks for no lease only reads the owner's
	// count.
	res, err := r.forward(ctx, l, owner, forward.Item{Key: key, Hits: hits, Limit: limit, Window: r.local.Window(),
		Want: want, LeaseID: leaseID, Read: hits == 0 && want == 0})
	if err == nil {
		if res.Granted > 0 {
			r.obs.LeaseGranted(res.Granted, false)
		}
		// now was before the send, so what the owner said holds from then.
		d, ended := r.book.answered(now, key, limit, r.ring.Len(), res)
		r.ended(ended...)
		return d, PathForwarded
	}
	switch {
	case errors.Is(err, forward.ErrClosed):
		reason = FallbackClosed
	case ctx.Err() != nil:
		// The caller gave up; that says nothing about the peer.
		reason = FallbackCanceled
	case errors.Is(err, context.DeadlineExceeded):
		reason = FallbackTimeout
	default:
		reason = FallbackError
	}
	if errors.Is(err, forward.ErrGaveUp) {
		// The owner may count it yet: what this node admits for it stays
		// owed here until the answer says (see Awaiting).
		r.awaiting.add(key)
	}
	// The breaker hears of failures from the batch itself (see report):
	// the checks waiting on one failed call are one failure, not many.
	return r.decideLocally(now, key, hits, limit, owner, reason, err, &l.warn, known.held), PathFallback
}

// decideLocally counts hits of key in the fallback store against this
// node's share of limit and reports why. It logs at Warn, at most once per warn.Every
// through gate (nil: the Router's gate for checks without a peer), unless
// the reason is not the peer's fault; everything else goes to Debug. ls, if
// not nil, is the lease this node holds on key, spent: what it knows of the
// key bounds the decision further.
func (r *Router) decideLocally(now time.Time, key string, hits, limit int, owner, reason string, err error, gate *warn.Gate, ls *lease) bucket.Decision {
	members := max(1, r.ring.Len())
	share := localShare(limit, members)
	budget, until := r.book.budget(now, key, limit, members, ls)
	// The decision's Limit and Remaining are the budget this node applies
	// and what is left of it: the truth about this answer, not the limit's.
	d := r.fallback.Take(now, key, hits, budget)
	if d.Allowed && hits > 0 && r.owed != nil {
		// Owed to the owner's count, in the frame of the owner's window if
		// this node knows it, else of the local window it was admitted in:
		// a count in a later frame than the owner's would move the key's
		// window on when it is added there (bucket.Store.Add merges into
		// the later frame), and refuse its next window's first hits.
		start, ok := r.book.ownerWindow(now, key, ls)
		if !ok {
			start = d.ResetAt.Add(-r.fallback.Window())
		}
		r.owed.Add(now, bucket.Count{Key: key, Start: start, Current: uint64(hits)})
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

	loud := reason != FallbackCanceled && reason != FallbackClosed
	var suppressed int64
	if loud {
		if gate == nil {
			gate = &r.noPeerWarn
		}
		loud, suppressed = gate.Allow(now)
	}
	level := slog.LevelDebug
	if loud {
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

// ClearOverLimit forgets every owner's answer remembered, so the next check
// for each key asks its owner, and revokes every lease (RevokeLeases). Call
// it when the limits in force change (the health state moved), since an
// answer or a lease under one limit may not hold under another.
func (r *Router) ClearOverLimit() {
	r.book.answers.clear()
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
