package cluster

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reports records, per node, every gossip address its OnMembers reported
// alive for each member. It is safe for concurrent use.
type reports struct {
	mu    sync.Mutex
	addrs map[[2]string][]string // by (node, member)
}

// record returns the OnMembers of the node called node.
func (r *reports) record(node string) func([]Member) {
	return func(ms []Member) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.addrs == nil {
			r.addrs = make(map[[2]string][]string)
		}
		for _, m := range ms {
			k := [2]string{node, m.Name}
			if !slices.Contains(r.addrs[k], m.Addr) {
				r.addrs[k] = append(r.addrs[k], m.Addr)
			}
		}
	}
}

// of returns the addresses node's OnMembers reported for member.
func (r *reports) of(node, member string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.addrs[[2]string{node, member}])
}

// claimTimings slows the test preset's pings down for the nodes of a test
// of name claims, which are decided by whether a process answers a ping:
// under -race on a loaded machine, answers miss the preset's 50 ms
// ProbeTimeout often enough to take a live process for gone, and a join
// and its check take longer than New waits with its 500 ms TCPTimeout.
func claimTimings(_ int, c *Config) {
	c.Memberlist.ProbeInterval = 500 * time.Millisecond
	c.Memberlist.ProbeTimeout = 250 * time.Millisecond
	c.Memberlist.TCPTimeout = 2 * time.Second
}

// claimConfig is testConfig with claimTimings.
func claimConfig(name string) Config {
	c := testConfig(name)
	claimTimings(0, &c)
	return c
}

// requireAt waits until every node sees name alive at addr.
func requireAt(t *testing.T, nodes []*Node, name, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if m, ok := member(n, name); !ok || m.State != StateAlive || m.Addr != addr {
				return false
			}
		}
		return true
	}, waitFor, tick, "want %s alive at %s on every node", name, addr)
}

// TestNameInUseIsRefused: a node started under the name of a live member
// fails New with an error that names the name and the member's address,
// whichever members it joins through, and frees its port. The member keeps
// its name, and no node ever reports the name at the newcomer's address:
// one member's keys are never counted in two places.
func TestNameInUseIsRefused(t *testing.T) {
	tests := []struct {
		name  string
		seeds []int // the nodes the newcomer joins through; n1 holds the name
		// want is what each seed logs once it has dealt with the claim.
		want []string
	}{
		{"through the member itself", []int{1}, []string{"claims this node's name"}},
		{"through a third node", []int{0}, []string{"ignoring a claim", "peer=n1"}},
		{"several seeds", []int{0, 1, 2}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen reports
			logs := make([]*logBuffer, 3)
			nodes := startNodes(t, 3, claimTimings, func(i int, c *Config) {
				logs[i] = &logBuffer{}
				c.Logger = logs[i].logger()
				c.OnMembers = seen.record(c.Name)
			})
			held := nodes[1].GossipAddr()

			port := freePortOn(t, "127.0.0.2")
			claimed := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
			cfg := claimConfig("n1")
			cfg.BindAddr, cfg.BindPort = "127.0.0.2", port
			for _, i := range tt.seeds {
				cfg.Join = append(cfg.Join, nodes[i].GossipAddr())
			}
			dup, err := New(cfg)
			if dup != nil {
				t.Cleanup(func() { _ = dup.Close() })
			}
			require.Error(t, err, "New(n1 at %s, Join %v) while n1 runs at %s", claimed, cfg.Join, held)
			var conflict *NameConflictError
			require.ErrorAs(t, err, &conflict, "New(n1 at %s) = %v", claimed, err)
			assert.Equal(t, &NameConflictError{Name: "n1", Addr: held}, conflict)
			assert.EqualError(t, err, fmt.Sprintf(`cluster: node name "n1" is already used by the member at %s`, held))

			// Gossip was shut down: the port is free again.
			ln, err := net.Listen("tcp", claimed)
			require.NoError(t, err, "TCP port of the refused node")
			require.NoError(t, ln.Close())
			pc, err := net.ListenPacket("udp", claimed)
			require.NoError(t, err, "UDP port of the refused node")
			require.NoError(t, pc.Close())

			for _, i := range tt.seeds {
				want := tt.want
				if want == nil {
					want = []string{"ignoring a claim", "peer=n1"}
					if i == 1 {
						want = []string{"claims this node's name"}
					}
				}
				require.Eventually(t, func() bool { return logs[i].count(want...) > 0 }, waitFor, tick,
					"n%d never logged %q; logs:\n%s", i, want, logs[i].String())
			}
			assert.NoError(t, nodes[1].Err(), "n1.Err()")
			assert.True(t, nodes[1].Joined(), "n1.Joined()")
			requireAlive(t, nodes, 3)
			for _, n := range nodes {
				m, _ := member(n, "n1")
				assert.Equal(t, held, m.Addr, "%s sees n1.Addr", n.cfg.Name)
				assert.Equal(t, []string{held}, seen.of(n.cfg.Name, "n1"), "addresses %s's OnMembers reported for n1", n.cfg.Name)
			}
		})
	}
}

// TestRestartUnderItsOwnNameIsAccepted: a member that crashed and comes
// back under its name at once, at its address or at another one, starts,
// although its peers may not have noticed the crash yet: the process they
// know does not answer any more. They soon have it at its new address.
func TestRestartUnderItsOwnNameIsAccepted(t *testing.T) {
	tests := []struct {
		name    string
		ip      string
		newPort bool
	}{
		{"same address", "127.0.0.1", false},
		{"new address", "127.0.0.2", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			nodes := startNodes(t, 3, claimTimings, func(i int, c *Config) {
				if i == 2 {
					c.BindPort = port
				}
			})
			require.NoError(t, nodes[2].Close()) // a crash: no Leave

			cfg := claimConfig("n2")
			cfg.BindAddr, cfg.BindPort = tt.ip, port
			if tt.newPort {
				cfg.BindPort = freePortOn(t, tt.ip)
			}
			cfg.Join = []string{nodes[0].GossipAddr()}
			restarted, err := New(cfg)
			require.NoError(t, err, "New(n2 at %s:%d) after n2 crashed at %s", tt.ip, cfg.BindPort, nodes[2].GossipAddr())
			t.Cleanup(func() { assert.NoError(t, restarted.Close()) })

			all := []*Node{nodes[0], nodes[1], restarted}
			requireAt(t, all, "n2", restarted.GossipAddr())
			requireAlive(t, all, 3)
			assert.NoError(t, restarted.Err(), "restarted n2.Err()")
			assert.True(t, restarted.Joined(), "restarted n2.Joined()")
		})
	}
}

// TestEarlierProcessKeepsTheName: when the cluster took a name from the
// later of two processes (started at once, they raced through different
// seeds), the earlier one, once it meets the cluster, makes the later one
// give the name up: its gossip stops, Err says why, and the cluster ends
// up with the earlier process.
func TestEarlierProcessKeepsTheName(t *testing.T) {
	cfg := claimConfig("x")
	cfg.BindAddr = "127.0.0.2"
	earlier := startNode(t, cfg) // alone: no seeds
	nodes := startNodes(t, 2, claimTimings)
	var logs logBuffer
	cfg = claimConfig("x")
	cfg.Join = []string{nodes[0].GossipAddr()}
	cfg.Logger = logs.logger()
	later := startNode(t, cfg)
	requireAlive(t, []*Node{nodes[0], nodes[1], later}, 3)

	_, err := earlier.join([]string{nodes[0].GossipAddr()}) // it meets the cluster
	require.NoError(t, err)
	require.Eventually(t, func() bool { return later.Err() != nil }, waitFor, tick,
		"the later process kept the name; its logs:\n%s", logs.String())
	var conflict *NameConflictError
	require.ErrorAs(t, later.Err(), &conflict)
	assert.Equal(t, &NameConflictError{Name: "x", Addr: earlier.GossipAddr()}, conflict)
	assert.False(t, later.Joined(), "later.Joined() after it gave the name up")
	require.Eventually(t, func() bool { return logs.count("level=ERROR", "gave this node's name up") > 0 }, waitFor, tick,
		"the later process did not log that it gave the name up")
	assert.Equal(t, 1, logs.count("level=ERROR", "gave this node's name up"), "errors logged by the later process")
	assert.ErrorAs(t, later.Leave(time.Second), &conflict, "later.Leave() after it gave the name up")

	assert.NoError(t, earlier.Err(), "earlier.Err()")
	all := []*Node{nodes[0], nodes[1], earlier}
	requireAt(t, all, "x", earlier.GossipAddr())
	requireAlive(t, all, 3)
}

func TestPrecedes(t *testing.T) {
	tests := []struct {
		name         string
		aStart       int64
		aAddr        string
		bStart       int64
		bAddr        string
		want         bool
		wantReversed bool
	}{
		{"started first", 100, "10.0.0.9:7946", 200, "10.0.0.1:7946", true, false},
		{"same start, lower address", 100, "10.0.0.1:7946", 100, "10.0.0.2:7946", true, false},
		{"a start not published comes first", 0, "10.0.0.9:7946", 100, "10.0.0.1:7946", true, false},
		{"itself", 100, "10.0.0.1:7946", 100, "10.0.0.1:7946", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, precedes(tt.aStart, tt.aAddr, tt.bStart, tt.bAddr),
				"precedes(%d, %s, %d, %s)", tt.aStart, tt.aAddr, tt.bStart, tt.bAddr)
			assert.Equal(t, tt.wantReversed, precedes(tt.bStart, tt.bAddr, tt.aStart, tt.aAddr),
				"precedes(%d, %s, %d, %s)", tt.bStart, tt.bAddr, tt.aStart, tt.aAddr)
		})
	}
}
