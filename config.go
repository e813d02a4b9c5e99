package tierlimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/handoff"
	"github.com/tierlimit/tierlimit/loadctl"
	"github.com/tierlimit/tierlimit/ownership"
)

// maxCapacity bounds Config.Capacity.
const maxCapacity = 1_000_000

// maxQueueWait bounds Config.QueueWait.
const maxQueueWait = time.Hour

// Config configures a Limiter. The zero value of every field means its
// stated default; New refuses a Config it cannot run with a *ConfigError
// that names the field. Without GossipAddr the Limiter is one node on its
// own; with it, the Limiter joins a cluster.
type Config struct {
	// TiersFile is the path of tiers.json: the counting window, the tiers
	// and the API keys. Required unless Keys is set. Reload reads it again.
	TiersFile string

	// Keys, if not nil, is the key store: it maps API keys to tiers instead
	// of the file's api_keys, and TiersFile is not read. Implement it over
	// your own database of customer keys; if it also has a Reload() error
	// method, Limiter.Reload calls it. Lookup is called on every request
	// and must be fast and safe for concurrent use.
	Keys KeyStore

	// Window is the counting window when Keys is set. Default one minute.
	// With TiersFile the window is the file's window_seconds, and a Window
	// that differs from it is refused.
	Window time.Duration

	// CostUnit names what a tier's cost counts, in the headers and the 429
	// message, when Keys is set; with TiersFile it is the file's
	// cost_unit.
	CostUnit string

	// EstimateCost, if not nil, returns a request's estimated cost (for
	// audio, its Content-Length over a bitrate, or a duration the client
	// declares) and whether it gave one; an error refuses the request
	// with a 400 that says it. Default: the request's Tierlimit-Cost
	// header. A request without an estimate reserves its tier's
	// cost.default_estimate. Only tiers that limit cost ask for one.
	EstimateCost func(r *http.Request) (cost int, given bool, err error)

	// MaxJobDuration is how long a request holds its concurrency slot at
	// most when its end never comes (a lost Job). Default one hour.
	MaxJobDuration time.Duration

	// Capacity is how many jobs this instance's GPUs run at once: its load
	// signal is the requests in flight through the Middleware (admitted,
	// their handler not returned) over Capacity, 1.0 being full (Load).
	// 0, the default, gives no signal. At most 1,000,000.
	Capacity int

	// QueueWait, with Capacity, makes the Middleware run at most Capacity
	// requests at once and hold the others up to QueueWait for a slot,
	// the paid tiers first: a request of a tier whose DEGRADED limit is
	// below its base limit (free's 10 a minute to 2; not pro's burst of 150
	// cut to its limit of 100) waits behind every request of the others,
	// and when the cluster goes DEGRADED those still waiting are refused
	// (503, "shed"), so work admitted before the switch does not run
	// ahead of the paid tiers'. One that waits QueueWait gets a 503
	// ("queue_timeout"). 0, the default, holds nothing: the requests go
	// on to the handler at once, and queue wherever the app queues them.
	// At most an hour.
	QueueWait time.Duration

	// LoadSignal, if not nil, is this instance's own load signal, read
	// forty times a second: how saturated the work behind it is, 1.0
	// being full (a GPU queue's depth over its limit, the KV cache in
	// use). It must be fast and safe for concurrent use. A value that is
	// not a number from 0 to 10 is dropped (logged, and counted in
	// tierlimit_load_signal_refused_total). With Capacity as well, the
	// larger of the two counts.
	LoadSignal func() float64

	// AutoHigh, AutoLow, AutoUpHold and AutoDownHold set the cluster's
	// automatic switch, on whenever a member has a load signal (Capacity,
	// LoadSignal, or a report to POST /system/load): the cluster goes
	// DEGRADED when its demand (the mean over the members of their load
	// signal plus the work DEGRADED refuses) stays at or above AutoHigh
	// for AutoUpHold, and back to NORMAL when it stays at or below AutoLow
	// for AutoDownHold. The member that writes the switch uses its own.
	// Defaults 1, 0.75, 1s and 15s (docs/design.md says why).
	AutoHigh, AutoLow        float64
	AutoUpHold, AutoDownHold time.Duration

	// NodeName is this instance's name, unique in the cluster: it owns keys
	// under it and stamps the health states it writes. Default the host
	// name.
	NodeName string

	// AdminToken is the bearer token of the admin endpoints (AdminHandler).
	// Empty turns them off: every admin request gets 401.
	AdminToken string

	// MaxKeys bounds the keys counted at once by each store: the owned
	// counts and, in a cluster, the local fallback counts and the backup
	// copies of each other member, so memory stays bounded whatever the
	// key churn (about N + 1 stores in an N-node cluster). Default
	// 1,000,000.
	MaxKeys int

	// GossipAddr is the "host:port" memberlist gossips on, UDP and TCP
	// (port 0 picks one). Setting it makes this Limiter a cluster member:
	// each API key's count then lives on one owner node, reached over gRPC
	// at GRPCAddr. Empty means a single node with no peers.
	GossipAddr string

	// GRPCAddr is the "host:port" the peer server listens on (port 0 picks
	// one). Required with GossipAddr.
	GRPCAddr string

	// AdvertiseAddr is the host or IP peers use to reach this node, for
	// gossip and gRPC alike; needed in containers and behind NAT. Empty:
	// the gossip address memberlist picks, and GRPCAddr's host if it has
	// one.
	AdvertiseAddr string

	// Join lists seeds as "host:port" gossip addresses; a DNS name may
	// stand for several nodes. They are joined in the background, and
	// retried, so a node may start before its seeds. Empty: start a cluster
	// of one that others join.
	Join []string

	// ClusterKey is the shared secret of the cluster: it encrypts gossip and
	// authenticates and encrypts gRPC between peers (mutual TLS from a key
	// pair derived from it). Choose a long random one. Without it, New
	// refuses peer addresses reachable beyond this host, unless
	// InsecureOpenCluster is set; and a node without seeds whose peer
	// addresses name no host (":7946") binds them to loopback instead, so
	// that it runs alone, reachable only from this host.
	ClusterKey string

	// InsecureOpenCluster lets a node without ClusterKey gossip and serve
	// gRPC beyond this host, open to anyone who can reach the ports: they
	// can join, set the health state and add hits to any count. For a
	// private network you trust. Default false.
	InsecureOpenCluster bool

	// ForwardTimeout, if set, is a fixed bound on how long a check waits
	// for the key's owner before it is decided against this node's share
	// of the limit. Default 0: the bound adapts to each owner's recent
	// round trips (twice the bucket of their p99, so two to four times it),
	// within ForwardTimeoutMin and ForwardTimeoutMax.
	ForwardTimeout time.Duration

	// ForwardTimeoutMin and ForwardTimeoutMax bound the adaptive deadline.
	// Defaults 1ms and 4ms; before it has seen round trips to an owner, a
	// node waits up to the maximum. A peer that stops answering is skipped
	// by its breaker after 3 failed calls in a row, at most 3 maxima.
	ForwardTimeoutMin, ForwardTimeoutMax time.Duration

	// LeaseTTL is how long a lease lasts: for a key it does not own, a node
	// asks the owner for a share of the key's budget to admit on its own,
	// and the owner counts it as taken at once, so checks of a busy key pay
	// no round trip and the count stays exact. Default 1s; at least 10ms;
	// negative turns leases off, so that every check for a key owned
	// elsewhere asks its owner.
	LeaseTTL time.Duration

	// QuorumGrace is how long a member that failed still counts as a member
	// of the cluster. While this node's side holds no strict majority of the
	// members (the alive ones, and those that failed less than QuorumGrace
	// ago), it applies its proportional share of every limit, so that the
	// sides of a partition together admit about one limit; a member that
	// left gracefully stops counting at once, one that crashed after
	// QuorumGrace. A node that is alone while it knows of two or more other
	// members is not ready; alone with one (the survivor of a 2-node
	// cluster, or one side of it cut in two) it is ready, with half of each
	// limit. Default 30s.
	QuorumGrace time.Duration

	// BackupInterval is how often each owner sends the counts that changed
	// to the member that would own their keys if it failed, so that a
	// crash loses at most this long's hits. Default 100ms.
	BackupInterval time.Duration

	// MaxClockOffset bounds how far apart the members' clocks may be. The
	// health state's writes are ordered by hybrid logical clock stamps, so
	// a later write wins within this skew; a peer's state stamped further
	// ahead of this node's clock is refused until the clock catches up
	// (tierlimit_health_states_refused_total). Default 500ms.
	MaxClockOffset time.Duration

	// StateFile, if set, is where the health state in force is kept
	// (written atomically on every change), so that a node, or a whole
	// cluster, restarted in DEGRADED comes back DEGRADED. An admin write
	// is answered only once it is saved. It also keeps the gossip
	// addresses of the other members last seen alive, which a node
	// restarted without Join tries (see cluster.Config.Peers). Empty keeps
	// the state in memory: a node restarted alone learns it from its peers.
	StateFile string

	// Logger receives the Limiter's logs, and memberlist's. Nil discards.
	Logger *slog.Logger

	// Registerer, if not nil, gets the Limiter's Prometheus collectors
	// (tierlimit_*) until Close takes them off again. Nil registers none;
	// the global registry is used only if passed here. One Registerer holds
	// one Limiter's series: New refuses one that holds another's (wrap each
	// with prometheus.WrapRegistererWith and a label of its own).
	Registerer prometheus.Registerer

	// Memberlist is the base gossip configuration, for tuning timings.
	// Nil means memberlist.DefaultLANConfig with RetransmitMult 6,
	// PushPullInterval 15 s and dead members' names reclaimable after 5 s
	// (see package cluster's DefaultRetransmitMult). Bind and advertise
	// addresses, delegates, keyring and logger are set by New.
	Memberlist *memberlist.Config

	// RejoinInterval is how often seeds that are not members, and members
	// that failed, are joined again (which merges the sides of a healed
	// partition). Default 10s.
	RejoinInterval time.Duration

	// PeerDialer, if not nil, opens the TCP connections to peers' gRPC
	// servers instead of a net.Dialer: for a proxy, or a test that cuts
	// or delays the network.
	PeerDialer func(ctx context.Context, addr string) (net.Conn, error)
}

// KeyStore maps an API key to its tier. *config.File, the tiers file, is
// one; a database of customer keys can be another. Lookup gets keys that
// are 1 to 256 bytes of printable ASCII; it is called on every request and
// must be safe for concurrent use and fast (no I/O). A tier whose limit in
// force is 0 refuses every request of its keys without counting them.
type KeyStore interface {
	Lookup(apiKey string) (Tier, bool)
}

// Defaults of Config fields left zero.
const (
	DefaultWindow            = time.Minute
	DefaultMaxKeys           = 1_000_000
	DefaultForwardTimeoutMin = ownership.DefaultForwardTimeoutMin
	DefaultForwardTimeoutMax = ownership.DefaultForwardTimeoutMax
	DefaultLeaseTTL          = ownership.DefaultLeaseTTL
	minLeaseTTL              = 10 * time.Millisecond
	DefaultRejoinInterval    = 10 * time.Second
	DefaultMaxClockOffset    = 500 * time.Millisecond
	DefaultQuorumGrace       = 30 * time.Second
	DefaultBackupInterval    = handoff.DefaultBackupInterval
)

// ConfigError is a Config field New refuses, and why. errors.Is and
// errors.As see through it to Err.
type ConfigError struct {
	// Field is the Config field, such as "GRPCAddr".
	Field string
	// Reason says what is wrong with it; empty, Err's message says it.
	Reason string
	// Err is the error behind Reason, such as the registry's
	// prometheus.AlreadyRegisteredError for Registerer; nil if the field
	// was refused on its value alone.
	Err error
}

func (e *ConfigError) Error() string {
	s := "tierlimit: Config." + e.Field
	if f := flagFor(e.Field); f != "" {
		s += " (-" + f + ")"
	}
	reason := e.Reason
	if reason == "" && e.Err != nil {
		reason = e.Err.Error()
	}
	return s + ": " + reason
}

// Unwrap returns Err.
func (e *ConfigError) Unwrap() error { return e.Err }

// clustered reports whether c makes a cluster member.
func (c *Config) clustered() bool { return c.GossipAddr != "" }

// withDefaults checks c and returns it with its defaults filled in, or the
// first field it cannot run with.
func (c Config) withDefaults() (Config, error) {
	bad := func(field, format string, args ...any) (Config, error) {
		return c, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if c.Keys == nil && c.TiersFile == "" {
		return bad("TiersFile", "empty, and no Keys given: nothing maps API keys to tiers")
	}
	if c.Keys != nil && c.TiersFile != "" {
		return bad("TiersFile", "set together with Keys; give one")
	}
	if c.Window < 0 {
		return bad("Window", "%v is negative", c.Window)
	}
	if c.Window%time.Second != 0 {
		return bad("Window", "%v is not a whole number of seconds", c.Window)
	}
	if c.NodeName == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return bad("NodeName", "empty, and no host name to default to")
		}
		c.NodeName = host
	}
	if negative(&c.MaxKeys, DefaultMaxKeys) {
		return bad("MaxKeys", "%d is negative", c.MaxKeys)
	}
	if c.ForwardTimeout < 0 {
		return bad("ForwardTimeout", "%v is negative", c.ForwardTimeout)
	}
	if negative(&c.ForwardTimeoutMin, DefaultForwardTimeoutMin) {
		return bad("ForwardTimeoutMin", "%v is negative", c.ForwardTimeoutMin)
	}
	if negative(&c.ForwardTimeoutMax, DefaultForwardTimeoutMax) {
		return bad("ForwardTimeoutMax", "%v is negative", c.ForwardTimeoutMax)
	}
	if c.ForwardTimeoutMax < c.ForwardTimeoutMin {
		return bad("ForwardTimeoutMax", "%v is below ForwardTimeoutMin %v", c.ForwardTimeoutMax, c.ForwardTimeoutMin)
	}
	switch {
	case c.LeaseTTL == 0:
		c.LeaseTTL = DefaultLeaseTTL
	case c.LeaseTTL > 0 && c.LeaseTTL < minLeaseTTL:
		return bad("LeaseTTL", "%v is shorter than %v; a negative value turns leases off", c.LeaseTTL, minLeaseTTL)
	}
	if negative(&c.RejoinInterval, DefaultRejoinInterval) {
		return bad("RejoinInterval", "%v is negative", c.RejoinInterval)
	}
	if negative(&c.BackupInterval, DefaultBackupInterval) {
		return bad("BackupInterval", "%v is negative", c.BackupInterval)
	}
	if negative(&c.QuorumGrace, DefaultQuorumGrace) {
		return bad("QuorumGrace", "%v is negative", c.QuorumGrace)
	}
	if negative(&c.MaxClockOffset, DefaultMaxClockOffset) {
		return bad("MaxClockOffset", "%v is negative", c.MaxClockOffset)
	}
	if negative(&c.MaxJobDuration, api.DefaultMaxJobDuration) {
		return bad("MaxJobDuration", "%v is negative", c.MaxJobDuration)
	}
	if c.Capacity < 0 || c.Capacity > maxCapacity {
		return bad("Capacity", "%d is not from 0 (no load signal) to %d", c.Capacity, maxCapacity)
	}
	switch {
	case c.QueueWait < 0 || c.QueueWait > maxQueueWait:
		return bad("QueueWait", "%v is not from 0 (no queue) to %v", c.QueueWait, maxQueueWait)
	case c.QueueWait > 0 && c.Capacity == 0:
		return bad("QueueWait", "%v set without Capacity, the slots requests wait for", c.QueueWait)
	}
	auto := c.autoSettings()
	if err := auto.Check(); err != nil {
		var fe *loadctl.FieldError
		if errors.As(err, &fe) {
			return bad("Auto"+fe.Field, "%s", fe.Msg)
		}
		return c, err
	}
	c.AutoHigh, c.AutoLow, c.AutoUpHold, c.AutoDownHold = auto.High, auto.Low, auto.UpHold, auto.DownHold
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if !c.clustered() {
		for _, f := range []struct {
			field string
			set   bool
		}{{"GRPCAddr", c.GRPCAddr != ""}, {"Join", len(c.Join) > 0}, {"AdvertiseAddr", c.AdvertiseAddr != ""}} {
			if f.set {
				return bad(f.field, "set without GossipAddr, which a cluster member needs")
			}
		}
		return c, nil
	}
	if c.GRPCAddr == "" {
		return bad("GRPCAddr", "empty; a cluster member needs a gRPC address for its peers")
	}
	for _, a := range []struct{ field, addr string }{{"GossipAddr", c.GossipAddr}, {"GRPCAddr", c.GRPCAddr}} {
		if _, _, err := splitHostPort(a.addr); err != nil {
			return bad(a.field, "%v", err)
		}
	}
	for _, s := range c.Join {
		if _, port, err := splitHostPort(s); err != nil || port == 0 {
			return bad("Join", "%q is not host:port", s)
		}
	}
	if c.ClusterKey != "" || c.InsecureOpenCluster {
		return c, nil
	}
	if len(c.Join) == 0 {
		// Alone and without a key: stay on this host.
		c.GossipAddr = onLoopback(c.GossipAddr)
		c.GRPCAddr = onLoopback(c.GRPCAddr)
	}
	gossipHost, _, _ := splitHostPort(c.GossipAddr)
	grpcHost, _, _ := splitHostPort(c.GRPCAddr)
	for _, a := range []struct{ field, host string }{
		{"GossipAddr", gossipHost}, {"GRPCAddr", grpcHost}, {"AdvertiseAddr", c.AdvertiseAddr},
	} {
		if a.field == "AdvertiseAddr" && a.host == "" {
			continue
		}
		if !isLoopback(a.host) {
			return bad("ClusterKey", "empty, and %s %q reaches beyond this host: set -cluster-key (CLUSTER_KEY) to a long random secret shared by every node, or opt in to an open cluster with -insecure-open-cluster (INSECURE_OPEN_CLUSTER)",
				a.field, a.host)
		}
	}
	return c, nil
}

// onLoopback returns addr with 127.0.0.1 as its host if it names none
// (":7946", "0.0.0.0:7946", "[::]:7946").
func onLoopback(addr string) string {
	host, port, _ := splitHostPort(addr)
	if anyHost(host) {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	return addr
}

// anyHost reports whether host names no host in particular, as in ":9090"
// or "0.0.0.0:9090": every interface.
func anyHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// isLoopback reports whether host is a loopback address or "localhost".
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// negative sets *v to def if it is zero, and reports whether it is
// negative.
func negative[T int | time.Duration](v *T, def T) bool {
	if *v == 0 {
		*v = def
	}
	return *v < 0
}

// splitHostPort splits "host:port" and parses the port; the host may be
// empty.
func splitHostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", s)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", s)
	}
	return host, port, nil
}

// autoSettings returns the automatic switch's settings, zero ones at
// their defaults.
func (c Config) autoSettings() loadctl.Settings {
	return loadctl.Settings{High: c.AutoHigh, Low: c.AutoLow, UpHold: c.AutoUpHold, DownHold: c.AutoDownHold}.WithDefaults()
}
