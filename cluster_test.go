package tierlimit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tierlimit/tierlimit/cluster"
	"github.com/tierlimit/tierlimit/cluster/clustertest"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/health"
	"github.com/tierlimit/tierlimit/ownership"
	"github.com/tierlimit/tierlimit/peer"
	"github.com/tierlimit/tierlimit/tierlimittest"
)

const testToken = "test-admin-token"

// testCluster is a set of in-process Limiters on loopback, each with its
// own 127.0.0.x address, real gossip and real gRPC.
type testCluster struct {
	t         *testing.T
	config    string
	nodes     []*node
	partition *clustertest.Partition
	grpcCut   *clustertest.Partition // by gRPC address
	forward   time.Duration
	steady    bool
	stateDir  string       // if set, node i keeps its state file there
	logs      slog.Handler // if set, every node logs here
	tune      func(i int, cfg *Config)
}

// node is one Limiter of a testCluster with the handler a service would
// mount: GET /test behind the middleware, /system/ for the admin
// endpoints, /metrics.
type node struct {
	*Limiter
	name    string
	handler http.Handler
}

// clusterOpts tune startCluster.
type clusterOpts struct {
	forwardTimeout time.Duration // default 1s: generous, so -race never forces a fallback
	clusterKey     string
	perTier        int // keys per tier in the config; default 50
	// steady uses slower failure detection, so that a loaded test machine
	// never declares a live node dead: tests that count exactly need
	// the ring to stay still.
	steady bool
	// stateFiles gives every node a state file.
	stateFiles bool
	// logs, if set, receives every node's log records (at Info and up).
	logs slog.Handler
	// tune, if set, changes node i's Config before it starts.
	tune func(i int, cfg *Config)
}

// startCluster starts n Limiters, node i on 127.0.0.(i+1) so that a
// partition can cut gossip and gRPC between groups, all joining node 0, and
// waits until every node sees n alive members.
func startCluster(t *testing.T, n int, co clusterOpts) *testCluster {
	t.Helper()
	if co.forwardTimeout == 0 {
		co.forwardTimeout = time.Second
	}
	if co.perTier == 0 {
		co.perTier = 50
	}
	c := &testCluster{t: t, config: tierlimittest.TiersFile(t, co.perTier), partition: clustertest.NewPartition(),
		grpcCut: clustertest.NewPartition(), forward: co.forwardTimeout, steady: co.steady, logs: co.logs, tune: co.tune}
	if co.stateFiles {
		c.stateDir = t.TempDir()
	}
	for range n {
		c.add(co.clusterKey)
	}
	c.waitMembers(n)
	// A node that just took keys over holds them to a share of their
	// limits until the hand-off from their previous owner lands (ownership
	// Imports); on a loaded machine that can outlast the joins. Tests
	// count from a settled cluster.
	require.Eventually(t, func() bool {
		for _, nd := range c.nodes {
			if nd.imports.Importing(time.Now()) {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "a node still holds keys it took over to their share")
	return c
}

// add starts one more node that joins the first.
func (c *testCluster) add(clusterKey string) *node {
	t := c.t
	t.Helper()
	i := len(c.nodes)
	ip := fmt.Sprintf("127.0.0.%d", i+1)
	tr, err := c.partition.NewTransport(ip)
	require.NoError(t, err)
	nd := c.start(i, ip+":0", ip+":0", tr, clusterKey, true)
	c.nodes = append(c.nodes, nd)
	return nd
}

// restart crashes node i and starts it again under its name at once,
// faster than failure detection: at its old gossip and gRPC addresses, or,
// with newAddr, on a new IP (a container that came back with another
// address). Its gossip then bypasses the partition. With join, it joins
// node 0 unless it is node 0.
func (c *testCluster) restart(i int, newAddr, join bool) *node {
	c.t.Helper()
	old := c.nodes[i]
	gossip, grpcAddr := old.node.GossipAddr(), old.endpoint.Addr().String()
	if newAddr {
		ip := fmt.Sprintf("127.0.0.%d", 100+i)
		gossip, grpcAddr = ip+":0", ip+":0"
	}
	old.kill()
	nd := c.start(i, gossip, grpcAddr, nil, old.cfg.ClusterKey, join)
	c.nodes[i] = nd
	return nd
}

// start starts node i with gossip on tr (nil: on gossipAddr itself) and
// gRPC on grpcAddr, joining node 0 if join.
func (c *testCluster) start(i int, gossipAddr, grpcAddr string, tr memberlist.Transport, clusterKey string, join bool) *node {
	t := c.t
	t.Helper()
	ip, _, err := net.SplitHostPort(grpcAddr)
	require.NoError(t, err)
	name := fmt.Sprintf("node-%d", i)
	mc := cluster.TestMemberlistConfig()
	if c.steady {
		mc.ProbeInterval, mc.ProbeTimeout, mc.SuspicionMult = time.Second, 500*time.Millisecond, 4
	}
	mc.Transport = tr
	log := slog.New(slog.DiscardHandler)
	switch {
	case c.logs != nil:
		log = slog.New(c.logs)
	case testing.Verbose():
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	reg := prometheus.NewRegistry()
	cfg := Config{
		TiersFile: c.config, NodeName: name, AdminToken: testToken, ClusterKey: clusterKey,
		ForwardTimeout: c.forward, MaxKeys: 100_000,
		GossipAddr: gossipAddr, GRPCAddr: grpcAddr,
		Memberlist: mc, RejoinInterval: 300 * time.Millisecond,
		// gRPC between nodes obeys grpcCut, keyed by the node's IP (each
		// node has its own loopback address).
		PeerDialer: c.grpcCut.Dialer(ip),
		Logger:     log,
		Registerer: reg,
	}
	if i > 0 && join {
		cfg.Join = []string{c.nodes[0].node.GossipAddr()}
	}
	if c.stateDir != "" {
		cfg.StateFile = filepath.Join(c.stateDir, name+".json")
	}
	if c.tune != nil {
		c.tune(i, &cfg)
	}
	lim, err := New(cfg)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/test", lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	})))
	mux.Handle("/system/", lim.AdminHandler())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	nd := &node{Limiter: lim, name: name, handler: mux}
	t.Cleanup(func() { _ = nd.Close(context.Background()) })
	return nd
}

// waitMembers waits until every running node sees want alive members.
func (c *testCluster) waitMembers(want int, nodes ...*node) {
	c.t.Helper()
	if nodes == nil {
		nodes = c.nodes
	}
	require.Eventually(c.t, func() bool {
		for _, n := range nodes {
			if n.ring.Len() != want {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "not every node sees %d members", want)
	// The ring is set part-way through applyMembers: wait for the rest of
	// it (the share this side applies, among others) to be done too.
	for _, n := range nodes {
		n.applyMu.Lock()
		//lint:ignore SA2001 an empty critical section is the barrier
		n.applyMu.Unlock()
	}
}

// serve sends r to nd and returns the response.
func serve(nd *node, r *http.Request) *http.Response {
	w := httptest.NewRecorder()
	nd.handler.ServeHTTP(w, r)
	return w.Result()
}

// get sends GET /test with key to nd and returns the status code and the
// X-RateLimit-Limit header.
func get(t *testing.T, nd *node, key string) (int, string) {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/test", nil)
	r.Header.Set("X-API-Key", key)
	resp := serve(nd, r)
	return resp.StatusCode, resp.Header.Get("X-RateLimit-Limit")
}

func setHealth(t *testing.T, nd *node, status string) {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/system/health", strings.NewReader(`{"status":"`+status+`"}`))
	r.Header.Set("Authorization", "Bearer "+testToken)
	require.Equal(t, http.StatusOK, serve(nd, r).StatusCode)
}

// cut partitions gossip and gRPC between the nodes of a and those of b.
func (c *testCluster) cut(a, b []*node) {
	var gossipA, gossipB, ipsA, ipsB, grpcA, grpcB []string
	for _, side := range []struct {
		nodes             []*node
		gossip, ips, grpc *[]string
	}{{a, &gossipA, &ipsA, &grpcA}, {b, &gossipB, &ipsB, &grpcB}} {
		for _, n := range side.nodes {
			*side.gossip = append(*side.gossip, n.node.GossipAddr())
			host, _, _ := net.SplitHostPort(n.endpoint.Addr().String())
			*side.ips = append(*side.ips, host)
			*side.grpc = append(*side.grpc, n.endpoint.Addr().String())
		}
	}
	c.partition.Block(gossipA, gossipB)
	c.grpcCut.Block(ipsA, grpcB)
	c.grpcCut.Block(ipsB, grpcA)
}

// keysOwnedByEach returns, for each node by index, a key of prefix-0 to
// prefix-(n-1) that it owns, as node 0 sees it.
func (c *testCluster) keysOwnedByEach(prefix string, n int) []string {
	keys := make([]string, len(c.nodes))
	found := 0
	for i := 0; found < len(keys) && i < n; i++ {
		key := fmt.Sprintf("%s-%d", prefix, i)
		if o := c.owner(key); keys[o] == "" {
			keys[o], found = key, found+1
		}
	}
	require.Equal(c.t, len(keys), found, "keys owned by every node among %s-0 to %s-%d", prefix, prefix, n-1)
	return keys
}

// owner returns the index of the node that owns key, as node 0 sees it.
func (c *testCluster) owner(key string) int {
	name, ok := c.nodes[0].ring.Owner(key)
	require.True(c.t, ok)
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	c.t.Fatalf("owner %q of %q is not a node", name, key)
	return -1
}

func TestClusterCountIsGlobalRoundRobin(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	// Keys owned by each of the three nodes, so every path is exercised:
	// local, and forwarded from both other nodes.
	for o, key := range c.keysOwnedByEach("free", 50) {
		admitted := 0
		for r := range 3 * 20 {
			code, limit := get(t, c.nodes[r%3], key)
			require.Contains(t, []int{200, 429}, code)
			assert.Equal(t, "20", limit)
			if code == 200 {
				admitted++
			}
		}
		assert.Equal(t, 20, admitted, "key %s owned by node-%d: admitted %d of 60, want exactly 20", key, o, admitted)
	}
	for _, n := range c.nodes {
		assert.Zero(t, n.fallback.Len(), "%s decided something locally", n.name)
	}
}

func TestClusterManyKeysConcurrently(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{perTier: 40, steady: true})
	const keysPerTier = 40
	type result struct{ admitted atomic.Int64 }
	results := map[string]*result{}
	var keys []string
	for i := range keysPerTier {
		for _, tier := range []string{"free", "pro"} {
			k := fmt.Sprintf("%s-%d", tier, i)
			keys = append(keys, k)
			results[k] = &result{}
		}
	}
	limits := map[string]int{"free": 20, "pro": 150}
	// burst sends each key part × L requests, keys interleaved, from 24
	// clients spread over the nodes.
	burst := func(part float64) {
		work := make(chan string, 1024)
		go func() {
			defer close(work)
			for round := range 225 {
				for _, k := range keys {
					tier := strings.SplitN(k, "-", 2)[0]
					if round < int(float64(limits[tier])*part) {
						work <- k
					}
				}
			}
		}()
		var wg sync.WaitGroup
		var sent atomic.Int64
		for w := range 24 {
			wg.Go(func() {
				i := w
				for k := range work {
					nd := c.nodes[i%3]
					i++
					code, _ := get(t, nd, k)
					sent.Add(1)
					if code == http.StatusOK {
						results[k].admitted.Add(1)
					} else {
						assert.Equal(t, http.StatusTooManyRequests, code)
					}
				}
			})
		}
		wg.Wait()
		require.Positive(t, sent.Load())
	}

	// 1.5 × L requests per key: never more than L admitted. Leases other
	// nodes still hold when the requests stop are hits counted but not
	// admitted yet.
	burst(1.5)
	for _, k := range keys {
		tier := strings.SplitN(k, "-", 2)[0]
		assert.LessOrEqual(t, results[k].admitted.Load(), int64(limits[tier]), "key %s", k)
	}
	// Within a lease's time they come back, and then the keys take exactly
	// L in all.
	require.Eventually(t, func() bool {
		n := 0
		for _, nd := range c.nodes {
			held, returning := nd.router.Leases()
			n += held + returning
		}
		return n == 0
	}, 5*time.Second, 10*time.Millisecond, "leases still held")
	burst(1)
	for _, n := range c.nodes {
		require.Zero(t, n.fallback.Len(), "%s decided some keys locally: the count cannot be exact", n.name)
		require.Equal(t, 3, n.ring.Len(), "%s: the ring changed during the test", n.name)
	}
	for _, k := range keys {
		tier := strings.SplitN(k, "-", 2)[0]
		assert.Equal(t, int64(limits[tier]), results[k].admitted.Load(), "key %s", k)
	}
}

// TestClusterHealthSpreadsEverywhere: a state set on one node reaches every
// node, which then applies its limits. How fast is measured, not asserted:
// `make plots` (the timeline in README, 175 ms for three nodes) and
// bench/scale.sh (0.58 s for 60 nodes) time it on real processes.
func TestClusterHealthSpreadsEverywhere(t *testing.T) {
	c := startCluster(t, 5, clusterOpts{})
	setHealth(t, c.nodes[2], "DEGRADED")
	want := c.nodes[2].health.Current()
	require.Equal(t, health.Degraded, want.Status)
	require.Eventually(t, func() bool {
		for _, n := range c.nodes {
			if n.health.Current() != want {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "DEGRADED set on node-2 did not reach every node")

	// Every node now applies the DEGRADED limit of the free tier.
	for i, n := range c.nodes {
		_, limit := get(t, n, fmt.Sprintf("free-%d", i))
		assert.Equal(t, "2", limit, "%s", n.name)
	}
}

func TestClusterConflictingHealthWritesConverge(t *testing.T) {
	c := startCluster(t, 4, clusterOpts{})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		writes []health.State
	)
	write := func(nd *node, status health.Status) {
		s, err := nd.SetHealth(status)
		require.NoError(t, err)
		mu.Lock()
		writes = append(writes, s)
		mu.Unlock()
	}
	wg.Go(func() { write(c.nodes[1], health.Degraded) })
	wg.Go(func() {
		write(c.nodes[3], health.Degraded)
		write(c.nodes[3], health.Normal)
	})
	wg.Wait()
	newest := writes[0]
	for _, s := range writes[1:] {
		if s.Newer(newest) {
			newest = s
		}
	}
	require.Eventually(t, func() bool {
		for _, n := range c.nodes {
			if n.health.Current() != newest {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "nodes did not converge on the newest of the writes, %+v", newest)
}

func TestClusterLateNodeLearnsTheState(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	setHealth(t, c.nodes[0], "DEGRADED")
	want := c.nodes[0].health.Current()
	late := c.add("")
	c.waitMembers(4)
	// With the new ring comes the new share: a whole cluster, whole limits.
	require.Equal(t, 1.0, late.router.Share(), "the late node still cuts every limit to the share it started with")
	require.Eventually(t, func() bool { return late.health.Current() == want },
		10*time.Second, 10*time.Millisecond, "the late node did not learn DEGRADED")
	_, limit := get(t, late, "free-7")
	assert.Equal(t, "2", limit)
}

// TestClusterNodeCrashIsAbsorbed: when a member crashes, the survivors
// answer every check of its keys, 200 or 429, and soon stop waiting on it:
// its breaker opens on each of them, so its keys are decided at once, while
// gossip still has it in the ring; then gossip drops it. No check waits on
// it until its caller gives up: each has a deadline of its own, 10 s, that
// none reaches (no fallback "canceled"). How long a check waits is not
// timed here, on a shared machine: ownership's
// TestRouterFallsBackToLocalShareOnTimeout pins it in synctest's virtual
// time (a hanging owner costs exactly the forward deadline, then its
// breaker opens and checks wait no more), and the kill scenario of
// chaos/processes.sh records the latencies of real processes under load.
func TestClusterNodeCrashIsAbsorbed(t *testing.T) {
	const forward = 5 * time.Millisecond
	c := startCluster(t, 3, clusterOpts{forwardTimeout: forward})
	// Keys owned by the node about to die.
	victim := c.nodes[2]
	var owned []string
	for i := 0; len(owned) < 10 && i < 50; i++ {
		if k := fmt.Sprintf("pro-%d", i); c.owner(k) == 2 {
			owned = append(owned, k)
		}
	}
	require.NotEmpty(t, owned)
	survivors := c.nodes[:2]
	victim.kill()

	check := func(nd *node, key string) int {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/test", nil)
		r.Header.Set("X-API-Key", key)
		return serve(nd, r).StatusCode
	}
	fallbacks := func(nd *node, reason string) float64 {
		return metricValue(t, nd.cfg.Registerer.(prometheus.Gatherer), "tierlimit_local_fallbacks_total", "reason", reason)
	}
	// Checks of the victim's keys, on both survivors in turn, until each has
	// skipped the victim with an open breaker (which only a member of the
	// ring has), and then until gossip has dropped it.
	requests := 0
	checkAll := func() {
		for _, k := range owned {
			for _, nd := range survivors {
				code := check(nd, k)
				requests++
				require.Contains(t, []int{http.StatusOK, http.StatusTooManyRequests}, code, "GET %s on %s after the crash", k, nd.name)
			}
		}
	}
	skipped := func() bool {
		return fallbacks(survivors[0], ownership.FallbackBreakerOpen) > 0 && fallbacks(survivors[1], ownership.FallbackBreakerOpen) > 0
	}
	gone := func() bool {
		return !slices.Contains(survivors[0].ring.Members(), victim.name) && !slices.Contains(survivors[1].ring.Members(), victim.name)
	}
	for _, until := range []struct {
		done func() bool
		what string
	}{{skipped, "the breaker opened on both survivors"}, {gone, "gossip dropped the victim on both survivors"}} {
		for deadline := time.Now().Add(10 * time.Second); !until.done(); {
			require.True(t, time.Now().Before(deadline), "after %d checks: not yet %s", requests, until.what)
			checkAll()
		}
	}
	checkAll() // the keys' new owners answer
	for _, nd := range survivors {
		assert.Zero(t, fallbacks(nd, ownership.FallbackCanceled), "%s: checks that waited until their caller gave up", nd.name)
		assert.Equal(t, 2, nd.ring.Len(), "%s: members in the ring", nd.name)
	}

	// The fallbacks are in the metrics, and so is the smaller cluster.
	m := scrape(t, c.nodes[0])
	assert.Contains(t, m, "tierlimit_cluster_members 2\n")
	assert.Regexp(t, `tierlimit_local_fallbacks_total\{reason="(error|timeout|breaker_open)"\} [1-9]`, m)
	assert.Regexp(t, `tierlimit_decisions_total\{outcome="allowed",tier="pro"\} [1-9]`, m)
}

// scrape returns nd's /metrics text.
func scrape(t *testing.T, nd *node) string {
	t.Helper()
	resp := serve(nd, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestClusterPartitionServesLocallyThenHeals(t *testing.T) {
	c := startCluster(t, 4, clusterOpts{forwardTimeout: 20 * time.Millisecond})
	a, b := c.nodes[:2], c.nodes[2:]
	c.cut(a, b)
	// Each side sees only itself once the failure detector has run.
	c.waitMembers(2, a...)
	c.waitMembers(2, b...)

	// Both sides keep serving, each with its own ring; neither holds a
	// strict majority of the 4 members, so each applies half of every limit:
	// a key gets L in all, not L per side.
	for _, n := range c.nodes {
		require.Eventually(t, func() bool { _, limit := get(t, n, "free-0"); return limit == "10" },
			10*time.Second, 5*time.Millisecond, "%s does not apply its share", n.name)
	}
	key := "free-3"
	admitted := 0
	for r := range 80 {
		code, limit := get(t, c.nodes[r%4], key)
		require.Contains(t, []int{200, 429}, code)
		assert.Equal(t, "10", limit, "each side of a 2+2 split applies half of L = 20")
		if code == 200 {
			admitted++
		}
	}
	assert.Equal(t, 20, admitted, "a 2+2 split admits L in all")
	for _, n := range c.nodes {
		assert.NoError(t, n.Ready(), "%s is not alone: it serves its share", n.name)
	}

	// Each side writes its own health state: side a more often, side b
	// once but last. The later write must win, not the side that wrote
	// more (a Lamport counter would give it to a).
	// Each of side a's writes is made once the side has the one before, so
	// they are ordered; two writes on two nodes within one millisecond
	// would be concurrent, ordered by origin.
	sideHas := func(status health.Status) func() bool {
		return func() bool { return a[0].Health() == a[1].Health() && a[0].Health().Status == status }
	}
	for i, status := range []health.Status{health.Degraded, health.Normal, health.Degraded} {
		_, err := a[i%2].SetHealth(status)
		require.NoError(t, err)
		require.Eventually(t, sideHas(status), 5*time.Second, 10*time.Millisecond, "side a did not agree on write %d", i)
	}
	// b's write must be stamped a later millisecond than a's last one.
	last := a[0].Health().Stamped()
	require.Eventually(t, func() bool { return time.Now().UnixMilli() > last.UnixMilli() },
		time.Second, time.Millisecond, "the clock did not pass side a's last write")
	setHealth(t, b[0], "NORMAL")

	c.partition.Heal()
	c.grpcCut.Heal()
	c.waitMembers(4)
	require.Eventually(t, func() bool {
		first := c.nodes[0].health.Current()
		for _, n := range c.nodes[1:] {
			if n.health.Current() != first {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "health did not converge after the partition healed")
	assert.Equal(t, health.Normal, c.nodes[0].health.Current().Status, "side b's later write wins after the heal")
	assert.Equal(t, "node-2", c.nodes[0].health.Current().Origin)
	for _, n := range c.nodes {
		assert.Equal(t, c.nodes[0].ring.Members(), n.ring.Members())
	}
}

func TestClusterKeyKeepsStrangersOut(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{clusterKey: "correct horse battery staple"})
	code, _ := get(t, c.nodes[0], "free-1")
	require.Equal(t, 200, code)

	// A node without the key cannot join.
	stranger := c.add("")
	assert.Never(t, func() bool { return stranger.ring.Len() > 1 || c.nodes[0].ring.Len() > 2 },
		time.Second, 50*time.Millisecond, "a node without the cluster key joined")

}

// TestClusterStopsCleanlyAllAtOnce: when every node stops at the same time
// (docker compose down), no peer is left to confirm a leave; each node
// still stops cleanly and in bounded time.
func TestClusterStopsCleanlyAllAtOnce(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, nd := range c.nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			errs[i] = nd.Close(ctx)
		})
	}
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the nodes did not stop")
	}
	for i, err := range errs {
		assert.NoError(t, err, "stop of node %d", i)
	}
}

// TestStopEndsPeerStreams: a peer keeps a stream open to the node, and
// neither leaves nor hears that the node leaves (it is not in the cluster);
// the node still stops well within its grace period, since it asks the
// peer to end the stream rather than wait for it.
func TestStopEndsPeerStreams(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{})
	nd := c.nodes[0]
	client, err := peer.NewClient(nd.endpoint.Addr().String(), insecure.NewCredentials())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = client.Check(ctx, []forward.Item{{Key: "free-1", Hits: 1, Limit: 10, Window: nd.store.Window()}})
	require.NoError(t, err, "Check on the node's stream")

	sctx, scancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer scancel()
	require.NoError(t, nd.Close(sctx))
	assert.NoError(t, sctx.Err(), "Close waited until its context ended: the peer's stream was not ended")
}

func TestGRPCAdvertise(t *testing.T) {
	tests := []struct {
		advertise, grpcAddr string
		port                int
		want                string
	}{
		{"", ":9090", 9090, ":9090"},
		{"", "0.0.0.0:9090", 9090, ":9090"},
		{"", "[::]:0", 4000, ":4000"},
		{"", "127.0.0.2:0", 4000, "127.0.0.2:4000"},
		{"10.0.0.7", ":9090", 9090, "10.0.0.7:9090"},
		{"node-a.svc", "0.0.0.0:9090", 9090, "node-a.svc:9090"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, grpcAdvertise(tt.advertise, tt.grpcAddr, tt.port),
			"grpcAdvertise(%q, %q, %d)", tt.advertise, tt.grpcAddr, tt.port)
	}
}

// TestClusterMinoritySideAppliesItsShare: a node cut off from the other two
// of three keeps serving, but with a third of each limit, and is not ready;
// the majority keeps full limits. A key then gets at most L + ceil(L/3).
func TestClusterMinoritySideAppliesItsShare(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{forwardTimeout: 20 * time.Millisecond})
	majority, lone := c.nodes[:2], c.nodes[2]
	c.cut(majority, []*node{lone})
	c.waitMembers(2, majority...)
	c.waitMembers(1, lone)
	require.Eventually(t, func() bool { _, limit := get(t, lone, "pro-0"); return limit == "50" },
		10*time.Second, 5*time.Millisecond, "the lone node does not apply its share")

	admitted := 0
	for r := range 90 {
		nd := c.nodes[r%3]
		code, limit := get(t, nd, "pro-7")
		require.Contains(t, []int{200, 429}, code)
		want := "150"
		if nd == lone {
			want = "50"
		}
		assert.Equal(t, want, limit, "%s: X-RateLimit-Limit", nd.name)
		if code == 200 {
			admitted++
		}
	}
	assert.LessOrEqual(t, admitted, 150+50, "a 2+1 split admits at most L + ceil(L/3)")
	assert.ErrorContains(t, lone.Ready(), "alone")
	for _, n := range majority {
		assert.NoError(t, n.Ready())
	}

	c.partition.Heal()
	c.grpcCut.Heal()
	c.waitMembers(3)
	require.Eventually(t, func() bool { return lone.Ready() == nil }, 5*time.Second, 10*time.Millisecond)
	_, limit := get(t, lone, "pro-8")
	assert.Equal(t, "150", limit, "full limits again after the heal")
}

// useUp sends requests for keys round-robin over nodes until each got its
// limit and returns the keys. Hits still held in leases when a key's
// owner first refuses it are admitted once the leases are back: then
// every key is at its limit, with nothing held anywhere.
func useUp(t *testing.T, nodes []*node, tier string, n, limit int) []string {
	t.Helper()
	var keys []string
	admitted := map[string]int{}
	send := func(key string, requests int) {
		for r := range requests {
			if code, _ := get(t, nodes[r%len(nodes)], key); code == http.StatusOK {
				admitted[key]++
			}
		}
	}
	for i := range n {
		key := fmt.Sprintf("%s-%d", tier, i)
		keys = append(keys, key)
		send(key, limit+1)
	}
	waitLeasesBack(t, nodes)
	for _, key := range keys {
		send(key, limit-admitted[key]+len(nodes))
		require.Equal(t, limit, admitted[key], "key %s before the change", key)
	}
	waitLeasesBack(t, nodes)
	return keys
}

// readmitted sends each key to every node twice and returns how many of
// those requests were admitted: a used-up key must get none.
func readmitted(t *testing.T, nodes []*node, keys []string) int {
	t.Helper()
	n := 0
	for _, key := range keys {
		for range 2 {
			for _, nd := range nodes {
				if code, _ := get(t, nd, key); code == http.StatusOK {
					n++
				}
			}
		}
	}
	return n
}

// TestClusterGracefulLeaveKeepsCounts: a node that leaves hands the counts
// of its keys to their new owners, and so do the survivors whose keys the
// bounded-load ring moves: no used-up key is admitted again.
func TestClusterGracefulLeaveKeepsCounts(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	keys := useUp(t, c.nodes, "free", 12, 20)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[2].Close(ctx))
	c.waitMembers(2, c.nodes[:2]...)
	assert.Zero(t, readmitted(t, c.nodes[:2], keys), "used-up keys admitted again after a graceful leave")
}

// TestClusterJoinKeepsCounts: when a node joins, the keys it now owns come
// to it with their counts.
func TestClusterJoinKeepsCounts(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	keys := useUp(t, c.nodes, "free", 12, 20)
	c.add("")
	c.waitMembers(4)
	moved := 0
	for _, key := range keys {
		if c.owner(key) == 3 {
			moved++
		}
	}
	require.Positive(t, moved, "no key moved to the new node; the test proves nothing")
	require.Eventually(t, func() bool { return c.nodes[3].store.Len() >= moved }, 5*time.Second, 10*time.Millisecond,
		"the new node did not get the counts of its %d keys", moved)
	assert.Zero(t, readmitted(t, c.nodes, keys), "used-up keys admitted again after a join (%d moved to the new node)", moved)
}

// TestClusterCrashRestoresFromBackup: the counts of a node that dies are
// where the new owners of its keys start, from the copies it sent.
func TestClusterCrashRestoresFromBackup(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	keys := useUp(t, c.nodes, "pro", 8, 150)
	owned := c.backedUp(2, keys)
	c.nodes[2].kill()
	c.waitMembers(2, c.nodes[:2]...)
	require.Eventually(t, func() bool {
		return metricValue(t, c.nodes[0].cfg.Registerer.(prometheus.Gatherer), "tierlimit_counts_restored_total")+
			metricValue(t, c.nodes[1].cfg.Registerer.(prometheus.Gatherer), "tierlimit_counts_restored_total") >= float64(owned+1)
	},
		5*time.Second, 10*time.Millisecond, "the survivors did not take over the victim's counts")
	// The survivors may also move keys between them (bounded loads): wait
	// until every key is with one of them.
	require.Eventually(t, func() bool { return c.nodes[0].store.Len()+c.nodes[1].store.Len() == len(keys)+1 },
		5*time.Second, 10*time.Millisecond, "the survivors do not hold all %d keys and the probe", len(keys))
	assert.Zero(t, readmitted(t, c.nodes[:2], keys), "used-up keys admitted again after their owner crashed")
}

// TestClusterRestartBeforeDetectionKeepsCounts: a node that crashes and is
// restarted at its address at once, as a supervisor does, is back before
// its peers notice: the ring never changes, and the restarted owner starts
// from the copies it sent before the crash, not from zero.
func TestClusterRestartBeforeDetectionKeepsCounts(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	keys := useUp(t, c.nodes, "pro", 8, 150)
	owned := c.backedUp(2, keys)
	restarted := c.restart(2, false, true)
	c.waitMembers(3)
	// The copies come back once the new process shows itself: by a probe's
	// ack, its metadata, or its first backup.
	for _, key := range keys {
		if c.owner(key) == 2 {
			get(t, restarted, key)
		}
	}
	c.waitRestored(owned)
	assert.Zero(t, readmitted(t, c.nodes, keys), "used-up keys admitted again after their owner restarted")
}

// TestClusterRestartAtNewAddressIsFollowed: a node restarted at once at a
// new address is where its peers send its keys within 5 s, although
// memberlist gives its name to the new address only once the old one has
// been dead for a while; it learns the health state, and its keys keep
// their counts.
func TestClusterRestartAtNewAddressIsFollowed(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	setHealth(t, c.nodes[0], "DEGRADED")
	require.Eventually(t, func() bool {
		for _, nd := range c.nodes {
			if nd.Health().Status != Degraded {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "DEGRADED did not reach every node")
	keys := useUp(t, c.nodes, "pro", 8, tierlimittest.ProDegraded)
	owned := c.backedUp(2, keys)
	restarted := c.restart(2, true, true)
	start := time.Now()
	want := restarted.endpoint.Addr().String()
	require.Eventually(t, func() bool {
		for _, nd := range c.nodes[:2] {
			i := slices.IndexFunc(nd.node.Alive(), func(m cluster.Member) bool { return m.Name == "node-2" && m.GRPCAddr == want })
			if i < 0 {
				return false
			}
		}
		return restarted.ring.Len() == 3 && restarted.Health().Status == Degraded
	}, 5*time.Second, 10*time.Millisecond, "the peers do not send to the restarted node at %s, or it is behind", want)
	t.Logf("peers followed the new address after %v", time.Since(start).Round(time.Millisecond))
	for _, key := range keys {
		if c.owner(key) == 2 {
			get(t, restarted, key)
		}
	}
	c.waitRestored(owned)
	assert.Zero(t, readmitted(t, c.nodes, keys), "used-up keys admitted again after their owner restarted elsewhere")
}

// waitRestored waits until the nodes have given back the copies of at
// least n keys to their owners.
func (c *testCluster) waitRestored(n int) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		sum := 0.0
		for _, nd := range c.nodes {
			sum += metricValue(c.t, nd.cfg.Registerer.(prometheus.Gatherer), "tierlimit_counts_restored_total")
		}
		return sum >= float64(n)
	}, 5*time.Second, 10*time.Millisecond, "the copies of %d keys did not go back to their owners", n)
}

// TestClusterRestartAtNewAddressWithoutSeedsFindsItsPeers: a node
// restarted at a new address with no seeds finds its peers from its state
// file, and is not ready until it has.
func TestClusterRestartAtNewAddressWithoutSeedsFindsItsPeers(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true, stateFiles: true})
	setHealth(t, c.nodes[0], "DEGRADED")
	path := filepath.Join(c.stateDir, "node-2.json")
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		d, err := decodeState(b)
		return err == nil && len(d.Members) == 2 && d.Health.Status == Degraded
	}, 5*time.Second, 10*time.Millisecond, "node-2's state file does not hold its 2 peers and the state")
	restarted := c.restart(2, true, false)
	start := time.Now()
	require.Eventually(t, func() bool {
		return restarted.ring.Len() == 3 && restarted.Ready() == nil
	}, 5*time.Second, 10*time.Millisecond, "the restarted node did not find its peers: ready: %v", restarted.Ready())
	t.Logf("found its peers after %v", time.Since(start).Round(time.Millisecond))
	c.waitMembers(3)
}

// TestReadyWaitsForTheMembersOfTheStateFile: a node whose state file
// names two members is, while alone, a minority for QuorumGrace: not
// ready, and held to its share of each limit.
func TestReadyWaitsForTheMembersOfTheStateFile(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	require.NoError(t, os.WriteFile(state, []byte(`{"health":{"status":"NORMAL"},"members":["127.0.0.1:1","127.0.0.1:2"]}`), 0o600))
	l, _ := newSingle(t, tenSecondTiers, func(c *Config) {
		c.StateFile, c.GossipAddr, c.GRPCAddr, c.QuorumGrace = state, "127.0.0.1:0", "127.0.0.1:0", time.Second
	})
	err := l.Ready()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "alone: the 2 other members known within the last 1s are unreachable")
	assert.Equal(t, "17", hit(t, l, "pro-1").Header().Get("X-RateLimit-Limit"), "its share, ceil(50 / 3)")
	require.Eventually(t, func() bool { return l.Ready() == nil }, 5*time.Second, 10*time.Millisecond,
		"still not ready after QuorumGrace: the cluster is itself")
}

// TestClusterLocalDecisionsJoinTheOwnersCount: a node that cannot reach a
// key's owner while gossip still has it alive (a slow or half-cut peer)
// decides alone against its share. Those hits join the owner's count once
// it can be reached, although the ring never changes: the key gets L in all.
func TestClusterLocalDecisionsJoinTheOwnersCount(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{forwardTimeout: 20 * time.Millisecond, steady: true})
	key := ownedBy(t, c, 2, "free")
	limit := tierlimittest.FreeBurst
	share := (limit + 2) / 3
	c.grpcCut.Block([]string{"127.0.0.1"}, []string{c.nodes[2].endpoint.Addr().String()})
	local := 0
	for range limit {
		if code, _ := get(t, c.nodes[0], key); code == http.StatusOK {
			local++
		}
	}
	require.Equal(t, share, local, "node 0 decides alone against its share")
	c.grpcCut.Heal()
	require.Eventually(t, func() bool {
		return c.nodes[2].store.Take(time.Now(), key, 0, limit).Remaining == limit-share
	}, 5*time.Second, 10*time.Millisecond, "node 0's %d hits did not reach the owner's count", share)
	owner := 0
	for range limit {
		if code, _ := get(t, c.nodes[2], key); code == http.StatusOK {
			owner++
		}
	}
	assert.Equal(t, limit-share, owner, "the owner admits what is left of L")
}

// backedUp waits until the other nodes hold copies of every key of keys
// that node i owns, and for two more backup rounds, so that the copies hold
// the last hits too (a crash loses what the round after it would have
// sent). It returns how many of keys node i owns; the last round adds a
// probe key that node i owns to its store.
func (c *testCluster) backedUp(i int, keys []string) int {
	t := c.t
	t.Helper()
	victim := c.nodes[i]
	owned := 0
	for _, key := range keys {
		if c.owner(key) == i {
			owned++
		}
	}
	require.Positive(t, owned, "node %d owns none of the keys; the test proves nothing", i)
	copies := func() int {
		n := 0
		for j, nd := range c.nodes {
			if j != i {
				n += nd.keeper.CopiesOf(victim.name)
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return copies() == owned },
		5*time.Second, 10*time.Millisecond, "the %d keys of node %d were not backed up", owned, i)
	sent := func() float64 {
		return metricValue(t, victim.cfg.Registerer.(prometheus.Gatherer), "tierlimit_counts_moved_total", "kind", "backup", "result", "ok")
	}
	probe := "probe"
	for j := 0; c.owner(probe) != i; j++ { // heirs keep copies only of keys their sender owns
		probe = "probe-" + strconv.Itoa(j)
	}
	for range 2 {
		before := sent()
		victim.store.Take(time.Now(), probe, 1, 1000) // a change, so that a round sends something
		require.Eventually(t, func() bool { return sent() > before }, 5*time.Second, 10*time.Millisecond, "no backup round")
	}
	return owned
}

// TestClusterCutOffOwnerThatForwardsNothingFencesItself: a node cut off
// from a majority applies its share to the keys it owns within a second or
// so, even when its clients hit only those keys, so that nothing it
// forwards fails: it has not heard from the others (calls or pings), and
// that alone fences it. Before, it kept the full limit until failure
// detection dropped its peers, and both sides admitted a whole limit.
func TestClusterCutOffOwnerThatForwardsNothingFencesItself(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{steady: true})
	majority, lone := c.nodes[:2], c.nodes[2]
	own := ownedBy(t, c, 2, "pro")
	c.cut(majority, []*node{lone})
	require.Eventually(t, func() bool {
		_, limit := get(t, lone, own)
		return limit == "50"
	}, 5*time.Second, 20*time.Millisecond, "the cut-off owner kept its full limit")
	assert.Equal(t, 3, lone.ring.Len(), "failure detection had not dropped the peers yet: this came from the missing contact")
	for _, n := range majority {
		_, limit := get(t, n, "pro-9")
		assert.Equal(t, "150", limit, "%s, on the majority side, keeps the full limit", n.name)
	}
}

// TestClusterCutOffNodeAppliesItsShareBeforeDetection: a node cut off from
// the others learns it from its own forwards failing (their breakers open)
// before failure detection drops its peers, and from then on counts even the
// keys it owns against its share. A steady cluster's failure detection takes
// seconds (about 5 s for three nodes), so a ring still of 3 once the share
// is in force shows that it came from the forwards; the wait's deadline is
// only there to end the test.
func TestClusterCutOffNodeAppliesItsShareBeforeDetection(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{forwardTimeout: 20 * time.Millisecond, steady: true})
	majority, lone := c.nodes[:2], c.nodes[2]
	own := ownedBy(t, c, 2, "pro")
	remote := []string{ownedBy(t, c, 0, "pro"), ownedBy(t, c, 1, "pro")}
	c.cut(majority, []*node{lone})
	start := time.Now()
	require.Eventually(t, func() bool {
		for _, k := range remote {
			get(t, lone, k) // traffic for the other owners' keys is what shows the cut
		}
		_, limit := get(t, lone, own)
		return limit == "50"
	}, 10*time.Second, 20*time.Millisecond, "the cut-off node did not apply its share to its own key")
	took := time.Since(start)
	assert.Equal(t, 3, lone.ring.Len(), "failure detection had not dropped the peers yet: this came from the forwards")
	t.Logf("share applied %v after the cut", took.Round(time.Millisecond))
	for _, n := range majority {
		_, limit := get(t, n, "pro-9")
		assert.Equal(t, "150", limit, "%s, on the majority side, keeps the full limit", n.name)
	}
}

// TestClusterTwoNodeSurvivorStaysReady: the survivor of a 2-node cluster
// whose peer crashed is half of the members it knows, not a minority: it
// stays ready, so that a readiness-aware load balancer keeps sending it
// traffic. A crash looks the same as a cut, so it applies half of each
// limit until QuorumGrace has passed.
func TestClusterTwoNodeSurvivorStaysReady(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	survivor := c.nodes[0]
	c.nodes[1].kill()
	c.waitMembers(1, survivor)
	require.Eventually(t, func() bool { return survivor.alive.Load() == 1 }, 5*time.Second, 10*time.Millisecond,
		"the survivor's quorum does not count its peer out")
	require.Equal(t, int64(2), survivor.known.Load(), "the crashed peer counts as known for QuorumGrace")
	assert.NoError(t, survivor.Ready(), "the survivor of a 2-node cluster")
	_, limit := get(t, survivor, "pro-0")
	assert.Equal(t, "75", limit, "the survivor applies half of L = 150 for QuorumGrace")
}

// TestClusterTwoNodeSplitAdmitsOneLimit: the sides of a cut 2-node cluster
// cannot tell the cut from a crash. Both stay ready and apply half of each
// limit, so that a key gets L in all, not L per side.
func TestClusterTwoNodeSplitAdmitsOneLimit(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{forwardTimeout: 20 * time.Millisecond})
	c.cut(c.nodes[:1], c.nodes[1:])
	for _, n := range c.nodes {
		c.waitMembers(1, n)
		require.Eventually(t, func() bool { _, limit := get(t, n, "free-0"); return limit == "10" },
			10*time.Second, 5*time.Millisecond, "%s does not apply half of L = 20", n.name)
	}
	admitted := 0
	for r := range 60 {
		code, _ := get(t, c.nodes[r%2], "free-3")
		require.Contains(t, []int{200, 429}, code)
		if code == 200 {
			admitted++
		}
	}
	assert.Equal(t, 20, admitted, "a 1+1 split admits L in all")
	for _, n := range c.nodes {
		assert.NoError(t, n.Ready(), "%s, one side of a 1+1 split", n.name)
	}
}
