package cluster

import (
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Member states, as reported in Member.State.
//
// memberlist v0.7.0 does not expose suspicion through its API, so a member
// goes from alive straight to dead once its suspicion times out.
const (
	// StateAlive is a member that answers probes.
	StateAlive = "alive"
	// StateDead is a member that stopped answering and was declared
	// failed. The rejoin loop keeps trying to reach it.
	StateDead = "dead"
	// StateLeft is a member that left gracefully with Node.Leave.
	StateLeft = "left"
)

// Member is one node as this node sees it. It is a plain value; a copy does
// not change when the cluster does.
type Member struct {
	// Name is the node's unique name.
	Name string `json:"name"`
	// Addr is the node's gossip address, "ip:port".
	Addr string `json:"addr"`
	// GRPCAddr is where peers dial the node's gRPC service: the address in
	// its metadata, with the IP of Addr in front when the node published
	// only ":port" (it listens on every interface and lets peers use the
	// address they gossip with). Empty if it published none.
	GRPCAddr string `json:"grpc_addr"`
	// ConfigHash is the hash of the node's tier config, from its metadata.
	ConfigHash string `json:"config_hash"`
	// State is StateAlive, StateDead or StateLeft.
	State string `json:"state"`
	// Leaving reports whether the member said it is about to leave
	// (Node.Depart): it still answers, but should get no new work.
	Leaving bool `json:"leaving,omitempty"`
	// Self reports whether this member is the node that answered.
	Self bool `json:"self"`
	// Boot is the member's boot id, from its metadata: random per process,
	// so another one under the same name is a restart.
	Boot string `json:"boot,omitempty"`
}

// nodeMeta is what a node attaches to its alive messages, JSON-encoded with
// short keys so it stays far below memberlist's 512-byte limit.
type nodeMeta struct {
	GRPCAddr   string `json:"g,omitempty"`
	ConfigHash string `json:"h,omitempty"`
	// Leaving is set by Leave just before the node leaves, so peers can
	// tell a graceful departure from a failure: memberlist does not say.
	Leaving bool `json:"l,omitempty"`
	// Boot is the node's boot id, as in its acks (see
	// delegate.NotifyPingComplete).
	Boot string `json:"b,omitempty"`
	// Started is when the node's process started (New), in Unix
	// nanoseconds: of two live processes under one name, the one that
	// started first keeps it (see Node.check). Zero from nodes that do not
	// publish it.
	Started int64 `json:"s,omitempty"`
}

func encodeMeta(m nodeMeta) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		// Strings and a bool always marshal.
		panic("cluster: encode node metadata: " + err.Error())
	}
	return b
}

// decodeMeta parses a peer's metadata. A peer that sent none or sent garbage
// gets empty fields: metadata describes a peer, it does not admit it.
func decodeMeta(b []byte) nodeMeta {
	var m nodeMeta
	_ = json.Unmarshal(b, &m)
	return m
}

// dialAddr returns the gRPC address to dial for a member that published
// grpcAddr and gossips from gossipAddr: grpcAddr itself, or, if it has no
// host (":9090"), the gossip IP with its port.
func dialAddr(grpcAddr, gossipAddr string) string {
	host, port, err := net.SplitHostPort(grpcAddr)
	if err != nil || host != "" {
		return grpcAddr
	}
	gossipHost, _, err := net.SplitHostPort(gossipAddr)
	if err != nil {
		return grpcAddr
	}
	return net.JoinHostPort(gossipHost, port)
}

// joinAddr formats a memberlist address as "ip:port".
func joinAddr(ip net.IP, port uint16) string {
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}

// entry is one member of a view with what the view needs to know about it.
type entry struct {
	Member
	// since is when the member entered its current state.
	since time.Time
}

// view is the membership as the event callbacks have reported it. It is not
// safe for concurrent use; Node guards it with a mutex.
type view struct {
	self    string
	members map[string]*entry
}

func newView(self string) *view {
	return &view{self: self, members: make(map[string]*entry)}
}

// join records that name is alive at addr with meta, as of now.
func (v *view) join(name, addr string, meta nodeMeta, now time.Time) {
	v.members[name] = &entry{
		Member: Member{
			Name:       name,
			Addr:       addr,
			GRPCAddr:   dialAddr(meta.GRPCAddr, addr),
			ConfigHash: meta.ConfigHash,
			State:      StateAlive,
			Leaving:    meta.Leaving,
			Self:       name == v.self,
			Boot:       meta.Boot,
		},
		since: now,
	}
}

// update records new metadata or a new address for name.
func (v *view) update(name, addr string, meta nodeMeta, now time.Time) {
	e, ok := v.members[name]
	if !ok || e.State != StateAlive {
		v.join(name, addr, meta, now)
		return
	}
	e.Addr = addr
	e.GRPCAddr = dialAddr(meta.GRPCAddr, addr)
	e.ConfigHash = meta.ConfigHash
	e.Leaving = meta.Leaving
	e.Boot = meta.Boot
}

// leave records that name is gone as of now: left if it announced that it
// was leaving, dead otherwise. It returns the new state, or "" if name was
// not known.
func (v *view) leave(name string, now time.Time) string {
	e, ok := v.members[name]
	if !ok {
		return ""
	}
	e.State = StateDead
	if e.Leaving {
		e.State = StateLeft
	}
	e.since = now
	return e.State
}

// forget drops members that have not been alive since before cutoff and
// returns their names.
func (v *view) forget(cutoff time.Time) []string {
	var gone []string
	for name, e := range v.members {
		if e.State != StateAlive && e.since.Before(cutoff) {
			delete(v.members, name)
			gone = append(gone, name)
		}
	}
	return gone
}

// list returns the members for which keep is true, sorted by name.
func (v *view) list(keep func(*entry) bool) []Member {
	out := make([]Member, 0, len(v.members))
	for _, e := range v.members {
		if keep(e) {
			out = append(out, e.Member)
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// all returns every member, sorted by name.
func (v *view) all() []Member { return v.list(func(*entry) bool { return true }) }

// alive returns the alive members, sorted by name.
func (v *view) alive() []Member {
	return v.list(func(e *entry) bool { return e.State == StateAlive })
}

// gone returns the gossip addresses of the members that failed or left
// after cutoff.
func (v *view) gone(cutoff time.Time) []string {
	var out []string
	for _, e := range v.members {
		if e.State != StateAlive && e.since.After(cutoff) {
			out = append(out, e.Addr)
		}
	}
	return out
}

// addrs returns the gossip addresses of the members in state.
func (v *view) addrs(state string) []string {
	var out []string
	for _, e := range v.members {
		if e.State == state {
			out = append(out, e.Addr)
		}
	}
	return out
}
