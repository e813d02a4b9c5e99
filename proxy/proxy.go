// Package proxy is the reverse proxy that puts the rate limiter in front of
// a service written in any language: cmd/node -upstream URL serves every
// request that is not one of the node's own behind the middleware, and
// passes the admitted ones to URL with this package.
//
// It is net/http/httputil's ReverseProxy with what a sidecar in front of a
// GPU API needs: bodies stream both ways (an upload of hundreds of MB is
// never held in memory), X-Forwarded-For, -Host and -Proto are set, the
// node's rate-limit headers win over any the upstream sends, an upstream
// that is down or slow gets 502 or 504 in the limiter's JSON error shape,
// a client that stalls mid-body is cut after an idle timeout instead of a
// whole-request one, so that long uploads and long jobs pass, and a request
// that comes back to the proxy (its upstream leads to itself) gets 508,
// found by the Via entry the proxy adds.
//
// The package knows nothing of keys, tiers or counts: the middleware in
// front of it has decided before it runs.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/api"
)

// Defaults of Config fields left zero.
const (
	DefaultDialTimeout     = 5 * time.Second
	DefaultResponseTimeout = 5 * time.Minute
	DefaultIdleTimeout     = time.Minute
)

// Config configures a Proxy. Upstream is required.
type Config struct {
	// Upstream is the service's base URL, http or https: a request for
	// /v1/transcribe?x=1 goes to Upstream's path joined with
	// /v1/transcribe, with the query kept.
	Upstream *url.URL

	// DialTimeout bounds how long opening a connection to the upstream may
	// take. Default 5s.
	DialTimeout time.Duration

	// ResponseTimeout bounds how long the upstream may take, once the
	// request is sent whole, to begin its answer (its status line and
	// headers); after it the client gets 504. Set it above the longest job
	// the upstream answers synchronously. Default 5m.
	ResponseTimeout time.Duration

	// IdleTimeout bounds each wait on the client: for the next part of the
	// request's body, and for the client to take the next part of the
	// answer. It replaces the HTTP server's whole-request read and write
	// timeouts for proxied requests, so an upload or an answer may take as
	// long as it keeps moving. Default 1m.
	IdleTimeout time.Duration

	// Transport, if not nil, carries the requests to the upstream instead
	// of one built from DialTimeout and ResponseTimeout; for tests.
	Transport http.RoundTripper

	// Logger receives upstream failures at Warn, at most one line a second
	// with the count of those held back. Nil discards.
	Logger *slog.Logger
}

// ownHeaders are the rate-limit fields the middleware writes on every
// response it admits: an upstream's own fields of these names are dropped,
// so that a client never sees two values. Retry-After is not among them:
// the middleware writes it only on a 429, which never reaches the upstream.
var ownHeaders = []string{
	http.CanonicalHeaderKey(api.HeaderLimit), http.CanonicalHeaderKey(api.HeaderRemaining),
	http.CanonicalHeaderKey(api.HeaderReset), http.CanonicalHeaderKey(api.HeaderRateLimit),
	http.CanonicalHeaderKey(api.HeaderPolicy),
}

// Proxy passes requests to one upstream. It is an http.Handler, safe for
// concurrent use.
type Proxy struct {
	rp   *httputil.ReverseProxy
	idle time.Duration
	log  *slog.Logger
	// name is this proxy's pseudonym in Via, random per Proxy, so that a
	// request that comes back to it is known (see looped).
	name string
	// failures counts upstream failures, held those not logged since the
	// last line, and lastWarn is when that was (Unix nanoseconds), so that a
	// down upstream logs once a second.
	failures, held, lastWarn atomic.Int64
}

// New returns a Proxy to cfg.Upstream, or an error that names the field
// it cannot run with.
func New(cfg Config) (*Proxy, error) {
	u := cfg.Upstream
	if u == nil {
		return nil, errors.New("proxy: Upstream is required")
	}
	if err := CheckUpstream(u); err != nil {
		return nil, fmt.Errorf("proxy: Upstream %q: %w", u.Redacted(), err)
	}
	if cfg.DialTimeout < 0 || cfg.ResponseTimeout < 0 || cfg.IdleTimeout < 0 {
		return nil, errors.New("proxy: timeouts must not be negative")
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.ResponseTimeout == 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == nil {
		cfg.Transport = newTransport(cfg.DialTimeout, cfg.ResponseTimeout)
	}
	p := &Proxy{idle: cfg.IdleTimeout, log: cfg.Logger, name: fmt.Sprintf("tierlimit-%08x", rand.Uint32())}
	via := "1.1 " + p.name
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			rewrite(pr, u)
			pr.Out.Header.Add("Via", via)
		},
		Transport:      cfg.Transport,
		FlushInterval:  0, // ReverseProxy flushes at once for streamed answers (no Content-Length, text/event-stream)
		BufferPool:     &buffers{},
		ModifyResponse: dropOwnHeaders,
		ErrorHandler:   p.fail,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// CheckUpstream returns why u cannot be an upstream, or nil: it must be an
// http or https base URL with a host, and without user info, query or
// fragment. cmd/node checks -upstream with it; New refuses what it
// refuses.
func CheckUpstream(u *url.URL) error {
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("the scheme must be http or https, as in http://127.0.0.1:8000")
	case u.Host == "":
		return errors.New("no host: give one such as http://127.0.0.1:8000")
	case u.User != nil:
		return errors.New("user info is not supported")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("a query or fragment is not supported: give the base URL, such as http://127.0.0.1:8000/api")
	}
	return nil
}

// newTransport is the Transport to the upstream: keep-alive connections
// enough for a loaded sidecar (net/http keeps 2 per host by default, and
// at 64 concurrent requests the rest would be opened and closed each time),
// no compression of its own (bodies pass as they are), HTTP/1.1 unless the
// upstream is https and offers h2.
func newTransport(dial, response time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // the upstream is beside us: never through HTTP_PROXY
		DialContext:           (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   dial,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: response,
		DisableCompression:    true,
	}
}

// rewrite points the outgoing request at u and sets the X-Forwarded
// fields. X-Forwarded-For keeps the chain the request came with and adds
// the client's address, as nginx's $proxy_add_x_forwarded_for does;
// X-Forwarded-Host and -Proto keep what a load balancer in front already
// said, else they name this hop. The request goes to the upstream with its
// own Host (the original one is in X-Forwarded-Host).
func rewrite(pr *httputil.ProxyRequest, u *url.URL) {
	pr.SetURL(u)
	if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
		pr.Out.Header["X-Forwarded-For"] = prior
	}
	pr.SetXForwarded()
	for _, k := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := pr.In.Header[k]; len(v) > 0 {
			pr.Out.Header[k] = v
		}
	}
}

// dropOwnHeaders removes the upstream's fields that the node writes
// itself, and takes the cost the upstream reports in Tierlimit-Cost (the
// actual cost of its work) to settle the request's reservation with; that
// field is for the node, not the client.
func dropOwnHeaders(res *http.Response) error {
	for _, k := range ownHeaders {
		delete(res.Header, k)
	}
	if cost, ok := api.ParseCost(res.Header); ok {
		api.ReportCost(res.Request.Context(), cost)
	}
	delete(res.Header, http.CanonicalHeaderKey(api.HeaderCost))
	return nil
}

// ServeHTTP passes r to the upstream and its answer back to w. The
// server's whole-request deadlines are lifted for r and replaced by the
// idle timeout on each read of its body and each write of the answer.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if looped(r.Header.Values("Via"), p.name) {
		// The upstream led back here: forwarding again would loop until
		// the process ran out of connections.
		p.warn(r, http.StatusLoopDetected, errLoop)
		api.WriteError(w, http.StatusLoopDetected, "proxy_loop", errLoop.Error())
		return
	}
	rc := http.NewResponseController(w)
	// Errors mean the server has no deadlines to lift (such as a
	// ResponseRecorder in a test): nothing to do then.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &idleBody{ReadCloser: r.Body, rc: rc, idle: p.idle}
	}
	p.rp.ServeHTTP(&idleWriter{ResponseWriter: w, rc: rc, idle: p.idle}, r)
}

// errLoop is why a request that passed through this proxy already fails.
var errLoop = errors.New("this request passed through this proxy already: its upstream (-upstream) leads back to it")

// looped reports whether the Via field values vias name the proxy called
// name as a hop: each value is a list of "protocol received-by [comment]"
// (RFC 9110, section 7.6.3).
func looped(vias []string, name string) bool {
	for _, v := range vias {
		for hop := range strings.SplitSeq(v, ",") {
			if f := strings.Fields(hop); len(f) >= 2 && f[1] == name {
				return true
			}
		}
	}
	return false
}

// fail answers a request the upstream could not: 504 if it did not answer
// in time, nothing if the client went away, else 502; in the JSON error
// shape, with the rate-limit headers already written (the request was
// counted).
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		return // the client is gone: nobody to answer
	}
	status, code := http.StatusBadGateway, "upstream_unavailable"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status, code = http.StatusGatewayTimeout, "upstream_timeout"
	}
	p.warn(r, status, err)
	api.WriteError(w, status, code, "the upstream service did not answer: "+err.Error())
}

// warn logs an upstream failure at most once a second, with how many were
// held back since the last line.
func (p *Proxy) warn(r *http.Request, status int, err error) {
	p.failures.Add(1)
	p.held.Add(1)
	now := time.Now().UnixNano()
	last := p.lastWarn.Load()
	if now-last < int64(time.Second) || !p.lastWarn.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn("upstream failed", "status", status, "method", r.Method, "path", r.URL.Path,
		"err", err.Error(), "held_back", p.held.Swap(0)-1)
}

// Failures returns how many requests the upstream failed (502 or 504)
// since New.
func (p *Proxy) Failures() int64 { return p.failures.Load() }

// idleBody is a request body whose every Read must make progress within
// idle: it moves the connection's read deadline before each one.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	return b.ReadCloser.Read(p)
}

// idleWriter is a ResponseWriter whose every Write must be taken by the
// client within idle: it moves the connection's write deadline before
// each one. Unwrap lets ReverseProxy flush through it.
type idleWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func (w *idleWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	return w.ResponseWriter.Write(p)
}

// Unwrap returns the ResponseWriter underneath, for http.ResponseController.
func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// buffers lends ReverseProxy its 32 KiB copy buffers, so that a loaded
// proxy does not allocate one per request.
type buffers struct{ pool sync.Pool }

func (b *buffers) Get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, 32<<10)
}

func (b *buffers) Put(buf []byte) { b.pool.Put(&buf) }
