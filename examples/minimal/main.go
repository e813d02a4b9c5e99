// Command minimal is the smallest service that embeds the limiter: one
// handler behind the middleware, and the admin endpoints. Alone it counts
// on its own; with JOIN (gossip seeds) and CLUSTER_KEY set, its instances
// form a cluster and share one count per key.
package main

import (
	"cmp"
	"log"
	"net/http"
	"os"
	"strings"

	"github.com/tierlimit/tierlimit"
)

func main() {
	cfg := tierlimit.Config{
		TiersFile:  "config/tiers.json",      // tiers, limits and API keys
		AdminToken: os.Getenv("ADMIN_TOKEN"), // for POST /system/health
	}
	if seeds := os.Getenv("JOIN"); seeds != "" {
		cfg.GossipAddr, cfg.GRPCAddr = ":7946", ":9090"
		cfg.Join, cfg.ClusterKey = strings.Split(seeds, ","), os.Getenv("CLUSTER_KEY")
	}
	lim, err := tierlimit.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/transcribe", lim.Middleware(http.HandlerFunc(transcribe)))
	mux.Handle("/system/", lim.AdminHandler())
	log.Fatal(http.ListenAndServe(cmp.Or(os.Getenv("HTTP_ADDR"), ":8080"), mux))
}

// transcribe stands in for the GPU work.
func transcribe(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"text":"hello world"}` + "\n"))
}
