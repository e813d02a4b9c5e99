package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
)

// node is one running instance: every component, wired together.
type node struct {
	log      *slog.Logger
	name     string
	tiers    *config.Tiers
	health   *health.Holder
	store    *bucket.Store
	registry *prometheus.Registry

	httpLis net.Listener
	httpSrv *http.Server

	// background work (sweeping) stops when stopBG is called.
	stopBG context.CancelFunc
	bg     sync.WaitGroup
}

// start builds a node from o and starts serving. The caller must call stop.
func start(ctx context.Context, o options, log *slog.Logger) (*node, error) {
	tiers, err := config.Load(o.configPath)
	if err != nil {
		return nil, err
	}
	token := o.adminToken
	if token == "" {
		token = randomToken()
		log.Warn("no admin token given: generated one for this run; set -admin-token or ADMIN_TOKEN to choose it",
			"admin_token", token)
	}
	n := &node{
		log:      log.With("node", o.nodeName),
		name:     o.nodeName,
		tiers:    tiers,
		health:   health.NewHolder(o.nodeName),
		store:    bucket.New(bucket.Config{Window: tiers.Window, MaxKeys: o.maxKeys}),
		registry: prometheus.NewRegistry(),
	}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.registerStoreMetrics()

	limiter := api.NewLimiter(api.Config{
		Keys:    tiers,
		Checker: api.Local{Store: n.store},
		Health:  n.health,
		Window:  tiers.Window,
		Metrics: api.NewMetrics(n.registry, tiers.Names()),
		Logger:  n.log,
	})
	handler := api.NewHandler(api.ServerConfig{
		Limiter:    limiter,
		AdminToken: token,
		NodeName:   o.nodeName,
		Metrics:    promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}),
		Logger:     n.log,
	})

	n.httpLis, err = net.Listen("tcp", o.httpAddr)
	if err != nil {
		return nil, fmt.Errorf("listen http %s: %w", o.httpAddr, err)
	}
	n.httpSrv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := n.httpSrv.Serve(n.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()

	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.stopBG = cancel
	n.bg.Go(func() { n.sweep(bgCtx) })

	n.log.Info("node started",
		"http_addr", n.httpLis.Addr().String(),
		"config", o.configPath, "config_hash", tiers.Hash(),
		"tiers", len(tiers.Names()), "api_keys", tiers.KeyCount(),
		"window", tiers.Window.String())
	return n, nil
}

// sweep reclaims expired keys about once a window.
func (n *node) sweep(ctx context.Context) {
	t := time.NewTicker(max(n.store.Window()/2, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if removed := n.store.Sweep(now); removed > 0 {
				n.log.Debug("swept expired keys", "removed", removed)
			}
		}
	}
}

func (n *node) registerStoreMetrics() {
	n.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_store_keys",
			Help: "Keys held in the counting store.",
		}, func() float64 { return float64(n.store.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tierlimit_store_evictions_total",
			Help: "Live keys dropped to keep the store under -max-keys.",
		}, func() float64 { return float64(n.store.Evicted()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_health_degraded",
			Help: "1 when the system state is DEGRADED, 0 when NORMAL.",
		}, func() float64 { return float64(n.health.Status()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tierlimit_health_version",
			Help: "Version of the health state in force.",
		}, func() float64 { return float64(n.health.Current().Version) }),
	)
}

// httpAddr returns the address the HTTP server listens on.
func (n *node) httpAddr() string { return n.httpLis.Addr().String() }

// stop drains HTTP (in-flight requests get up to grace to finish), then
// stops everything else.
func (n *node) stop(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var errs []error
	if err := n.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("drain http: %w", err))
	}
	n.stopBG()
	n.bg.Wait()
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
