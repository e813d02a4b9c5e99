// Command node runs one instance of the rate limiter: the library
// (package tierlimit) with the admin endpoints, probes and metrics, as one
// binary for people who want a binary, and for tests and demos. It puts
// the limiter in front of a service in any language in two ways, side by
// side: with -upstream URL it is a reverse proxy, checking every request
// but its own endpoints and passing the admitted ones to URL; and
// /authorize answers forward-auth checks (nginx auth_request, Envoy's
// ext_authz, Traefik's ForwardAuth, the Python middleware). Without
// -upstream it serves a demo endpoint, GET /test, behind the limiter.
//
// Every flag can also be set by an environment variable named after it in
// upper case with underscores: -http-addr is HTTP_ADDR. A flag given on the
// command line wins over its variable. SIGHUP reloads the tiers file;
// SIGINT and SIGTERM drain and stop.
//
// `node healthcheck` probes the local node's /readyz and exits 0 only if it
// answers 200; container images use it as their health check.
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
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tierlimit/tierlimit"
	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // the usage was asked for, and printed
		}
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
}

// options are the node's settings: the Limiter's, and the node's own.
type options struct {
	cfg      tierlimit.Config
	httpAddr string
	// upstream configures the reverse proxy; its Upstream is nil without
	// -upstream, and the node serves GET /test instead.
	upstream      proxy.Config
	shutdownGrace time.Duration
	logLevel      string
	logFormat     string
	// nameFromDNS names the node after its reverse-DNS name unless
	// -node-name or NODE_NAME was given (nodeNameSet).
	nameFromDNS, nodeNameSet bool
}

// parseOptions reads args (without the program name), then fills every flag
// not given on the command line from its environment variable.
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a mistake gets one line, from main, not the usage
	tierlimit.BindFlags(fs, &o.cfg)
	fs.StringVar(&o.httpAddr, "http-addr", ":8080", "HTTP listen address (env HTTP_ADDR)")
	fs.Var(urlFlag{&o.upstream.Upstream}, "upstream", "reverse-proxy mode: check every request but the node's own endpoints, then pass it to this http(s) URL, such as http://127.0.0.1:8000 (env UPSTREAM); empty serves the demo GET /test")
	tierlimit.DurationVar(fs, &o.upstream.DialTimeout, "upstream-dial-timeout", proxy.DefaultDialTimeout, "how long opening a connection to the upstream may take; then 502 (env UPSTREAM_DIAL_TIMEOUT)")
	tierlimit.DurationVar(fs, &o.upstream.ResponseTimeout, "upstream-response-timeout", proxy.DefaultResponseTimeout, "how long the upstream may take to begin its answer once it has the whole request; then 504. Set it above your longest synchronous job (env UPSTREAM_RESPONSE_TIMEOUT)")
	tierlimit.DurationVar(fs, &o.upstream.IdleTimeout, "proxy-idle-timeout", proxy.DefaultIdleTimeout, "how long a proxied request's client may leave its upload or its download without progress (env PROXY_IDLE_TIMEOUT)")
	tierlimit.DurationVar(fs, &o.shutdownGrace, "shutdown-grace", 10*time.Second, "how long in-flight requests may take to finish on shutdown (env SHUTDOWN_GRACE)")
	o.logLevel, o.logFormat = "info", "auto"
	fs.Var(choiceFlag{&o.logLevel, logLevels}, "log-level", "debug, info, warn or error (env LOG_LEVEL)")
	fs.Var(choiceFlag{&o.logFormat, logFormats}, "log-format", "json, text, or auto (text on a terminal) (env LOG_FORMAT)")
	tierlimit.BoolVar(fs, &o.nameFromDNS, "node-name-from-dns", false, "name the node after the reverse-DNS name of its address, as a compose replica's container name (env NODE_NAME_FROM_DNS); -node-name wins")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.Usage()
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := tierlimit.FlagsFromEnv(fs, getenv); err != nil {
		return o, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	set := func(name string) bool { return given[name] || getenv(tierlimit.EnvName(name)) != "" }
	o.nodeNameSet = set("node-name")
	if o.cfg.GossipAddr == "" && !set("grpc-addr") {
		// -gossip-addr "": a single node, with no peers to serve gRPC to.
		o.cfg.GRPCAddr = ""
	}
	if o.shutdownGrace < 0 {
		return o, fmt.Errorf("-shutdown-grace: %v is negative", o.shutdownGrace)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"upstream-dial-timeout", o.upstream.DialTimeout}, {"upstream-response-timeout", o.upstream.ResponseTimeout}, {"proxy-idle-timeout", o.upstream.IdleTimeout}} {
		if d.v <= 0 {
			return o, fmt.Errorf("-%s: %v is not positive", d.name, d.v)
		}
	}
	if u := o.upstream.Upstream; u != nil && upstreamIsSelf(o.httpAddr, u) {
		return o, fmt.Errorf("-upstream %s is this node's own -http-addr %s: every request would come back to it", u.Redacted(), o.httpAddr)
	}
	return o, nil
}

// upstreamIsSelf reports whether u is plainly the node's own listen
// address listen: the same port, on the same host or on loopback where the
// node listens on every address. Other loops (through a load balancer, a
// name, another node) the proxy finds at run time by its Via entry.
func upstreamIsSelf(listen string, u *url.URL) bool {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	upPort := u.Port()
	if upPort == "" {
		upPort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if upPort != port {
		return false
	}
	loopback := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "localhost" || ip != nil && ip.IsLoopback()
	}
	up := u.Hostname()
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return loopback(up)
	}
	return up == host || loopback(up) && loopback(host)
}

// run starts a node from args and the environment and serves until ctx
// ends, then shuts it down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], getenv, stderr)
	}
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	return serve(ctx, o, log)
}

// serve runs the node until ctx ends, reloading the tiers file on SIGHUP.
func serve(ctx context.Context, o options, log *slog.Logger) error {
	if o.cfg.AdminToken == "" {
		token := randomToken()
		path, err := saveToken(token, o.cfg.StateFile)
		if err != nil {
			// Without a token the admin endpoints refuse every request,
			// and the limiter serves all the same.
			log.Warn("no admin token given, and a generated one could not be saved: the admin endpoints refuse every request; set -admin-token or ADMIN_TOKEN",
				"err", err)
		} else {
			defer func() { _ = os.Remove(path) }() // the token dies with the process
			o.cfg.AdminToken = token
			log.Warn("no admin token given: generated one for this run and wrote it to admin_token_file, readable by this user only; set -admin-token or ADMIN_TOKEN to choose it",
				"admin_token_file", path)
		}
	}
	if o.nameFromDNS && !o.nodeNameSet {
		name, err := os.Hostname()
		if err == nil {
			name, err = dnsName(ctx, dnsResolver{}, name)
		}
		if err != nil {
			log.Warn("-node-name-from-dns: keeping the host name", "node", o.cfg.NodeName, "err", err)
		} else {
			o.cfg.NodeName = name
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.cfg.Logger, o.cfg.Registerer = log, reg
	lim, err := tierlimit.New(o.cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		_ = lim.Close(ctx)
		return fmt.Errorf("listen http %s: %w", o.httpAddr, err)
	}
	var app http.Handler // nil: the demo GET /test
	if o.upstream.Upstream != nil {
		o.upstream.Logger = log
		p, err := proxy.New(o.upstream)
		if err != nil {
			_ = lim.Close(ctx)
			return err
		}
		app = p
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tierlimit_upstream_failures_total",
			Help: "Requests admitted by the limiter that the upstream (-upstream) failed: 502 for no connection or a broken answer, 504 for no answer within -upstream-response-timeout, 508 for a request that came back to the node (-upstream leads to it).",
		}, func() float64 { return float64(p.Failures()) }))
	}
	srv := api.NewHTTPServer(newMux(lim, o.cfg.NodeName, o.cfg.Capacity, app, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})), log)
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	var self tierlimit.Member
	for _, m := range lim.Members() {
		if m.Self {
			self = m
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log.Info("node started", "node", o.cfg.NodeName, "http_addr", lis.Addr().String(),
		"gossip_addr", self.Addr, "grpc_addr", self.GRPCAddr, "upstream", upstreamAttr(o.upstream.Upstream))
	for ctx.Err() == nil {
		select {
		case <-hup:
			_ = lim.Reload() // logged, and counted in tierlimit_config_reloads_total
		case <-ctx.Done():
		}
	}

	log.Info("shutting down", "grace", o.shutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownGrace)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("drain http: %w", err))
	}
	if err := lim.Close(sctx); err != nil {
		errs = append(errs, err)
	}
	log.Info("node stopped")
	return errors.Join(errs...)
}

// newMux returns the node's HTTP handler. Its own endpoints:
//
//	     /system/health   GET the health state, POST to set it (admin token)
//	GET  /system/cluster  members and which one answered (admin token)
//	     /authorize[/…]   forward-auth: any method, 200, 401 or 429
//	POST /system/settle   ends a reservation /authorize kept open (Tierlimit-Settle: later)
//	GET  /livez, /readyz  probes, never rate limited
//	GET  /metrics         Prometheus text format
//
// Every other path goes through the rate limiter to app, or, when app is
// nil, to the demo endpoint GET /test (and other paths get 404), whose
// ?work= runs on capacity slots, the instance's GPUs, queueing beyond
// them (0: no limit).
//
// /authorize and the app's paths are routed on the path as it came, not
// through ServeMux, which would answer a path with "//" or ".." with a
// redirect: a proxy's check of /authorize/v1//x must be counted, not sent
// elsewhere, and the app decides what its own paths mean.
func newMux(lim *tierlimit.Limiter, node string, capacity int, app, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	if app == nil {
		gpus := newPool(capacity)
		limited := lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			work, cost, _ := demoJob(r.URL.Query()) // checked before the limiter
			if work > 0 && !gpus.run(r.Context(), work) {
				return // the client is gone: no answer, and the job failed
			}
			if cost >= 0 {
				tierlimit.ReportCost(r.Context(), cost)
			}
			// The canonical form of X-API-Key, which Get then takes as it is.
			tier, _ := lim.Tier(r.Header.Get("X-Api-Key"))
			api.WriteJSON(w, http.StatusOK, api.TestResponse{OK: true, Tier: tier.Name, Status: lim.Health().Status.String(), Node: node})
		}))
		mux.HandleFunc("/test", func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				api.MethodNotAllowed(w, "GET, HEAD") // refused before the limiter: not counted
				return
			}
			if _, _, err := demoJob(r.URL.Query()); err != nil {
				api.WriteError(w, http.StatusBadRequest, "invalid_query", err.Error()) // not counted
				return
			}
			limited.ServeHTTP(w, r)
		})
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			api.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
		})
	}
	mux.Handle("/system/", lim.AdminHandler())
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("/readyz", lim.ReadyHandler())
	mux.Handle("/metrics", metrics)

	authorize, settle := lim.AuthorizeHandler(), lim.SettleHandler()
	var limitedApp http.Handler
	if app != nil {
		limitedApp = lim.Middleware(app)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case under(p, "/authorize"):
			authorize.ServeHTTP(w, r)
		case p == "/system/settle":
			settle.ServeHTTP(w, r)
		case limitedApp != nil && !under(p, "/system") && p != "/livez" && p != "/readyz" && p != "/metrics":
			limitedApp.ServeHTTP(w, r)
		default:
			mux.ServeHTTP(w, r)
		}
	})
}

// under reports whether path is prefix or a path below it.
func under(path, prefix string) bool {
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// upstreamAttr is the upstream for the start log line: its URL without
// user info, or "" when the node serves /test.
func upstreamAttr(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}

// urlFlag is -upstream: an http or https URL with a host, or empty for
// none.
type urlFlag struct{ p **url.URL }

func (f urlFlag) String() string {
	if f.p == nil || *f.p == nil {
		return ""
	}
	return (*f.p).Redacted()
}

func (f urlFlag) Set(s string) error {
	if s == "" {
		*f.p = nil
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("the scheme must be http or https, as in http://127.0.0.1:8000")
	}
	if err := proxy.CheckUpstream(u); err != nil {
		return err
	}
	*f.p = u
	return nil
}

// maxDemoWork bounds GET /test's ?work=.
const maxDemoWork = 10 * time.Minute

// demoJob reads GET /test's stand-in for a GPU job from its query: work,
// how long to hold the request (?work=DURATION, such as 2s; 0 without),
// and cost, the actual cost to report (?cost=N; -1 without).
func demoJob(q url.Values) (work time.Duration, cost int, err error) {
	cost = -1
	if v := q.Get("work"); v != "" {
		work, err = time.ParseDuration(v)
		if err != nil || work < 0 || work > maxDemoWork {
			return 0, -1, fmt.Errorf("work: want a duration from 0 to %v, such as 2s, got %q", maxDemoWork, v)
		}
	}
	if v := q.Get("cost"); v != "" {
		cost, err = strconv.Atoi(v)
		if err != nil || cost < 0 || cost > 1_000_000_000 {
			return 0, -1, fmt.Errorf("cost: want a whole number from 0 to 1000000000, got %q", v)
		}
	}
	return work, cost, nil
}

// pool is the demo's GPUs: at most n jobs work at once, the others queue
// in the order they come (a channel's waiters), each until its client
// gives up.
type pool struct{ slots chan struct{} } // nil: no limit

func newPool(n int) *pool {
	if n <= 0 {
		return &pool{}
	}
	return &pool{slots: make(chan struct{}, n)}
}

// run waits for a slot, then works for d, and reports whether the job ran
// to its end (false: ctx ended first).
func (p *pool) run(ctx context.Context, d time.Duration) bool {
	if p.slots != nil {
		select {
		case p.slots <- struct{}{}:
			defer func() { <-p.slots }()
		case <-ctx.Done():
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
