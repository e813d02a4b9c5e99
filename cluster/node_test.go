package cluster

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/health"
)

// Timings for the tuned test config: a crash is noticed in about 0.5 s.
const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
)

// testConfig returns the config of a test node named name, on 127.0.0.1
// with a free port and fast timings.
func testConfig(name string) Config {
	return Config{
		Name:           name,
		BindAddr:       "127.0.0.1",
		GRPCAddr:       "grpc." + name + ":9090",
		ConfigHash:     "hash-1",
		Health:         health.NewHolder(name),
		RejoinInterval: 300 * time.Millisecond,
		Memberlist:     TestMemberlistConfig(),
	}
}

// startNode starts a node from cfg and closes it when the test ends.
func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	require.NoError(t, err, "New(%s)", cfg.Name)
	t.Cleanup(func() { assert.NoError(t, n.Close(), "Close(%s)", cfg.Name) })
	return n
}

// startNodes starts n nodes named n0, n1, …; every node but n0 joins n0.
// Each edit, if any, may change a node's config before it starts. It
// returns once every node sees all n alive.
func startNodes(t *testing.T, n int, edits ...func(i int, c *Config)) []*Node {
	t.Helper()
	nodes := make([]*Node, n)
	for i := range n {
		cfg := testConfig(fmt.Sprintf("n%d", i))
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		for _, edit := range edits {
			edit(i, &cfg)
		}
		nodes[i] = startNode(t, cfg)
	}
	requireAlive(t, nodes, n)
	return nodes
}

// requireAlive waits until every node sees want alive members.
func requireAlive(t *testing.T, nodes []*Node, want int) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if len(n.Alive()) != want {
				return false
			}
		}
		return true
	}, waitFor, tick, "want %d alive members on every node; got %v", want, aliveNames(nodes))
}

func aliveNames(nodes []*Node) map[string][]string {
	out := make(map[string][]string)
	for _, n := range nodes {
		for _, m := range n.Alive() {
			out[n.cfg.Name] = append(out[n.cfg.Name], m.Name)
		}
	}
	return out
}

// member returns what n knows of the member named name.
func member(n *Node, name string) (Member, bool) {
	for _, m := range n.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// stateKey is the part of a health state that must agree on every node.
type stateKey struct {
	Status  health.Status
	Version uint64
	Origin  string
}

func keyOf(s health.State) stateKey { return stateKey{s.Status, s.Version, s.Origin} }

// waitState waits until every node holds want and returns how long it took.
func waitState(t *testing.T, nodes []*Node, want stateKey) time.Duration {
	t.Helper()
	start := time.Now()
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if keyOf(n.cfg.Health.Current()) != want {
				return false
			}
		}
		return true
	}, waitFor, time.Millisecond, "want %+v on every node", want)
	return time.Since(start)
}

// logBuffer collects a node's logs for a test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// count returns how many log lines contain all of parts.
func (b *logBuffer) count(parts ...string) int {
	c := 0
	for line := range strings.Lines(b.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			c++
		}
	}
	return c
}

// freePort returns a port on 127.0.0.1 that was free for both TCP and UDP a
// moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	return freePortOn(t, "127.0.0.1")
}

// freePortOn returns a port on the loopback IP ip that was free for both
// TCP and UDP a moment ago.
func freePortOn(t *testing.T, ip string) int {
	t.Helper()
	addr := net.ParseIP(ip)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: addr})
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: addr, Port: port})
	require.NoError(t, err)
	require.NoError(t, pc.Close())
	require.NoError(t, ln.Close())
	return port
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := testConfig("n0")
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "Name"},
		{"no health", func(c *Config) { c.Health = nil }, "Health"},
		{"bad port", func(c *Config) { c.BindPort = 70000 }, "BindPort"},
		{"negative rejoin", func(c *Config) { c.RejoinInterval = -time.Second }, "RejoinInterval"},
		{"metadata too big", func(c *Config) { c.GRPCAddr = strings.Repeat("x", 600) }, "metadata"},
		{"unresolvable advertise", func(c *Config) { c.AdvertiseAddr = "no-such-host.invalid" }, "AdvertiseAddr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			n, err := New(cfg)
			if n != nil {
				_ = n.Close()
			}
			require.Error(t, err, "New(%s) = nil error", tt.name)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestAdvertiseAddrResolvesName(t *testing.T) {
	cfg := testConfig("n0")
	cfg.AdvertiseAddr = "localhost"
	n := startNode(t, cfg)
	host, port, err := net.SplitHostPort(n.GossipAddr())
	require.NoError(t, err)
	assert.True(t, net.ParseIP(host).IsLoopback(), "GossipAddr() = %s, want a loopback IP", n.GossipAddr())
	assert.NotEqual(t, "0", port, "GossipAddr() = %s, want the bound port", n.GossipAddr())
}

func TestJoinThreeNodes(t *testing.T) {
	var mu sync.Mutex
	last := make(map[string][]Member)
	nodes := startNodes(t, 3, func(i int, c *Config) {
		name := c.Name
		c.OnMembers = func(ms []Member) {
			mu.Lock()
			defer mu.Unlock()
			last[name] = ms
		}
	})

	for _, n := range nodes {
		alive := n.Alive()
		require.Len(t, alive, 3, "%s.Alive()", n.cfg.Name)
		for i, m := range alive {
			want := fmt.Sprintf("n%d", i)
			assert.Equal(t, want, m.Name, "%s.Alive()[%d].Name", n.cfg.Name, i)
			assert.Equal(t, "grpc."+want+":9090", m.GRPCAddr, "%s sees %s.GRPCAddr", n.cfg.Name, want)
			assert.Equal(t, nodes[i].GossipAddr(), m.Addr, "%s sees %s.Addr", n.cfg.Name, want)
			assert.Equal(t, StateAlive, m.State, "%s sees %s.State", n.cfg.Name, want)
			assert.Equal(t, n == nodes[i], m.Self, "%s sees %s.Self", n.cfg.Name, want)
		}
		// Join's answer can come after the members it brought are seen.
		assert.Eventually(t, n.Joined, waitFor, tick, "%s.Joined()", n.cfg.Name)
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range nodes {
			if len(last[n.cfg.Name]) != 3 {
				return false
			}
		}
		return true
	}, waitFor, tick, "OnMembers never reported 3 members on every node")
}

func TestHealthSpreadsToAllNodes(t *testing.T) {
	nodes := startNodes(t, 5)
	s, changed := nodes[2].cfg.Health.Set(health.Degraded, time.Now())
	require.True(t, changed)
	took := waitState(t, nodes, keyOf(s))
	t.Logf("DEGRADED set on n2 reached all 5 nodes in %s", took)
	assert.Less(t, took, time.Second, "health state took %s to reach every node", took)

	s, _ = nodes[4].cfg.Health.Set(health.Normal, time.Now())
	took = waitState(t, nodes, keyOf(s))
	t.Logf("NORMAL set on n4 reached all 5 nodes in %s", took)
	assert.Less(t, took, time.Second, "health state took %s to reach every node", took)
}

func TestConcurrentSetsConverge(t *testing.T) {
	nodes := startNodes(t, 5)
	var wg sync.WaitGroup
	for _, w := range []*Node{nodes[1], nodes[3]} {
		wg.Go(func() {
			for i := range 10 {
				w.cfg.Health.Set(health.Status(i%2^1), time.Now())
			}
		})
	}
	wg.Wait()

	// Every node must end on the newest state any node holds.
	var want health.State
	for _, n := range nodes {
		if s := n.cfg.Health.Current(); s.Newer(want) {
			want = s
		}
	}
	took := waitState(t, nodes, keyOf(want))
	t.Logf("converged on %+v in %s", keyOf(want), took)
}

func TestLateJoinerLearnsState(t *testing.T) {
	nodes := startNodes(t, 3)
	s, _ := nodes[1].cfg.Health.Set(health.Degraded, time.Now())
	waitState(t, nodes, keyOf(s))

	cfg := testConfig("n3")
	cfg.Join = []string{nodes[0].GossipAddr()}
	late := startNode(t, cfg)
	waitState(t, []*Node{late}, keyOf(s))
	requireAlive(t, append(nodes, late), 4)
}

func TestLeaveIsSeenQuickly(t *testing.T) {
	nodes := startNodes(t, 3)
	start := time.Now()
	require.NoError(t, nodes[2].Leave(time.Second))
	requireAlive(t, nodes[:2], 2)
	t.Logf("peers dropped n2 %s after Leave was called", time.Since(start))
	for _, n := range nodes[:2] {
		m, ok := member(n, "n2")
		require.True(t, ok, "%s.Members() lost n2", n.cfg.Name)
		assert.Equal(t, StateLeft, m.State, "%s sees n2.State", n.cfg.Name)
	}
	require.NoError(t, nodes[2].Leave(time.Second), "second Leave")
	require.NoError(t, nodes[2].Close())
	require.NoError(t, nodes[2].Close(), "second Close")
	assert.ErrorIs(t, nodes[2].Leave(time.Second), ErrClosed, "Leave after Close")
}

func TestCrashIsDetected(t *testing.T) {
	nodes := startNodes(t, 3, func(i int, c *Config) { c.ReconnectTimeout = time.Second })
	start := time.Now()
	require.NoError(t, nodes[2].Close())
	requireAlive(t, nodes[:2], 2)
	t.Logf("peers marked crashed n2 dead %s after Close", time.Since(start))
	for _, n := range nodes[:2] {
		m, ok := member(n, "n2")
		require.True(t, ok, "%s.Members() lost n2", n.cfg.Name)
		assert.Equal(t, StateDead, m.State, "%s sees n2.State", n.cfg.Name)
	}
	// After ReconnectTimeout the dead member is forgotten.
	require.Eventually(t, func() bool {
		_, ok0 := member(nodes[0], "n2")
		_, ok1 := member(nodes[1], "n2")
		return !ok0 && !ok1
	}, waitFor, tick, "n2 still in Members after ReconnectTimeout")
}

func TestEncryption(t *testing.T) {
	nodes := startNodes(t, 2, func(i int, c *Config) { c.SecretKey = "correct horse" })

	for _, key := range []string{"wrong horse", ""} {
		t.Run("key "+strconv.Quote(key), func(t *testing.T) {
			var logs logBuffer
			cfg := testConfig("intruder")
			cfg.SecretKey = key
			cfg.Join = []string{nodes[0].GossipAddr()}
			cfg.Logger = logs.logger()
			bad := startNode(t, cfg)
			// Wait for a few failed attempts instead of sleeping.
			require.Eventually(t, func() bool { return logs.count("join failed") >= 3 }, waitFor, tick,
				"intruder never reported failed joins; logs:\n%s", logs.String())
			assert.False(t, bad.Joined(), "intruder Joined()")
			assert.Len(t, bad.Alive(), 1, "intruder.Alive()")
			for _, n := range nodes {
				_, ok := member(n, "intruder")
				assert.False(t, ok, "%s knows the intruder", n.cfg.Name)
			}
			if key == "" {
				// On loopback only this host can reach it: said at Info.
				assert.Equal(t, 1, logs.count("level=INFO", "not encrypted"), "notes about no encryption")
			}
		})
	}
}

func TestConfigHashMismatch(t *testing.T) {
	var logs logBuffer
	nodes := startNodes(t, 3, func(i int, c *Config) {
		if i == 0 {
			c.Logger = logs.logger()
		}
		if i == 2 {
			c.ConfigHash = "hash-2"
		}
	})
	m, ok := member(nodes[0], "n2")
	require.True(t, ok)
	assert.Equal(t, "hash-2", m.ConfigHash, "n0 sees n2.ConfigHash")
	m, _ = member(nodes[0], "n1")
	assert.Equal(t, "hash-1", m.ConfigHash, "n0 sees n1.ConfigHash")
	assert.Equal(t, 1, logs.count("level=WARN", "different tier config", "peer=n2"), "warnings about n2")
	assert.Zero(t, logs.count("different tier config", "peer=n1"), "warnings about n1")

	// n2's metadata changes as it leaves: still one warning.
	require.NoError(t, nodes[2].Leave(time.Second))
	require.Eventually(t, func() bool {
		m, _ := member(nodes[0], "n2")
		return m.State == StateLeft
	}, waitFor, tick)
	assert.Equal(t, 1, logs.count("different tier config", "peer=n2"), "warnings about n2 after it left")
}

func TestSetConfigHashReachesPeers(t *testing.T) {
	var logs logBuffer
	nodes := startNodes(t, 3, func(i int, c *Config) {
		if i == 0 {
			c.Logger = logs.logger()
		}
	})
	require.NoError(t, nodes[2].SetConfigHash("hash-2", time.Second))
	assert.Equal(t, "hash-2", nodes[2].ConfigHash())
	for _, n := range nodes {
		require.Eventually(t, func() bool {
			m, _ := member(n, "n2")
			return m.ConfigHash == "hash-2"
		}, waitFor, tick, "%s did not see n2's new config hash", n.cfg.Name)
	}
	assert.Equal(t, 1, logs.count("level=WARN", "different tier config", "peer=n2"), "n0 warns once that n2 differs")

	// n0 reloads to the same file: n2 matches again, and n1 now differs.
	require.NoError(t, nodes[0].SetConfigHash("hash-2", time.Second))
	require.Eventually(t, func() bool {
		m, _ := member(nodes[1], "n0")
		return m.ConfigHash == "hash-2"
	}, waitFor, tick)
	require.NoError(t, nodes[1].SetConfigHash("hash-1b", time.Second))
	require.Eventually(t, func() bool {
		return logs.count("different tier config", "peer=n1") == 1
	}, waitFor, tick, "n0 warns that n1 differs from its new hash")
}

func TestQuorumCountsFailedMembersForAGrace(t *testing.T) {
	nodes := startNodes(t, 4)
	require.NoError(t, nodes[3].Leave(time.Second)) // left: out of the count at once
	require.NoError(t, nodes[3].Close())
	require.NoError(t, nodes[2].Close()) // failed: counted for the grace
	requireAlive(t, nodes[:2], 2)
	alive, known := nodes[0].Quorum(time.Now(), time.Minute)
	assert.Equal(t, 2, alive)
	assert.Equal(t, 3, known, "the failed member counts, the one that left does not")
	_, known = nodes[0].Quorum(time.Now().Add(time.Minute), time.Minute)
	assert.Equal(t, 2, known, "after the grace the failed member is gone too")
}
