package tierlimit

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/cluster"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/handoff"
	"github.com/tierlimit/tierlimit/ownership"
	"github.com/tierlimit/tierlimit/peer"
	"github.com/tierlimit/tierlimit/ring"
)

// startCluster starts what a cluster member adds to a single node: the
// peer server on GRPCAddr, the book of peers, the ring and the router, and
// gossip on GossipAddr, whose membership feeds the ring and the book.
func (l *Limiter) startCluster() error {
	cfg := l.cfg
	switch {
	case cfg.ClusterKey != "":
	case cfg.InsecureOpenCluster:
		l.log.Warn("insecure open cluster: gRPC between peers is plaintext and unauthenticated; anyone who can reach the gRPC port can add hits to any count; set a cluster key",
			"grpc_addr", cfg.GRPCAddr)
	default:
		l.log.Info("no cluster key: gossip and gRPC listen on loopback only; set a cluster key for peers on other hosts",
			"grpc_addr", cfg.GRPCAddr, "gossip_addr", cfg.GossipAddr)
	}
	srvCreds, cliCreds, err := peer.Credentials(cfg.ClusterKey)
	if err != nil {
		return err
	}
	// One boot id for this process, in gossip, in backups and in every
	// call to a peer alike.
	boot := cluster.NewBootID()
	dial := peer.Identify(cfg.NodeName, boot)
	if cfg.PeerDialer != nil {
		dial = append(dial, grpc.WithContextDialer(cfg.PeerDialer))
	}
	l.book = peer.NewBook(cliCreds, dial...)
	l.fallback = bucket.New(bucket.Config{Window: l.window, MaxKeys: cfg.MaxKeys})
	l.owed = bucket.New(bucket.Config{Window: l.window, MaxKeys: cfg.MaxKeys})
	l.ring = ring.New()
	l.ring.Set([]string{cfg.NodeName})
	l.imports = ownership.NewImports(cfg.NodeName)
	l.keeper = handoff.New(handoff.Config{
		Self:           cfg.NodeName,
		Boot:           boot,
		Ring:           l.ring,
		Store:          l.store,
		Owed:           l.owed,
		Hold:           func(key string) bool { return l.router.Awaiting(key) },
		Peers:          l.book,
		BackupInterval: cfg.BackupInterval,
		MaxBackupKeys:  cfg.MaxKeys,
		// Backups and hand-offs that land are contact with their peers
		// too; l.router is set before the Keeper sends anything.
		Heard:    func(m string, at time.Time) { l.router.Heard(m, at) },
		Imports:  l.imports,
		Logger:   l.log,
		Observer: l.metrics.keeperObserver(),
	})
	l.owner = ownership.NewOwner(l.store, l.ring.Len, cfg.LeaseTTL)
	l.slots = l.owner.Slots()
	l.owner.SetMaxClockOffset(cfg.MaxClockOffset)
	l.owner.SetImports(l.imports)
	owner := l.owner
	if l.endpoint, err = peer.Listen(cfg.GRPCAddr, srvCreds, owner, l.keeper, l.log); err != nil {
		return err
	}
	l.router = ownership.NewRouter(ownership.RouterConfig{
		Self:              cfg.NodeName,
		Ring:              l.ring,
		Local:             l.store,
		Fallback:          l.fallback,
		Owed:              l.owed,
		Imports:           l.imports,
		Slots:             l.slots,
		Holder:            ownership.HolderOf(forward.Holder{Name: cfg.NodeName, Boot: boot}),
		Peers:             l.book,
		ForwardTimeout:    cfg.ForwardTimeout,
		ForwardTimeoutMin: cfg.ForwardTimeoutMin,
		ForwardTimeoutMax: cfg.ForwardTimeoutMax,
		LeaseTTL:          cfg.LeaseTTL,
		MaxLeases:         cfg.MaxKeys,
		Logger:            l.log,
		Observer:          l.metrics.observer(),
	})
	// A new state changes every limit: refusals cached under the old one
	// no longer hold.
	l.health.OnChange(func(State) { l.router.ClearOverLimit() })

	gossipHost, gossipPort, _ := splitHostPort(cfg.GossipAddr) // checked by withDefaults
	_, grpcPort, _ := splitHostPort(l.endpoint.Addr().String())
	hash := ""
	if l.file != nil {
		hash = l.file.Tiers().Hash()
	}
	l.node, err = cluster.New(cluster.Config{
		Name:           cfg.NodeName,
		BindAddr:       gossipHost,
		BindPort:       gossipPort,
		AdvertiseAddr:  cfg.AdvertiseAddr,
		Join:           cfg.Join,
		Peers:          l.remembered,
		Boot:           boot,
		GRPCAddr:       grpcAdvertise(cfg.AdvertiseAddr, cfg.GRPCAddr, grpcPort),
		ConfigHash:     hash,
		SecretKey:      cfg.ClusterKey,
		Health:         l.health,
		OnMembers:      l.membersChanged,
		RejoinInterval: cfg.RejoinInterval,
		MaxClockOffset: cfg.MaxClockOffset,
		Memberlist:     cfg.Memberlist,
		Logger:         l.log,
	})
	if err != nil {
		return err
	}
	l.updateQuorum(time.Now())
	return nil
}

// updateQuorum tells the router this side's share of the cluster at now,
// and keeps it for Ready. It runs on watchQuorum's ticks and in the same
// step that applies a change of members to the ring (applyMembers), so
// that no check sees the new ring with the share of the old one: a node
// that just joined would otherwise go on applying the share it started
// with, a fraction of every limit, until the next tick.
func (l *Limiter) updateQuorum(now time.Time) {
	l.quorumMu.Lock()
	defer l.quorumMu.Unlock()
	alive, known := l.node.Quorum(now, l.cfg.QuorumGrace)
	l.alive.Store(int64(alive))
	l.known.Store(int64(known))
	// Members still alive to gossip, but that have not answered a call or
	// a ping lately (or whose breakers are open), are cut off as far as
	// counting goes: a partition shows here within ownership.FenceAfter,
	// seconds before failure detection says so, and a cut-off owner must
	// not count its keys at the full limit meanwhile, whether or not it
	// forwards anything.
	reachable := max(1, min(alive, l.router.Reachable(now)))
	l.router.SetShare(reachable, known)
}

// watchQuorum updates the share as failed members age out of the count,
// and as members stop or start answering, until ctx ends. (applyMembers
// updates it as members come and go.)
func (l *Limiter) watchQuorum(ctx context.Context) {
	t := time.NewTicker(quorumTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l.updateQuorum(now)
		}
	}
}

// tidyAfter is how long after a change of members the keys counted here
// for other owners are sent on once more: checks that peers whose ring was
// behind sent here.
const tidyAfter = 2 * time.Second

// followRing moves counts as the ring changes, until ctx ends: the keys
// this node no longer owns go to their owners, and the copies of a member
// that failed go to the owners of its keys (see handoff.Keeper). It runs
// off memberlist's goroutine, since the moves go over the network.
func (l *Limiter) followRing(ctx context.Context) {
	prev := l.ring.Members()
	tidy := time.NewTimer(time.Hour)
	tidy.Stop()
	defer tidy.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tidy.C:
			l.keeper.Tidy(ctx)
		case <-l.ringMoved:
			cur := l.ring.Members()
			failed, left := l.departed(prev, cur)
			prev = cur
			l.keeper.Members(ctx, failed, left)
			l.router.HandOffSlots(ctx)
			l.router.ReannounceSlots(ctx)
			tidy.Reset(tidyAfter)
		}
	}
}

// departed sorts the members in prev but not in cur into those that failed
// and those that left or are leaving.
func (l *Limiter) departed(prev, cur []string) (failed, left []string) {
	state := make(map[string]cluster.Member)
	for _, m := range l.node.Members() {
		state[m.Name] = m
	}
	for _, name := range prev {
		if slices.Contains(cur, name) || name == l.cfg.NodeName {
			continue
		}
		if m := state[name]; m.State == cluster.StateDead && !m.Leaving {
			failed = append(failed, name)
		} else {
			left = append(left, name)
		}
	}
	return failed, left
}

// quorumTick is how often watchQuorum looks at the members.
const quorumTick = 250 * time.Millisecond

// grpcAdvertise returns the gRPC address to publish to peers: the advertise
// host and the bound port; else the GRPCAddr host, if it names one; else,
// for an address on every interface (":9090", "0.0.0.0:9090"), only
// ":port", and peers put the IP they gossip with in front of it.
func grpcAdvertise(advertise, grpcAddr string, port int) string {
	p := strconv.Itoa(port)
	if advertise != "" {
		return net.JoinHostPort(advertise, p)
	}
	host, _, _ := splitHostPort(grpcAddr)
	if anyHost(host) {
		return ":" + p
	}
	return net.JoinHostPort(host, p)
}

// membersChanged is the cluster's OnMembers. memberlist calls it with its
// lock held, on every join, leave and update, so it only hands the members
// to applyMembers, on its own goroutine (applyChanges): a ring rebuild
// costs milliseconds at 60 members, and while memberlist's lock is held no
// probe is answered.
func (l *Limiter) membersChanged(alive []cluster.Member) {
	l.pending.put(alive)
}

// Ring rebuilds are paced so that a storm of member changes (a cluster
// forming, a rolling deploy: a report per member) takes a bounded share of
// a CPU whatever the cluster's size, while a lone change applies at once.
// At 3 members an apply takes about 0.15 ms, at 60 about 3 ms
// (docs/scale.md).
const (
	// ringPace: each apply costs ringPace times what it took, paid back
	// in real time, so a storm's rebuilds take at most 1/ringPace of a CPU.
	ringPace = 20
	// ringBurst is how much unpaid cost still lets a report apply at
	// once: a few changes in a row at 60 members.
	ringBurst = 250 * time.Millisecond
	// maxRingHold bounds a wait, however slow the applies before it were.
	maxRingHold = time.Second
)

// pacer is the leaky bucket behind ringPace. The zero value owes nothing.
type pacer struct {
	owed time.Duration // at last
	last time.Time
}

// hold returns how long a report that came in at now waits.
func (p *pacer) hold(now time.Time) time.Duration {
	owed := max(0, p.owed-now.Sub(p.last)) // now.Sub is huge for the zero last
	return max(0, owed-ringBurst)
}

// paid records an apply that ran from start to end. What is owed is capped
// at one maxRingHold above the burst: the cost is wall time, and on a
// starved machine (a cluster forming on too few CPUs) one apply can take
// seconds, which must not hold the next change back for minutes.
func (p *pacer) paid(start, end time.Time) {
	owed := max(0, p.owed-start.Sub(p.last)) + end.Sub(start)*ringPace
	p.owed = min(owed, ringBurst+maxRingHold)
	p.last = end
}

// applyChanges applies the members memberlist reports until ctx ends.
// Reports that come in while it applies or waits are applied as one.
func (l *Limiter) applyChanges(ctx context.Context) {
	var pace pacer
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.pending.ready:
		}
		if d := pace.hold(time.Now()); d > 0 {
			wait.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-wait.C:
			}
		}
		start := time.Now()
		l.applyMembers()
		pace.paid(start, time.Now())
	}
}

// applyMembers applies the members last reported, if they were not yet:
// the book learns the peers' addresses before the ring sends keys to them,
// and the router drops what it keeps for peers that went or moved on its
// own goroutine, since that closes their old clients.
func (l *Limiter) applyMembers() {
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	alive, ok := l.pending.take()
	if !ok {
		return
	}
	names := make([]string, 0, len(alive))
	addrs := make(map[string]string, len(alive))
	boots := make(map[string]string, len(alive))
	for _, m := range alive {
		boots[m.Name] = m.Boot
		if !m.Leaving { // a member about to leave gets no new keys
			names = append(names, m.Name)
		}
		if m.Name != l.cfg.NodeName && m.GRPCAddr != "" {
			addrs[m.Name] = m.GRPCAddr
		}
	}
	if l.state != nil {
		gossip := make([]string, 0, len(alive))
		for _, m := range alive {
			if m.Name != l.cfg.NodeName {
				gossip = append(gossip, m.Addr)
			}
		}
		l.state.remember(gossip)
	}
	// What the leases of members that went or restarted had left goes
	// back to their keys.
	l.owner.Members(time.Now(), boots)
	stale, release := l.book.Set(addrs)
	prev := l.ring.Members()
	// The copies of members that failed are counted before the ring
	// drops them, so that no check here is decided without them.
	failed, _ := l.departed(prev, names)
	l.keeper.TakeOver(failed)
	if l.ring.Set(names) {
		now := time.Now()
		l.owner.Moved(now)
		l.imports.Moved(prev, names, now)
	}
	l.updateQuorum(time.Now())
	select {
	case l.ringMoved <- struct{}{}: // followRing looks again at once
	default:
	}
	if len(stale) > 0 {
		l.bg.Go(func() {
			// Forget first, so that no batcher is left with a closed Client.
			for _, name := range stale {
				l.router.Forget(name)
			}
			release()
		})
	} else {
		release()
	}
	l.log.Info("members changed", "alive", len(names), "members", names)
}

// memberReports holds the members memberlist last reported until they are
// applied. Only the latest report matters, so reports that come in while
// one is applied replace each other. The zero value is not ready: use
// newMemberReports.
type memberReports struct {
	mu     sync.Mutex
	latest []cluster.Member
	fresh  bool          // latest is not yet taken
	ready  chan struct{} // capacity 1: a report came in
}

func newMemberReports() *memberReports {
	return &memberReports{ready: make(chan struct{}, 1)}
}

// put replaces the report; it never blocks.
func (r *memberReports) put(alive []cluster.Member) {
	r.mu.Lock()
	r.latest, r.fresh = alive, true
	r.mu.Unlock()
	select {
	case r.ready <- struct{}{}:
	default:
	}
}

// take returns the latest report and true, or false if it was taken
// already.
func (r *memberReports) take() ([]cluster.Member, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.fresh {
		return nil, false
	}
	r.fresh = false
	return r.latest, true
}
