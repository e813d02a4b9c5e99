package cluster

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/tierlimit/tierlimit/health"
)

// Config configures a Node. The zero value of each optional field means its
// stated default; Name and Health are required.
type Config struct {
	// Name is this node's name, unique in the cluster. Required. If a live
	// member that started earlier has the name already, the node gives it
	// up: New, or later Err, returns a *NameConflictError.
	Name string

	// BindAddr is the address gossip listens on, such as "0.0.0.0".
	// Empty keeps the base memberlist config's choice ("0.0.0.0" for
	// memberlist.DefaultLANConfig, "127.0.0.1" for TestMemberlistConfig).
	BindAddr string
	// BindPort is the UDP and TCP port gossip listens on. Zero picks a free
	// port; GossipAddr reports it.
	BindPort int

	// AdvertiseAddr is the address peers use to reach this node: an IP or a
	// DNS name, which New resolves to an IP (IPv4 preferred) because
	// memberlist only takes IPs. Empty lets memberlist choose: the bound IP,
	// or a private IP of this host when bound to 0.0.0.0.
	AdvertiseAddr string
	// AdvertisePort is the port peers use to reach this node. Zero means the
	// bound port. It is used only with AdvertiseAddr.
	AdvertisePort int

	// Join lists seeds as "host:port"; a host name may resolve to several
	// addresses, and every one is joined. New waits for its first join of
	// them (see New), then retries in the background with backoff, so a
	// node may start before its seeds. Empty means this node starts a
	// cluster of its own.
	Join []string

	// Peers lists the gossip addresses of members this node had before it
	// restarted (kept in a file, say). They are tried at start and then
	// every second for a minute while the node is alone, so that a node
	// restarted at a new address without seeds finds its peers; unlike
	// Join, they do not hold Joined back. Quorum counts them as known while
	// the node is alone.
	Peers []string

	// Boot is this process's boot id, in its acks and its metadata, at most
	// MaxBootLen bytes: a peer that sees it change knows that a new process
	// took the name. Give the same one to whatever else speaks for this
	// process. Empty means NewBootID().
	Boot string

	// GRPCAddr is the "host:port" peers dial for this node's gRPC service.
	// It travels in the node metadata and comes back in Member.GRPCAddr.
	GRPCAddr string

	// ConfigHash identifies this node's tier config. It travels in the node
	// metadata; a peer with a different hash is logged once at Warn and
	// shows its hash in Member.ConfigHash.
	ConfigHash string

	// SecretKey is the cluster's shared secret. When set, gossip is
	// encrypted and authenticated with an AES-256 key derived from it, and
	// nodes without the same secret cannot join. Empty means no encryption,
	// which New logs at Warn: anyone who can reach the gossip port can join.
	SecretKey string

	// Health is the state this node carries to and from its peers.
	// Required.
	Health *health.Holder

	// MaxClockOffset is how far ahead of this node's clock a peer's health
	// state may be stamped; one stamped further ahead is refused (and
	// counted in RefusedStates) until this clock catches up. Default
	// 500ms.
	MaxClockOffset time.Duration

	// OnMembers, if not nil, is called with the alive members, this node
	// included and sorted by name, after every join, leave, failure or
	// metadata update. Calls come one at a time, in order, from memberlist's
	// goroutines with memberlist's member lock held (the first one before New
	// returns): OnMembers must not block and must not call Node methods
	// other than Members, Alive, Joined and GossipAddr.
	OnMembers func([]Member)

	// RejoinInterval is how often the node re-joins seeds that are not alive
	// members and peers it has seen fail. This merges the two sides of a
	// healed partition, which memberlist stops trying to do once the
	// partition outlasts its GossipToTheDeadTime, and joins seeds that came
	// up late or that a DNS name now returns. Default 10s.
	RejoinInterval time.Duration

	// ReconnectTimeout is how long a failed or departed peer stays in
	// Members, and keeps being re-joined if it failed, before the node
	// forgets it. Default 1h.
	ReconnectTimeout time.Duration

	// Memberlist is the base memberlist configuration, copied by New, which
	// then sets Name, BindAddr, BindPort, AdvertiseAddr, AdvertisePort,
	// Delegate, Events, Ping, Keyring, Logger and LogOutput on the copy. A
	// Transport in it is used as is (BindAddr and BindPort then do
	// nothing). Nil means memberlist.DefaultLANConfig with
	// DeadNodeReclaimTime, DefaultRetransmitMult and DefaultPushPullInterval.
	Memberlist *memberlist.Config

	// Logger receives this package's logs and memberlist's, the latter at
	// Debug except its warnings and errors. Nil discards them.
	Logger *slog.Logger
}

// Defaults for Config fields left zero.
const (
	// DefaultRejoinInterval is Config.RejoinInterval when it is zero.
	DefaultRejoinInterval = 10 * time.Second
	// DefaultReconnectTimeout is Config.ReconnectTimeout when it is zero.
	DefaultReconnectTimeout = time.Hour
	// DefaultMaxClockOffset is Config.MaxClockOffset when it is zero.
	DefaultMaxClockOffset = 500 * time.Millisecond
)

// resolveTimeout bounds each DNS lookup the package makes.
const resolveTimeout = 5 * time.Second

// withDefaults checks c and returns a copy with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		return c, errors.New("cluster config: Name is required")
	}
	if c.Health == nil {
		return c, errors.New("cluster config: Health is required")
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return c, fmt.Errorf("cluster config: BindPort %d out of range", c.BindPort)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return c, fmt.Errorf("cluster config: AdvertisePort %d out of range", c.AdvertisePort)
	}
	if c.RejoinInterval < 0 {
		return c, fmt.Errorf("cluster config: RejoinInterval %s is negative", c.RejoinInterval)
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = DefaultRejoinInterval
	}
	if c.MaxClockOffset < 0 {
		return c, fmt.Errorf("cluster config: MaxClockOffset %s is negative", c.MaxClockOffset)
	}
	if c.MaxClockOffset == 0 {
		c.MaxClockOffset = DefaultMaxClockOffset
	}
	if c.ReconnectTimeout < 0 {
		return c, fmt.Errorf("cluster config: ReconnectTimeout %s is negative", c.ReconnectTimeout)
	}
	if c.ReconnectTimeout == 0 {
		c.ReconnectTimeout = DefaultReconnectTimeout
	}
	if len(c.Boot) > MaxBootLen {
		return c, fmt.Errorf("cluster config: Boot is %d bytes, at most %d", len(c.Boot), MaxBootLen)
	}
	if c.Boot == "" {
		c.Boot = NewBootID()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	longest := nodeMeta{GRPCAddr: c.GRPCAddr, ConfigHash: c.ConfigHash, Leaving: true, Boot: strings.Repeat("x", MaxBootLen), Started: math.MaxInt64}
	if len(encodeMeta(longest)) > memberlist.MetaMaxSize {
		return c, fmt.Errorf("cluster config: GRPCAddr and ConfigHash take more than %d bytes of node metadata", memberlist.MetaMaxSize)
	}
	return c, nil
}

// memberlistConfig builds the memberlist configuration for a node; d serves
// as its Delegate, EventDelegate and PingDelegate.
func (c Config) memberlistConfig(ctx context.Context, d *delegate) (*memberlist.Config, error) {
	var mc memberlist.Config
	if c.Memberlist != nil {
		mc = *c.Memberlist
	} else {
		mc = *memberlist.DefaultLANConfig()
		// A node restarted under the same name with a new address (a
		// container that came back with another IP) may take its name back
		// once it has been dead this long; memberlist's default, zero,
		// refuses it for good as a name conflict.
		mc.DeadNodeReclaimTime = DeadNodeReclaimTime
		mc.RetransmitMult = DefaultRetransmitMult
		mc.PushPullInterval = DefaultPushPullInterval
	}
	mc.Name = c.Name
	if c.BindAddr != "" {
		mc.BindAddr = c.BindAddr
	}
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = ""
	mc.AdvertisePort = 0
	if c.AdvertiseAddr != "" {
		ip, err := resolveIP(ctx, c.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("cluster config: AdvertiseAddr: %w", err)
		}
		mc.AdvertiseAddr = ip.String()
		// With BindPort 0 and no Transport, memberlist puts the port it
		// picked here itself.
		mc.AdvertisePort = c.AdvertisePort
		if mc.AdvertisePort == 0 {
			mc.AdvertisePort = c.BindPort
		}
	}
	mc.Delegate = d
	mc.Events = d
	mc.Ping = d
	mc.Conflict = d
	mc.Keyring = nil
	if c.SecretKey != "" {
		key, err := deriveKey(c.SecretKey)
		if err != nil {
			return nil, err
		}
		kr, err := memberlist.NewKeyring(nil, key)
		if err != nil {
			return nil, fmt.Errorf("cluster keyring: %w", err)
		}
		mc.Keyring = kr
	}
	mc.LogOutput = nil
	mc.Logger = newMemberlistLogger(c.Logger)
	return &mc, nil
}

// The memberlist settings that differ from memberlist.DefaultLANConfig in
// the default configuration, chosen from docs/gossip.md's simulation of 100
// and 300 members.
const (
	// DefaultRetransmitMult is memberlist's RetransmitMult: how many times
	// a membership message is sent on is RetransmitMult × log10(members+1).
	// With LAN's 4, a 300-member cluster started at once left some members
	// not seeing some others until a push/pull; with 6 none did, for 272
	// KB of join traffic per member instead of 183.
	DefaultRetransmitMult = 6
	// DefaultPushPullInterval is memberlist's PushPullInterval, the full
	// state exchange that repairs whatever gossip missed. memberlist
	// stretches it above 32 members (3 times at 100, 5 times at 300), so at 300
	// members a missed change waits 75 s at worst instead of 150 s with
	// LAN's 30 s; the price is about 100 B/s per member.
	DefaultPushPullInterval = 15 * time.Second
)

// DeadNodeReclaimTime is how long a dead member's name stays reserved for
// its old address in the default configuration.
const DeadNodeReclaimTime = 5 * time.Second

// keySalt and keyInfo fix the key derivation, so every node derives the same
// key from the same secret, and a change here is a protocol change.
const (
	keySalt = "tierlimit/cluster"
	keyInfo = "memberlist keyring v1"
)

// deriveKey turns a shared secret of any length into a 32-byte AES-256 key.
func deriveKey(secret string) ([]byte, error) {
	key, err := hkdf.Key(sha256.New, []byte(secret), []byte(keySalt), keyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive cluster key: %w", err)
	}
	return key, nil
}

// resolveIP returns host as an IP, looking it up in DNS if it is a name.
// An IPv4 address is preferred to an IPv6 one.
func resolveIP(ctx context.Context, host string) (net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	for _, a := range addrs {
		if a.IP.To4() != nil {
			return a.IP, nil
		}
	}
	return addrs[0].IP, nil
}

// TestMemberlistConfig returns a memberlist configuration for tests on one
// machine: bound to 127.0.0.1 on a free port, with timings that detect a
// crash in about half a second and spread state in tens of milliseconds.
// It is too chatty for a real network.
func TestMemberlistConfig() *memberlist.Config {
	c := memberlist.DefaultLocalConfig()
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.SuspicionMult = 2
	c.PushPullInterval = time.Second
	c.RetransmitMult = 4
	c.DeadNodeReclaimTime = 100 * time.Millisecond
	c.TCPTimeout = 500 * time.Millisecond
	return c
}
