// Command redisnode is a benchmark-only API instance that counts every key
// in one central Redis: the design tierlimit replaces. It serves the same
// endpoints as cmd/node (GET /test behind the real api.Limiter middleware,
// admin endpoints, probes, /metrics); only the Checker differs, doing one
// EVALSHA round trip per request to a Lua script that implements package
// bucket's sliding-window counter, through a go-redis client of -pool
// connections (see newClient).
//
// On a Redis error or a check slower than -redis-timeout it fails open and
// counts it in bench_redis_fail_open_total; see checker.
//
// It is not part of the product: bench/run.sh starts it to compare.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "redisnode:", err)
		os.Exit(1)
	}
}

// options is the parsed command line.
type options struct {
	configPath   string
	httpAddr     string
	redisAddr    string
	poolSize     int
	redisTimeout time.Duration
	nodeName     string
	adminToken   string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("redisnode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configPath, "config", "config/tiers.json", "tiers file")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP address")
	fs.StringVar(&o.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis address (host:port)")
	fs.IntVar(&o.poolSize, "pool", 64, "Redis connections, the most checks in flight at once")
	fs.DurationVar(&o.redisTimeout, "redis-timeout", 20*time.Millisecond,
		"deadline of one check, waiting for a connection included; then fail open (Envoy's rate-limit filter default: 20ms)")
	fs.StringVar(&o.nodeName, "node-name", host, "name of this instance in responses")
	fs.StringVar(&o.adminToken, "admin-token", "", "bearer token for /system/* (default: random)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.poolSize < 1 {
		return o, fmt.Errorf("-pool %d: want at least 1", o.poolSize)
	}
	if o.redisTimeout <= 0 {
		return o, fmt.Errorf("-redis-timeout %s: want > 0", o.redisTimeout)
	}
	if o.adminToken == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		o.adminToken = hex.EncodeToString(b[:])
	}
	return o, nil
}

// run serves until ctx ends, then drains.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("node", o.nodeName)
	tiers, err := config.Load(o.configPath)
	if err != nil {
		return err
	}
	rdb := newClient(o.redisAddr, o.poolSize, o.redisTimeout)
	defer func() { _ = rdb.Close() }()
	chk := newChecker(rdb, tiers.Window, o.redisTimeout, log)
	loadCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = chk.load(loadCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("redis %s: %w", o.redisAddr, err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "bench_redis_fail_open_total",
		Help: "Checks admitted without counting because Redis failed or was too slow.",
	}, func() float64 { return float64(chk.failOpen.Load()) }))
	decisions := api.NewMetrics(tiers.Names())
	reg.MustRegister(decisions)
	holder := health.NewHolder(o.nodeName)
	limiter := api.NewLimiter(api.Config{
		Keys:    tiers,
		Checker: chk,
		Health:  holder,
		Window:  tiers.Window,
		Metrics: decisions,
		Logger:  log,
	})
	handler := newMux(limiter, api.NewAdmin(api.AdminConfig{Token: o.adminToken, Health: holder, Node: o.nodeName, Logger: log}),
		tiers, o.nodeName, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	lis, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", o.httpAddr, err)
	}
	srv := api.NewHTTPServer(handler, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("redisnode started", "http_addr", lis.Addr().String(), "redis_addr", o.redisAddr,
		"pool", o.poolSize, "redis_timeout", o.redisTimeout.String(), "script_sha", chk.sha)

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
	log.Info("redisnode stopped", "fail_open_total", chk.failOpen.Load())
	return nil
}

// newMux returns the endpoints cmd/node serves, around lim.
func newMux(lim *api.Limiter, admin http.Handler, keys api.Keys, node string, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/test", lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tier, _ := keys.Lookup(r.Header.Get("X-Api-Key")) // canonical: Get takes it as it is
		api.WriteJSON(w, http.StatusOK, api.TestResponse{OK: true, Tier: tier.Name, Status: health.Normal.String(), Node: node})
	})))
	mux.Handle("/system/", admin)
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("/readyz", api.ReadyHandler(func() error { return nil }))
	mux.Handle("/metrics", metrics)
	return mux
}
