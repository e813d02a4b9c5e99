package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/tierlimit/tierlimit/cluster"
	"github.com/tierlimit/tierlimit/health"
)

// Settings are the memberlist settings a run varies. A zero field keeps the
// base configuration's value.
type Settings struct {
	GossipNodes      int
	GossipInterval   time.Duration
	RetransmitMult   int
	PushPullInterval time.Duration
}

// apply sets the non-zero fields of s on c.
func (s Settings) apply(c *memberlist.Config) {
	if s.GossipNodes > 0 {
		c.GossipNodes = s.GossipNodes
	}
	if s.GossipInterval > 0 {
		c.GossipInterval = s.GossipInterval
	}
	if s.RetransmitMult > 0 {
		c.RetransmitMult = s.RetransmitMult
	}
	if s.PushPullInterval > 0 {
		c.PushPullInterval = s.PushPullInterval
	}
}

// lanConfig returns the baseline every run of the sweep changes one setting
// of: memberlist.DefaultLANConfig with DeadNodeReclaimTime set to
// cluster.DeadNodeReclaimTime, which is what package cluster used when
// cluster.Config.Memberlist was nil until this simulation chose its
// RetransmitMult and PushPullInterval (cluster.DefaultRetransmitMult and
// cluster.DefaultPushPullInterval: the "RetransmitMult 6" rows and the 15 s
// push/pull rows). cluster.New then sets the name, the delegates and the
// logger itself, as it does here.
func lanConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.DeadNodeReclaimTime = cluster.DeadNodeReclaimTime
	return c
}

// Phases bounds and paces the parts of a run.
type Phases struct {
	Join    time.Duration // longest wait for every member to see every other alive
	Quiet   time.Duration // longest wait after that for the join gossip to die down
	Tick    time.Duration // window in which quiet is judged
	Idle    time.Duration // window in which idle traffic is counted
	Reach   time.Duration // longest wait for one broadcast to reach every member
	Window  time.Duration // time given to each broadcast from its write, retransmits included
	Laggard time.Duration // longest wait for the laggards to learn a state by push/pull
	Dead    time.Duration // longest wait for every member to see the stopped ones dead
	Poll    time.Duration // how often conditions are checked
}

// lanPhases fit memberlist's LAN timings.
var lanPhases = Phases{
	Join:    20 * time.Second,
	Quiet:   90 * time.Second,
	Tick:    time.Second,
	Idle:    3 * time.Second,
	Reach:   10 * time.Second,
	Window:  3 * time.Second,
	Laggard: 60 * time.Second,
	Dead:    60 * time.Second,
	Poll:    5 * time.Millisecond,
}

// Spec describes one run.
type Spec struct {
	Label    string // names the run in the report
	Members  int    // cluster size, M
	Settings Settings
	// Base returns the memberlist configuration before Settings; nil means
	// lanConfig, memberlist's LAN settings as package cluster had them
	// before it took RetransmitMult and PushPullInterval from this sweep.
	Base func() *memberlist.Config
	// Compression keeps memberlist's EnableCompression on, as package
	// cluster runs it. Off, members send packets and streams uncompressed
	// and the network estimates their compressed size from a sample (see
	// Network.Estimate): memberlist compresses every packet with a new LZW
	// writer, whose 64 KB table makes the garbage collector the main cost
	// of 300 members in one process; with it, two CPUs cannot keep up with
	// the probes, and members are falsely declared dead. Packets are filled
	// by their uncompressed size either way, so gossip behaves the same.
	Compression bool
	// StartEvery is the pause between two members' starts; zero starts
	// them all at once. A member's first push/pull comes U(0,
	// PushPullInterval) plus one scaled interval after its start, so
	// members started together push/pull in step; spread over a scaled
	// interval, they do so at random times, as in a cluster whose members
	// started at different times.
	StartEvery time.Duration
	// Broadcasts is how many health states are written, one at a time, each
	// by another member.
	Broadcasts int
	// Laggards is how many members drop every user message they receive:
	// they learn of each state only by push/pull, which the run waits for
	// after each broadcast.
	Laggards int
	// LateJoin starts one more member after the broadcasts and times how
	// long it takes to learn the state.
	LateJoin bool
	// Victims is how many members are stopped at once, without leaving, to
	// time failure detection.
	Victims int
	Phases  Phases
}

// base returns the memberlist configuration of one member.
func (s Spec) base() *memberlist.Config {
	c := lanConfig()
	if s.Base != nil {
		c = s.Base()
	}
	s.Settings.apply(c)
	c.EnableCompression = c.EnableCompression && s.Compression
	return c
}

// Result is what one run measured. Durations of a broadcast count from the
// write at its origin; those of failure detection from the stop.
type Result struct {
	Spec      Spec
	Config    memberlist.Config // the base configuration the members ran with
	Join      time.Duration     // from the last start until every member saw M alive
	JoinLeft  int               // members that did not see M alive within Phases.Join
	JoinPairs int               // (member, member it does not see) pairs then
	// JoinAll is when, after JoinLeft > 0, every member saw M alive at last
	// (push/pull); 0 if not before the late join or the failures. JoinStill
	// pairs were still missing then, at JoinAt.
	JoinAll   time.Duration
	JoinAt    time.Duration
	JoinStill int
	// Quiet is how long after Join the join's gossip went on; -1 if it had
	// not stopped within Phases.Quiet.
	Quiet     time.Duration
	JoinBytes float64 // bytes sent per member from the start until quiet

	Reach   []time.Duration // per broadcast: until the last member had it
	Half    []time.Duration // per broadcast: until half the members had it
	Missed  int             // receipts missing when a broadcast's Reach bound passed
	Idle    float64         // bytes sent per member per second, idle
	During  float64         // bytes sent per member per second from a write until its last receipt
	Extra   float64         // bytes per member per broadcast above idle, over Phases.Window
	PerXchg float64         // bytes per stream then: one push/pull exchange, both ways

	Laggard     []time.Duration // per laggard and broadcast: until it learnt the state by push/pull
	LaggardLeft int             // laggards that had not within Phases.Laggard
	LateJoin    time.Duration   // until the late joiner had the state; 0 if not run
	Dead        []time.Duration // per victim: until every other member saw it dead
	DeadLeft    int             // victims some member still saw alive after Phases.Dead

	FalseFailures int64 // times a member saw fewer alive than before, before any was stopped
	Dropped       uint64
	Unfiltered    uint64
	Wall, CPU     time.Duration
}

// heard is the newest state a member adopted, and when.
type heard struct {
	version uint64
	at      time.Time
}

// member is one simulated node: a real cluster.Node on a simulated network.
type member struct {
	name   string
	tr     *Transport
	holder *health.Holder
	node   *cluster.Node
	alive  atomic.Int64 // alive members it sees, itself included
	heard  atomic.Pointer[heard]
}

// got returns when m adopted a state of version v or newer, if it has.
func (m *member) got(v uint64) (time.Time, bool) {
	h := m.heard.Load()
	if h == nil || h.version < v {
		return time.Time{}, false
	}
	return h.at, true
}

// sim is a run in progress.
type sim struct {
	spec    Spec
	net     *Network
	members []*member
	steady  atomic.Bool // every member has seen M alive, and none is stopped yet
	last    uint64      // version of the last state broadcast
	// falseFailures counts the times a member reported fewer alive than
	// before while steady.
	falseFailures atomic.Int64
}

// Run runs spec and returns what it measured. It stops every member it
// started before it returns.
func Run(ctx context.Context, spec Spec) (*Result, error) {
	if spec.Members < 2 {
		return nil, fmt.Errorf("run %s: %d members, want at least 2", spec.Label, spec.Members)
	}
	if spec.Laggards+spec.Victims+2 > spec.Members {
		return nil, fmt.Errorf("run %s: %d laggards and %d victims leave too few of %d members",
			spec.Label, spec.Laggards, spec.Victims, spec.Members)
	}
	s := &sim{spec: spec, net: NewNetwork()}
	s.net.Estimate(!spec.base().EnableCompression)
	defer s.stopAll()
	r := &Result{Spec: spec, Config: *spec.base()}
	wall, cpu := time.Now(), cpuTime()
	err := s.run(ctx, r)
	r.Wall, r.CPU = time.Since(wall), cpuTime()-cpu
	r.FalseFailures = s.falseFailures.Load()
	r.Dropped, r.Unfiltered = s.net.Dropped(), s.net.Unfiltered()
	if err != nil {
		return r, fmt.Errorf("run %s: %w", spec.Label, err)
	}
	return r, nil
}

func (s *sim) run(ctx context.Context, r *Result) error {
	M, ph := s.spec.Members, s.spec.Phases
	// The laggards are the last members, so the seed, the broadcast origins
	// and the victims hear gossip normally.
	for i := range M {
		var join []string
		if i > 0 {
			join = []string{s.members[0].tr.Addr()}
		}
		if _, err := s.start("m"+strconv.Itoa(i), join, i >= M-s.spec.Laggards, false); err != nil {
			return err
		}
		if err := sleep(ctx, s.spec.StartEvery); err != nil {
			return err
		}
	}
	t0 := time.Now() // join convergence counts from the last start
	left, err := s.waitFor(ctx, ph.Join, func() int {
		n := 0
		for _, m := range s.members {
			if m.alive.Load() < int64(M) {
				n++
			}
		}
		return n
	})
	if err != nil {
		return err
	}
	r.Join, r.JoinLeft, r.JoinPairs = time.Since(t0), left, s.missingPairs()
	// A member that missed every alive message about another learns of it
	// only by push/pull: watch for that while the run goes on.
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watch sync.WaitGroup
	defer func() { stopWatch(); watch.Wait() }()
	if left > 0 {
		watch.Go(func() {
			for sleep(watchCtx, 100*time.Millisecond) == nil {
				if s.missingPairs() == 0 {
					r.JoinAll = time.Since(t0)
					return
				}
			}
		})
	}
	s.steady.Store(true)
	if err := s.quiet(ctx, r); err != nil {
		return err
	}

	// Idle traffic.
	pk0, st0 := s.sent()
	dials0 := s.dials()
	idleStart := time.Now()
	if err := sleep(ctx, ph.Idle); err != nil {
		return err
	}
	pk1, st1 := s.sent()
	secs := time.Since(idleStart).Seconds()
	r.Idle = window(pk0, st0, pk1, st1) / float64(M) / secs

	if err := s.broadcasts(ctx, r); err != nil {
		return err
	}
	_, st2 := s.sent()
	if x := s.dials() - dials0; x > 0 {
		r.PerXchg = st2.Minus(st0).Wire() / float64(x)
	}

	// The late joiner would hide a missing pair from missingPairs.
	stopWatch()
	watch.Wait()
	if r.JoinLeft > 0 && r.JoinAll == 0 {
		r.JoinAt, r.JoinStill = time.Since(t0), s.missingPairs()
	}

	if s.spec.LateJoin {
		// From before the start: joining may already bring the state.
		start := time.Now()
		late, err := s.start("late", []string{s.members[0].tr.Addr()}, false, true)
		if err != nil {
			return err
		}
		v := s.last
		left, err := s.waitFor(ctx, ph.Reach, func() int {
			if _, ok := late.got(v); ok {
				return 0
			}
			return 1
		})
		if err != nil {
			return err
		}
		if left == 0 {
			at, _ := late.got(v)
			r.LateJoin = at.Sub(start)
		}
	}

	if s.spec.Victims > 0 {
		return s.failures(ctx, r)
	}
	return nil
}

// missingPairs returns how many (member, member) pairs of the first M
// members do not see each other alive, by the members' counts.
func (s *sim) missingPairs() int {
	M, n := s.spec.Members, 0
	for _, m := range s.members[:M] {
		n += max(0, M-int(m.alive.Load()))
	}
	return n
}

// quiet waits until memberlist's own gossip from the join (every member
// passes on an alive message for every other, RetransmitMult *
// ceil(log10(M+1)) times) has died down: a Phases.Tick in which at most one
// packet in a hundred members carried a queued broadcast. Measuring before
// that would time a health broadcast that competes with the join's alive
// messages for room in the packets.
func (s *sim) quiet(ctx context.Context, r *Result) error {
	ph := s.spec.Phases
	s.net.CountGossip(true)
	defer s.net.CountGossip(false)
	converged := time.Now()
	limit := uint64(max(1, s.spec.Members/100))
	for {
		g0 := s.net.GossipPackets()
		tick := time.Now()
		if err := sleep(ctx, ph.Tick); err != nil {
			return err
		}
		if s.net.GossipPackets()-g0 <= limit {
			r.Quiet = tick.Sub(converged)
			break
		}
		if time.Since(converged) > ph.Quiet {
			r.Quiet = -1
			break
		}
	}
	pk, st := s.sent()
	r.JoinBytes = (pk.Wire() + st.Wire()) / float64(s.spec.Members)
	return nil
}

// start creates a member that joins join (none: it is the seed) and, if
// deaf, drops the user messages it receives. A late member is not watched
// for false failures: it starts alone.
func (s *sim) start(name string, join []string, deaf, late bool) (*member, error) {
	tr := s.net.NewTransport()
	tr.DropUserMessages(deaf)
	m := &member{name: name, tr: tr, holder: health.NewHolder(name)}
	m.holder.OnChange(func(st health.State) {
		m.heard.Store(&heard{version: st.Version, at: time.Now()})
	})
	mc := s.spec.base()
	mc.Transport = tr
	node, err := cluster.New(cluster.Config{
		Name:       name,
		Health:     m.holder,
		Join:       join,
		Memberlist: mc,
		OnMembers: func(alive []cluster.Member) {
			prev := m.alive.Swap(int64(len(alive)))
			if !late && s.steady.Load() && int64(len(alive)) < prev {
				s.falseFailures.Add(1)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	m.node = node
	s.members = append(s.members, m)
	return m, nil
}

// broadcasts writes Spec.Broadcasts states, each at another member, and
// times how they spread.
func (s *sim) broadcasts(ctx context.Context, r *Result) error {
	M, L, ph := s.spec.Members, s.spec.Laggards, s.spec.Phases
	hearers := s.members[:M-L]
	laggards := s.members[M-L : M]
	var during, extra float64
	for k := range s.spec.Broadcasts {
		origin := hearers[1+k%(len(hearers)-1)]
		status := health.Degraded
		if k%2 == 1 {
			status = health.Normal
		}
		pk0, st0 := s.sent()
		t0 := time.Now()
		st, _ := origin.holder.Set(status, t0)
		s.last = st.Version
		left, err := s.waitFor(ctx, ph.Reach, func() int { return missing(hearers, st.Version) })
		if err != nil {
			return err
		}
		tLast := time.Since(t0)
		pk1, st1 := s.sent()
		r.Missed += left
		var times []time.Duration
		for _, m := range hearers {
			if m == origin {
				continue
			}
			if at, ok := m.got(st.Version); ok {
				times = append(times, at.Sub(t0))
			}
		}
		if left == 0 {
			r.Reach = append(r.Reach, quantile(times, 1))
		}
		r.Half = append(r.Half, quantile(times, 0.5))
		during += window(pk0, st0, pk1, st1) / float64(M) / tLast.Seconds()
		if err := sleep(ctx, time.Until(t0.Add(ph.Window))); err != nil {
			return err
		}
		pk2, st2 := s.sent()
		extra += window(pk0, st0, pk2, st2)/float64(M) - r.Idle*time.Since(t0).Seconds()

		if L > 0 {
			left, err := s.waitFor(ctx, ph.Laggard, func() int { return missing(laggards, st.Version) })
			if err != nil {
				return err
			}
			r.LaggardLeft += left
			for _, m := range laggards {
				if at, ok := m.got(st.Version); ok {
					r.Laggard = append(r.Laggard, at.Sub(t0))
				}
			}
		}
	}
	if n := float64(s.spec.Broadcasts); n > 0 {
		r.During, r.Extra = during/n, extra/n
	}
	return nil
}

// missing returns how many of ms have not adopted version v.
func missing(ms []*member, v uint64) int {
	n := 0
	for _, m := range ms {
		if _, ok := m.got(v); !ok {
			n++
		}
	}
	return n
}

// failures stops Spec.Victims members at once, as a crash would (the
// network drops their traffic from that instant; no Leave), and times
// until every other member sees each of them dead.
func (s *sim) failures(ctx context.Context, r *Result) error {
	M, ph := s.spec.Members, s.spec.Phases
	s.steady.Store(false)
	// Victims from the middle: not the seed, not a laggard, spread over
	// the origins' range.
	step := (M - s.spec.Laggards) / (s.spec.Victims + 1)
	victims := make(map[string]time.Duration)
	var stopped []*member
	for i := 1; i <= s.spec.Victims; i++ {
		stopped = append(stopped, s.members[i*step])
	}
	t0 := time.Now()
	for _, v := range stopped {
		victims[v.name] = 0
		_ = v.tr.Shutdown()
	}
	var wg sync.WaitGroup
	for _, v := range stopped {
		wg.Go(func() { _ = v.node.Close() })
	}
	defer wg.Wait()
	var watchers []*member
	for _, m := range s.members {
		if _, ok := victims[m.name]; !ok {
			watchers = append(watchers, m)
		}
	}
	poll := max(ph.Poll, 100*time.Millisecond) // Alive copies and sorts the view
	deadline := time.Now().Add(ph.Dead)
	for {
		seen := make(map[string]int) // victim: watchers that still see it alive
		for _, w := range watchers {
			for _, a := range w.node.Alive() {
				if _, ok := victims[a.Name]; ok {
					seen[a.Name]++
				}
			}
		}
		left := 0
		for name, d := range victims {
			switch {
			case d > 0:
			case seen[name] == 0:
				victims[name] = time.Since(t0)
			default:
				left++
			}
		}
		if left == 0 || time.Now().After(deadline) {
			r.DeadLeft = left
			break
		}
		if err := sleep(ctx, poll); err != nil {
			return err
		}
	}
	for _, d := range victims {
		if d > 0 {
			r.Dead = append(r.Dead, d)
		}
	}
	return nil
}

// waitFor polls left until it returns 0 or bound passes, and returns its
// last answer. It fails only if ctx ends.
func (s *sim) waitFor(ctx context.Context, bound time.Duration, left func() int) (int, error) {
	deadline := time.Now().Add(bound)
	for {
		n := left()
		if n == 0 || time.Now().After(deadline) {
			return n, nil
		}
		if err := sleep(ctx, s.spec.Phases.Poll); err != nil {
			return n, err
		}
	}
}

// sent returns the bytes all members have sent in packets and streams.
func (s *sim) sent() (packets, streams Bytes) {
	for _, m := range s.members {
		p, st := m.tr.Sent()
		packets, streams = packets.Plus(p), streams.Plus(st)
	}
	return packets, streams
}

// window returns the wire bytes sent in packets and streams between two
// counts.
func window(pk0, st0, pk1, st1 Bytes) float64 {
	return pk1.Minus(pk0).Wire() + st1.Minus(st0).Wire()
}

// dials returns the streams all members have opened.
func (s *sim) dials() uint64 {
	var n uint64
	for _, m := range s.members {
		n += m.tr.Dials()
	}
	return n
}

// stopAll stops every member, all at once.
func (s *sim) stopAll() {
	var wg sync.WaitGroup
	for _, m := range s.members {
		_ = m.tr.Shutdown()
		wg.Go(func() { _ = m.node.Close() })
	}
	wg.Wait()
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
