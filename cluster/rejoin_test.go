package cluster

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/cluster/clustertest"
	"github.com/tierlimit/tierlimit/health"
)

func TestRejoinTargets(t *testing.T) {
	tests := []struct {
		name               string
		seeds, dead, alive []string
		limit              int
		want               []string
	}{
		{"nothing to do", nil, nil, []string{"a:1"}, 8, nil},
		{"alive seeds skipped", []string{"a:1", "b:1"}, nil, []string{"a:1", "b:1"}, 8, nil},
		{"seeds then dead", []string{"s:1"}, []string{"d:1", "d:2"}, nil, 8, []string{"s:1", "d:1", "d:2"}},
		{"duplicates once", []string{"s:1", "s:1"}, []string{"s:1", "d:1"}, nil, 8, []string{"s:1", "d:1"}},
		{"dead but alive again", nil, []string{"d:1"}, []string{"d:1"}, 8, nil},
		{"limit", []string{"s:1"}, []string{"d:1", "d:2"}, nil, 2, []string{"s:1", "d:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rejoinTargets(tt.seeds, tt.dead, tt.alive, tt.limit)
			assert.Equal(t, tt.want, got, "rejoinTargets(%v, %v, %v, %d)", tt.seeds, tt.dead, tt.alive, tt.limit)
		})
	}
}

func TestResolveSeeds(t *testing.T) {
	got := resolveSeeds(t.Context(), []string{"127.0.0.1:7946", "localhost:7000", "no-port", "name/10.0.0.1:7946"})
	require.GreaterOrEqual(t, len(got), 4, "resolveSeeds() = %v", got)
	assert.Equal(t, "127.0.0.1:7946", got[0])
	assert.Contains(t, got, "127.0.0.1:7000", "localhost resolved")
	assert.Contains(t, got, "no-port", "kept as written")
	assert.Contains(t, got, "name/10.0.0.1:7946", "kept as written")
}

func TestJoinBeforeSeedStarts(t *testing.T) {
	port := freePort(t)
	seedAddr := "127.0.0.1:" + strconv.Itoa(port)

	cfg := testConfig("early")
	cfg.Join = []string{seedAddr}
	early := startNode(t, cfg)
	assert.False(t, early.Joined(), "Joined() before the seed is up")

	seedCfg := testConfig("seed")
	seedCfg.BindPort = port
	seed := startNode(t, seedCfg)
	require.Equal(t, seedAddr, seed.GossipAddr())
	assert.True(t, seed.Joined(), "a node without seeds is Joined()")

	start := time.Now()
	require.Eventually(t, early.Joined, waitFor, tick, "early node never joined its seed")
	requireAlive(t, []*Node{early, seed}, 2)
	t.Logf("joined %s after the seed started", time.Since(start))
}

// TestPartitionHeals cuts a 4-node cluster 2+2 and heals it. Within
// GossipToTheDeadTime memberlist still gossips to the dead and may heal by
// itself; the test makes that window tiny, so only the rejoin loop can merge
// the sides, as after a partition that lasted longer than it in production.
func TestPartitionHeals(t *testing.T) {
	p := clustertest.NewPartition()
	nodes := startNodes(t, 4, func(i int, c *Config) {
		tr, err := p.NewTransport("127.0.0.1")
		require.NoError(t, err)
		c.Memberlist.Transport = tr
		c.Memberlist.GossipToTheDeadTime = 100 * time.Millisecond
	})
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.GossipAddr()
	}
	sideA, sideB := nodes[:2], nodes[2:]

	p.Block(addrs[:2], addrs[2:])
	start := time.Now()
	requireAlive(t, nodes, 2)
	t.Logf("each side saw the other dead %s after the cut", time.Since(start))
	for _, n := range nodes {
		for _, m := range n.Members() {
			sameSide := (m.Name < "n2") == (n.cfg.Name < "n2")
			if !sameSide {
				assert.Equal(t, StateDead, m.State, "%s sees %s.State", n.cfg.Name, m.Name)
			}
		}
	}

	// Each side writes its own state; side B writes twice, so it wins.
	a, _ := sideA[0].cfg.Health.Set(health.Degraded, time.Now())
	sideB[1].cfg.Health.Set(health.Degraded, time.Now())
	b, _ := sideB[1].cfg.Health.Set(health.Normal, time.Now())
	waitState(t, sideA, keyOf(a))
	waitState(t, sideB, keyOf(b))

	p.Heal()
	start = time.Now()
	requireAlive(t, nodes, 4)
	t.Logf("all 4 alive everywhere %s after the heal", time.Since(start))
	waitState(t, nodes, keyOf(b))
	t.Logf("one health state everywhere %s after the heal", time.Since(start))
	for _, n := range nodes {
		for _, m := range n.Members() {
			assert.Equal(t, StateAlive, m.State, "%s sees %s.State after the heal", n.cfg.Name, m.Name)
		}
	}
}

// TestPartitionTransportCutsOneNode checks the fault injection itself: a
// node cut off from everyone is declared dead, and comes back on Heal.
func TestPartitionTransportCutsOneNode(t *testing.T) {
	p := clustertest.NewPartition()
	nodes := startNodes(t, 3, func(i int, c *Config) {
		tr, err := p.NewTransport("127.0.0.1")
		require.NoError(t, err)
		c.Memberlist.Transport = tr
	})
	p.Block([]string{nodes[2].GossipAddr()}, []string{nodes[0].GossipAddr(), nodes[1].GossipAddr()})
	requireAlive(t, nodes[:2], 2)
	requireAlive(t, nodes[2:], 1)
	p.Heal()
	requireAlive(t, nodes, 3)
}

// lanTimings are memberlist's LAN timings (probe every second, push/pull
// every 30 s), with which a member that restarted used to stay alone until
// a random push/pull reached it.
func lanTimings(i int, c *Config) {
	mc := TestMemberlistConfig()
	mc.ProbeInterval, mc.ProbeTimeout, mc.SuspicionMult = time.Second, 500*time.Millisecond, 4
	mc.GossipInterval, mc.PushPullInterval = 200*time.Millisecond, 30*time.Second
	mc.RetransmitMult = 4
	c.Memberlist = mc
	c.RejoinInterval = DefaultRejoinInterval
}

// TestSeedRestartedAtOnceRejoins: a seed (no seeds of its own) that crashes
// and is restarted at once on the same address, faster than its peers can
// find it dead, sees every member and the cluster's health state within
// 5 s: its peers notice from its pings that it is a new process and sync
// with it.
func TestSeedRestartedAtOnceRejoins(t *testing.T) {
	port := freePort(t)
	nodes := startNodes(t, 3, lanTimings, func(i int, c *Config) {
		if i == 0 {
			c.BindPort = port
		}
	})
	_, _ = nodes[1].cfg.Health.Set(health.Degraded, time.Now())
	want := keyOf(nodes[1].cfg.Health.Current())
	waitState(t, nodes, want)

	require.NoError(t, nodes[0].Close()) // a crash: no Leave
	cfg := testConfig("n0")
	lanTimings(0, &cfg)
	cfg.BindPort = port
	restarted := startNode(t, cfg)
	start := time.Now()
	require.Eventually(t, func() bool {
		return len(restarted.Alive()) == 3 && keyOf(restarted.cfg.Health.Current()) == want
	}, 5*time.Second, tick, "the restarted seed is still alone or behind: alive %v, state %+v",
		aliveNames([]*Node{restarted}), restarted.cfg.Health.Current())
	t.Logf("restarted seed saw 3 members and the state after %v", time.Since(start).Round(time.Millisecond))
	requireAlive(t, []*Node{restarted, nodes[1], nodes[2]}, 3)
}

// TestSeedRestartedAfterALeaveRejoins: a seed that left gracefully (a
// rolling deploy) and comes back on its address without seeds is joined by
// its peers within 5 s: they keep trying members that went a moment ago.
func TestSeedRestartedAfterALeaveRejoins(t *testing.T) {
	port := freePort(t)
	nodes := startNodes(t, 3, lanTimings, func(i int, c *Config) {
		if i == 0 {
			c.BindPort = port
		}
	})
	require.NoError(t, nodes[0].Leave(time.Second))
	require.NoError(t, nodes[0].Close())
	requireAlive(t, nodes[1:], 2)

	cfg := testConfig("n0")
	lanTimings(0, &cfg)
	cfg.BindPort = port
	restarted := startNode(t, cfg)
	start := time.Now()
	require.Eventually(t, func() bool { return len(restarted.Alive()) == 3 }, 5*time.Second, tick,
		"the restarted seed is still alone: %v", aliveNames([]*Node{restarted}))
	t.Logf("restarted seed joined after %v", time.Since(start).Round(time.Millisecond))
}

// TestRestartAtANewAddressIsFollowed: a member that crashes and comes back
// at once at a new address (another port here) is refused there by
// memberlist until its old process is declared dead and DeadNodeReclaimTime
// has passed (an hour here, so that only the following works). Its peers see
// the claim with a new boot id and follow it at once; when the new process
// dies too, they take it as failed after the joins it misses, although
// memberlist never probed it.
func TestRestartAtANewAddressIsFollowed(t *testing.T) {
	noReclaim := func(i int, c *Config) {
		lanTimings(i, c)
		c.Memberlist.DeadNodeReclaimTime = time.Hour
	}
	nodes := startNodes(t, 3, noReclaim)
	require.NoError(t, nodes[2].Close()) // a crash: no Leave
	cfg := testConfig("n2")
	noReclaim(2, &cfg)
	cfg.GRPCAddr = "grpc.n2-again:9090"
	cfg.Join = []string{nodes[0].GossipAddr()}
	restarted, err := New(cfg)
	require.NoError(t, err)
	defer restarted.Close()
	require.NotEqual(t, nodes[2].GossipAddr(), restarted.GossipAddr())

	at := func(n *Node, addr string) bool {
		for _, m := range n.Alive() {
			if m.Name == "n2" {
				return m.Addr == addr && m.GRPCAddr == "grpc.n2-again:9090"
			}
		}
		return false
	}
	start := time.Now()
	require.Eventually(t, func() bool {
		return at(nodes[0], restarted.GossipAddr()) && at(nodes[1], restarted.GossipAddr()) && len(restarted.Alive()) == 3
	}, 5*time.Second, tick, "the peers do not follow n2 to %s: %v", restarted.GossipAddr(), aliveNames(nodes[:2]))
	t.Logf("followed after %v", time.Since(start).Round(time.Millisecond))

	// memberlist declares the old process dead meanwhile; that is not news
	// of the member the peers follow.
	require.Never(t, func() bool {
		return !at(nodes[0], restarted.GossipAddr()) || !at(nodes[1], restarted.GossipAddr())
	}, 7*time.Second, 100*time.Millisecond, "a peer dropped the followed member while it ran")
	for _, m := range nodes[0].ml.Members() {
		assert.NotEqual(t, "n2", m.Name, "memberlist still has the old process alive: the test proves nothing")
	}

	require.NoError(t, restarted.Close())
	require.Eventually(t, func() bool { return len(nodes[0].Alive()) == 2 && len(nodes[1].Alive()) == 2 },
		10*time.Second, tick, "the followed member's death was not seen: %v", aliveNames(nodes[:2]))
}

func TestOneLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"1 error occurred:\n\t* Failed to join 127.0.0.1:7946: dial tcp 127.0.0.1:7946: connect: connection refused\n\n",
			"1 error occurred: Failed to join 127.0.0.1:7946: dial tcp 127.0.0.1:7946: connect: connection refused"},
		{"2 errors occurred:\n\t* a\n\t* b\n\n", "2 errors occurred: a; b"},
		{"plain", "plain"},
	} {
		assert.Equal(t, tt.want, oneLine(tt.in))
	}
}
