package tierlimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tierlimit/tierlimit"
)

// Three Limiters in one process form a cluster over real gossip and gRPC on
// loopback, and count one key once: 25 requests for a free key spread over
// the three get its burst of 20, then 429.
func Example() {
	dir, _ := os.MkdirTemp("", "tierlimit-example")
	defer os.RemoveAll(dir)
	tiers := filepath.Join(dir, "tiers.json")
	_ = os.WriteFile(tiers, []byte(`{"window_seconds": 60,
		"tiers": {"free": {"limit": 10, "burst": 20, "degraded": 2}},
		"api_keys": {"free-key": "free"}}`), 0o600)

	var nodes []*tierlimit.Limiter
	for i := range 3 {
		cfg := tierlimit.Config{
			TiersFile:  tiers,
			NodeName:   fmt.Sprintf("node-%d", i),
			GossipAddr: "127.0.0.1:0", // port 0: any free port
			GRPCAddr:   "127.0.0.1:0",
			ClusterKey: "example cluster key",
			// A generous deadline, so a busy machine never decides locally.
			ForwardTimeout: time.Second,
		}
		if i > 0 {
			cfg.Join = []string{nodes[0].Members()[0].Addr} // node-0's gossip address
		}
		lim, err := tierlimit.New(cfg)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer lim.Close(context.Background())
		nodes = append(nodes, lim)
	}
	for _, lim := range nodes { // wait until each sees all three
		for deadline := time.Now().Add(10 * time.Second); alive(lim) < 3 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}

	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "transcript") })
	codes := map[int]int{}
	for i := range 25 {
		r := httptest.NewRequest(http.MethodGet, "/v1/transcribe", nil)
		r.Header.Set("X-API-Key", "free-key")
		w := httptest.NewRecorder()
		nodes[i%3].Middleware(api).ServeHTTP(w, r)
		codes[w.Code]++
	}
	fmt.Println("200:", codes[200], "429:", codes[429])
	// Output: 200: 20 429: 5
}

// alive counts the members lim sees alive.
func alive(lim *tierlimit.Limiter) int {
	n := 0
	for _, m := range lim.Members() {
		if m.State == "alive" {
			n++
		}
	}
	return n
}

// A tier that limits what a GPU job costs, in audio-seconds: the
// middleware reserves the request's estimate (its Tierlimit-Cost header)
// and settles it with what the handler reports when it returns.
func ExampleReportCost() {
	dir, _ := os.MkdirTemp("", "tierlimit-example")
	defer os.RemoveAll(dir)
	tiers := filepath.Join(dir, "tiers.json")
	_ = os.WriteFile(tiers, []byte(`{"window_seconds": 60, "cost_unit": "audio-seconds",
		"tiers": {"free": {"limit": 10, "cost": {"limit": 600}}},
		"api_keys": {"free-key": "free"}}`), 0o600)
	lim, err := tierlimit.New(tierlimit.Config{TiersFile: tiers, NodeName: "solo"}) // one node: no GossipAddr
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lim.Close(context.Background())

	transcribe := lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ... run the job; it took 42 s of audio, not the 300 estimated
		tierlimit.ReportCost(r.Context(), 42)
	}))
	for _, estimate := range []string{"300", "300", "300"} {
		r := httptest.NewRequest(http.MethodPost, "/v1/transcribe", nil)
		r.Header.Set("X-API-Key", "free-key")
		r.Header.Set("Tierlimit-Cost", estimate)
		w := httptest.NewRecorder()
		transcribe.ServeHTTP(w, r)
		// RateLimit: "free";r=9;t=120, "free-cost";r=300;t=62
		_, cost, _ := strings.Cut(w.Header().Get("RateLimit"), ", ")
		cost, _, _ = strings.Cut(cost, ";t=")
		fmt.Println(w.Code, cost)
	}
	// Output:
	// 200 "free-cost";r=300
	// 200 "free-cost";r=258
	// 200 "free-cost";r=216
}
