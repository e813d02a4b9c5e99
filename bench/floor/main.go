// Command floor is a benchmark-only API instance with no rate limiter: the
// floor every limiter is measured against. GET /test answers the same JSON
// as cmd/node's (api.TestResponse, with the key's tier when -config names
// it), with the same headers and the same http.Server (api.NewHTTPServer),
// but nothing counts, nothing is refused and no rate-limit headers are
// written. POST /upload reads the request's body whole and throws it away,
// answering how many bytes came: an upstream for measuring what a proxy
// holds in memory while a large upload passes through it.
//
// It is not part of the product: bench/run.sh starts it to compare.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then drains.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "HTTP address")
	configPath := fs.String("config", "", "tiers file, only to name the key's tier in the body (default: none)")
	nodeName := fs.String("node-name", host, "name of this instance in responses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("node", *nodeName)
	var keys api.Keys = noKeys{}
	if *configPath != "" {
		tiers, err := config.Load(*configPath)
		if err != nil {
			return err
		}
		keys = tiers
	}
	lis, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", *httpAddr, err)
	}
	srv := api.NewHTTPServer(newHandler(keys, *nodeName), log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("floor started", "http_addr", lis.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("drain http: %w", err)
	}
	return nil
}

// uploadTimeout bounds how long POST /upload may take to read its body.
const uploadTimeout = 5 * time.Minute

// uploadResponse is the body of POST /upload's answer.
type uploadResponse struct {
	OK    bool   `json:"ok"`
	Bytes int64  `json:"bytes"`
	Node  string `json:"node"`
}

// noKeys knows no key: the body's tier is left empty.
type noKeys struct{}

func (noKeys) Lookup(string) (config.Tier, bool) { return config.Tier{}, false }

// newHandler returns the floor's handler: GET /test, POST /upload, the
// probes, and 404 JSON for the rest.
func newHandler(keys api.Keys, node string) http.Handler {
	normal := health.Normal.String()
	mux := http.NewServeMux()
	mux.HandleFunc("/test", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			api.MethodNotAllowed(w, "GET, HEAD")
			return
		}
		tier, _ := keys.Lookup(r.Header.Get("X-Api-Key")) // canonical: Get takes it as it is
		api.WriteJSON(w, http.StatusOK, api.TestResponse{OK: true, Tier: tier.Name, Status: normal, Node: node})
	})
	ok := func(status string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			api.WriteJSON(w, http.StatusOK, map[string]string{"status": status})
		}
	}
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			api.MethodNotAllowed(w, "POST")
			return
		}
		// The server's ReadTimeout bounds a whole request; an upload of
		// hundreds of MB on a slow path may need longer.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadTimeout))
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			api.WriteError(w, http.StatusBadRequest, "bad_body", "reading the body: "+err.Error())
			return
		}
		api.WriteJSON(w, http.StatusOK, uploadResponse{OK: true, Bytes: n, Node: node})
	})
	mux.HandleFunc("/livez", ok("ok"))
	mux.HandleFunc("/readyz", ok("ready"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
	})
	return mux
}
