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
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/cluster"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/health"
	"github.com/tierlimit/tierlimit/ownership"
)

// Checks that the pieces fit where they meet.
var (
	_ api.Checker          = (*ownership.Router)(nil)
	_ api.Checker          = api.Local{}
	_ api.Keys             = (*config.Tiers)(nil)
	_ ownership.PeerSource = (*peerBook)(nil)
)

// Keepalive of the gRPC connections between peers: a ping after this
// long without traffic, and the connection given up if the ping is not
// answered within the timeout.
const (
	peerKeepaliveTime    = 10 * time.Second
	peerKeepaliveTimeout = 5 * time.Second
)

// node is one running instance: every component, wired together.
type node struct {
	log      *slog.Logger
	name     string
	tiers    *config.Tiers
	health   *health.Holder
	store    *bucket.Store // counts of the keys this node owns
	fallback *bucket.Store // local-only counts while an owner is unreachable
	registry *prometheus.Registry

	ring    *ownership.Ring
	peers   *peerBook
	router  *ownership.Router
	grpcLis net.Listener
	grpcSrv *grpc.Server
	peerSrv *ownership.Server // on grpcSrv
	cluster *cluster.Node

	httpLis net.Listener
	httpSrv *http.Server

	// background work (sweeping) stops when stopBG is called.
	stopBG context.CancelFunc
	bg     sync.WaitGroup
}

// start builds a node from o and starts serving. The caller must call stop.
// On error, whatever was started is stopped again.
func start(ctx context.Context, o options, log *slog.Logger) (_ *node, err error) {
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
		fallback: bucket.New(bucket.Config{Window: tiers.Window, MaxKeys: o.maxKeys}),
		registry: prometheus.NewRegistry(),
		ring:     ownership.NewRing(),
	}
	n.ring.Set([]string{o.nodeName})
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.stopBG = cancel
	defer func() {
		if err != nil {
			n.kill()
		}
	}()
	met := newMetrics(n.registry, n)

	// Peers: the gRPC server for checks forwarded to us, clients for ours.
	if o.clusterKey == "" {
		n.log.Warn("no cluster key: gRPC between peers is plaintext and unauthenticated; anyone who can reach the gRPC port can add hits to any count; set -cluster-key or CLUSTER_KEY",
			"grpc_addr", o.grpcAddr)
	}
	srvCreds, cliCreds, err := ownership.Credentials(o.clusterKey)
	if err != nil {
		return n, err
	}
	// Keepalive pings find a peer connection that died silently (a cut
	// network drops packets without a reset) within about 15 s, so the
	// stream and connection are rebuilt instead of waiting on TCP's own
	// timeouts; the server below allows pings that often.
	dialOpts := append([]grpc.DialOption{grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: peerKeepaliveTime, Timeout: peerKeepaliveTimeout, PermitWithoutStream: true,
	})}, o.dialOptions...)
	n.peers = newPeerBook(ownership.NewClients(cliCreds, dialOpts...))
	n.grpcLis, err = net.Listen("tcp", o.grpcAddr)
	if err != nil {
		return n, fmt.Errorf("listen grpc %s: %w", o.grpcAddr, err)
	}
	// Peers hold one long-lived CheckStream each, so there are no per-call
	// goroutines worth pooling (grpc.NumStreamWorkers).
	n.grpcSrv = grpc.NewServer(grpc.Creds(srvCreds), grpc.MaxRecvMsgSize(8<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: peerKeepaliveTime / 2, PermitWithoutStream: true,
		}))
	n.peerSrv = ownership.NewServer(n.store, time.Now)
	n.peerSrv.Register(n.grpcSrv)
	go func() {
		if err := n.grpcSrv.Serve(n.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server stopped", "err", err)
		}
	}()
	n.router = ownership.NewRouter(ownership.RouterConfig{
		Self:           o.nodeName,
		Ring:           n.ring,
		Local:          n.store,
		Fallback:       n.fallback,
		Peers:          n.peers,
		ForwardTimeout: o.forwardTimeout,
		Logger:         n.log,
		Observer:       met,
	})
	n.registry.MustRegister(newBreakerCollector(n.router))
	// A new state changes every limit: refusals cached under the old one
	// no longer hold.
	n.health.OnChange(func(health.State) { n.router.ClearOverLimit() })

	// Gossip: membership and the health state.
	gossipHost, gossipPort, err := splitHostPort(o.gossipAddr)
	if err != nil {
		return n, fmt.Errorf("-gossip-addr: %w", err)
	}
	_, grpcPort, err := splitHostPort(n.grpcLis.Addr().String())
	if err != nil {
		return n, err
	}
	advertiseHost, _, _ := splitHostPort(o.advertiseAddr + ":0")
	n.cluster, err = cluster.New(cluster.Config{
		Name:           o.nodeName,
		BindAddr:       gossipHost,
		BindPort:       gossipPort,
		AdvertiseAddr:  advertiseHost,
		Join:           o.join,
		GRPCAddr:       grpcAdvertise(o.advertiseAddr, o.grpcAddr, grpcPort),
		ConfigHash:     tiers.Hash(),
		SecretKey:      o.clusterKey,
		Health:         n.health,
		OnMembers:      n.membersChanged,
		RejoinInterval: o.rejoinInterval,
		Memberlist:     o.gossipConfig,
		Logger:         n.log,
	})
	if err != nil {
		return n, err
	}
	met.registerCluster(n.registry, n)

	limiter := api.NewLimiter(api.Config{
		Keys:    tiers,
		Checker: n.router,
		Health:  n.health,
		Window:  tiers.Window,
		Metrics: api.NewMetrics(n.registry, tiers.Names()),
		Logger:  n.log,
	})
	handler := api.NewHandler(api.ServerConfig{
		Limiter:    limiter,
		AdminToken: token,
		NodeName:   o.nodeName,
		Members:    n.members,
		Ready:      n.ready,
		Metrics:    promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}),
		Logger:     n.log,
	})
	n.httpLis, err = net.Listen("tcp", o.httpAddr)
	if err != nil {
		return n, fmt.Errorf("listen http %s: %w", o.httpAddr, err)
	}
	n.httpSrv = api.NewHTTPServer(handler, n.log)
	go func() {
		if err := n.httpSrv.Serve(n.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()

	n.bg.Go(func() { n.sweep(bgCtx) })
	n.log.Info("node started",
		"http_addr", n.httpLis.Addr().String(),
		"grpc_addr", n.grpcLis.Addr().String(),
		"gossip_addr", n.cluster.GossipAddr(),
		"seeds", o.join,
		"config", o.configPath, "config_hash", tiers.Hash(),
		"tiers", len(tiers.Names()), "api_keys", tiers.KeyCount(),
		"window", tiers.Window.String(),
		"forward_timeout", o.forwardTimeout.String())
	return n, nil
}

// grpcAdvertise returns the gRPC address to publish to peers. With an
// advertise host, that host and the bound port. Otherwise the -grpc-addr host
// if it names one; if it does not (":9090", "0.0.0.0:9090"), only ":port",
// and peers put the gossip IP they see for this node in front of it.
func grpcAdvertise(advertise, grpcAddr string, port int) string {
	p := strconv.Itoa(port)
	if advertise != "" {
		host, _, err := splitHostPort(advertise + ":0")
		if err == nil && host != "" {
			return net.JoinHostPort(host, p)
		}
	}
	host, _, _ := splitHostPort(grpcAddr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		return ":" + p
	}
	return net.JoinHostPort(host, p)
}

// membersChanged is the cluster's OnMembers: it updates the peer addresses
// and the ring. memberlist calls it with its lock held, so the slow part
// (stopping a departed peer's batcher) runs on its own goroutine.
func (n *node) membersChanged(alive []cluster.Member) {
	names := make([]string, 0, len(alive))
	for _, m := range alive {
		names = append(names, m.Name)
	}
	gone, moved := n.peers.set(alive, n.name)
	n.ring.Set(names)
	if len(gone)+len(moved) > 0 {
		n.bg.Go(func() {
			// Close first, then drop the batcher, so no batcher made in
			// between keeps a closed Client.
			for _, name := range gone {
				n.peers.clients.Remove(name)
				n.router.Forget(name)
			}
			for _, name := range moved {
				n.router.Forget(name)
			}
		})
	}
	n.log.Info("members changed", "alive", len(names), "members", names)
}

// members lists the cluster for GET /system/cluster.
func (n *node) members() []api.Member {
	ms := n.cluster.Members()
	out := make([]api.Member, len(ms))
	for i, m := range ms {
		// GRPCAddr is where peers dial it, as they work it out.
		out[i] = api.Member{Name: m.Name, Addr: m.Addr, GRPCAddr: peerGRPCAddr(m), State: m.State, ConfigHash: m.ConfigHash, Self: m.Self}
	}
	return out
}

// ready reports whether the node should take traffic: the config is loaded
// (it is, or start would have failed) and, with seeds, the cluster joined.
func (n *node) ready() error {
	if !n.cluster.Joined() {
		return errors.New("cluster not joined yet: no seed reached")
	}
	return nil
}

// sweep reclaims expired keys about twice a window.
func (n *node) sweep(ctx context.Context) {
	t := time.NewTicker(max(n.store.Window()/2, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			removed := n.store.Sweep(now) + n.fallback.Sweep(now)
			if removed > 0 {
				n.log.Debug("swept expired keys", "removed", removed)
			}
		}
	}
}

// httpAddr returns the address the HTTP server listens on.
func (n *node) httpAddr() string { return n.httpLis.Addr().String() }

// stop shuts the node down gracefully: HTTP drains (in-flight requests get
// up to grace to finish), the node tells the cluster it leaves, then gossip,
// forwarding and the gRPC server stop.
func (n *node) stop(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var errs []error
	if err := n.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("drain http: %w", err))
	}
	if err := n.cluster.Leave(2 * time.Second); err != nil {
		// No peer confirmed the leave: they are all stopping too, or cut
		// off. They will see this node fail instead; stopping goes on.
		n.log.Warn("leave not confirmed by any peer; they will detect the node as failed", "err", err)
	}
	if err := n.cluster.Close(); err != nil {
		errs = append(errs, fmt.Errorf("stop gossip: %w", err))
	}
	n.router.Close()
	// Peers keep a stream open to this node: ask them to end it, or
	// GracefulStop would wait for them until the grace period runs out.
	n.peerSrv.Drain()
	stopped := make(chan struct{})
	go func() { n.grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		n.grpcSrv.Stop()
	}
	_ = n.peers.clients.Close()
	n.stopBG()
	n.bg.Wait()
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

// kill stops everything at once without telling anyone, as a crash would
// look to the peers (tests use it), and cleans up after a failed start.
func (n *node) kill() {
	if n.httpSrv != nil {
		_ = n.httpSrv.Close()
	} else if n.httpLis != nil {
		_ = n.httpLis.Close()
	}
	if n.cluster != nil {
		_ = n.cluster.Close()
	}
	if n.router != nil {
		n.router.Close()
	}
	if n.grpcSrv != nil {
		n.grpcSrv.Stop()
	} else if n.grpcLis != nil {
		_ = n.grpcLis.Close()
	}
	if n.peers != nil {
		_ = n.peers.clients.Close()
	}
	n.stopBG()
	n.bg.Wait()
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// memberlistConfig is the hidden test hook type for options.gossipConfig.
type memberlistConfig = *memberlist.Config
