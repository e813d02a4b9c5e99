package tierlimit

import (
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/forward"
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
	_ loadReader   = (*Limiter)(nil)
)

// limiterSource is what the series of every Limiter read.
type limiterSource interface {
	healthReader
	tierReader
	storeReader
	loadReader
	autoReader
}

// loadReader reads the load signal (tierlimit_requests_in_flight,
// tierlimit_load_signal) and the queue (tierlimit_queue_*).
type loadReader interface {
	Load() (api.Load, bool)
	queueStats() api.QueueStats
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
	breakers(now time.Time) map[string]forward.BreakerState
	// deadlines returns how long a check forwarded now to each peer
	// forwarded to so far may wait.
	deadlines() map[string]time.Duration
}

// leaseReader reads the leases this member holds (tierlimit_leases).
type leaseReader interface {
	// leasesHeld returns the leases held on keys other members own.
	leasesHeld() int
	// leaseHitsCredited returns the hits this member, as an owner, took
	// back from the leases of holders that failed or restarted.
	leaseHitsCredited() int64
	// slotsHeld returns the concurrency slots held now in this member's
	// tables: of keys it owns, and taken on its own while an owner could
	// not be reached.
	slotsHeld() (owned, fallback int)
	// slotsFreed returns the slots this member, as an owner, gave back for
	// members that failed or restarted.
	slotsFreed() int64
}

// What a Limiter tells its series: the interfaces above.

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

func (l *Limiter) leaseHitsCredited() int64 { return l.owner.Credited() }

func (l *Limiter) slotsHeld() (owned, fallback int) { return l.router.SlotsHeld(time.Now()) }
func (l *Limiter) slotsFreed() int64                { return l.owner.SlotsFreed() }

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

func (l *Limiter) breakers(now time.Time) map[string]forward.BreakerState {
	return l.router.Breakers(now)
}

func (l *Limiter) deadlines() map[string]time.Duration { return l.router.Deadlines() }
