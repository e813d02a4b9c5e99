// Package ring maps a key to the member name that owns it, by bounded-load
// consistent hashing (buraksezer/consistent v1.1.0 with xxhash, 271
// partitions, 20 replicas per member, load 1.25: no member owns more than
// 1.25 times its fair share of partitions). When a member joins or leaves,
// only about 1/n of the keys change owner.
//
// Every node must use these same parameters, the same hasher, the same
// version of buraksezer/consistent and the same member names, or nodes
// disagree about who owns a key and count it twice. A Ring holds names
// only: it is fed by whoever watches membership (package tierlimit connects
// cluster's callback to Ring.Set), and package ownership's Router and
// package handoff's Keeper look its answers up.
package ring

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"

	"github.com/tierlimit/tierlimit/config"
)

// The ring's parameters. Every node must use these same values, the same
// hasher (xxhash), the same version of buraksezer/consistent (v1.1.0; v0.10
// placed keys differently) and the same member names, or nodes disagree
// about who owns a key and count it twice.
const (
	// partitions is the number of partitions keys hash into; a prime
	// spreads keys evenly.
	partitions = 271
	// replicas is how many points each member has on the circle.
	replicas = 20
	// load bounds each member to ceil(partitions/members × load)
	// partitions.
	load = 1.25
)

// Ring maps a key to the member that owns it, by bounded-load consistent
// hashing (buraksezer/consistent with xxhash, 271 partitions, 20 replicas,
// load 1.25). It knows member names only: connections, batching and
// breakers live in package ownership's Router, which looks the Ring's
// answer up.
//
// A Ring is safe for concurrent use. Owner, Members and Len read an
// immutable snapshot without locking; Set, Add and Remove build a new one
// (about 0.1 ms at 10 members, 1.4 ms at 50 and 5 ms at 100, since the
// points are sorted again for each member added: BenchmarkRingSet) and
// swap it in. The zero value is an empty Ring,
// ready to use.
//
// The owner of a key depends only on the set of member names, not on the
// order they were added in, so nodes that see the same members agree.
type Ring struct {
	// mu serialises writers (Set, Add, Remove); readers load table.
	mu    sync.Mutex
	table atomic.Pointer[table]
}

// table is one immutable snapshot of the ring.
type table struct {
	members []string // sorted, unique
	owners  []string // partition → owner name; nil when members is empty
}

// New returns an empty Ring.
func New() *Ring {
	return &Ring{}
}

// Owner returns the name of the member that owns key, and false if the ring
// is empty. A counter key (config.CostKey) has the owner of its API key. It
// does not allocate.
func (r *Ring) Owner(key string) (string, bool) {
	t := r.table.Load()
	if t == nil || len(t.owners) == 0 {
		return "", false
	}
	// Same partition as consistent.FindPartitionID, whose hasher is
	// xxhash.Sum64, without turning key into a []byte.
	return t.owners[xxhash.Sum64String(config.RouteKey(key))%partitions], true
}

// Members returns the member names, sorted. The slice is the caller's.
func (r *Ring) Members() []string {
	t := r.table.Load()
	if t == nil {
		return []string{}
	}
	return slices.Clone(t.members)
}

// Len returns the number of members.
func (r *Ring) Len() int {
	t := r.table.Load()
	if t == nil {
		return 0
	}
	return len(t.members)
}

// Set makes names the whole member set, ignoring empty names and
// duplicates. It rebuilds the ring only if the set changed, and reports
// whether it did.
func (r *Ring) Set(names []string) bool {
	next := make([]string, 0, len(names))
	for _, n := range names {
		if n != "" {
			next = append(next, n)
		}
	}
	slices.Sort(next)
	next = slices.Compact(next)

	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Equal(r.current(), next) {
		return false
	}
	r.table.Store(build(next))
	return true
}

// Add adds the member called name; it does nothing if name is empty or
// already a member.
func (r *Ring) Add(name string) {
	if name == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.current()
	i, found := slices.BinarySearch(cur, name)
	if found {
		return
	}
	r.table.Store(build(slices.Insert(slices.Clone(cur), i, name)))
}

// Remove removes the member called name; it does nothing if name is not a
// member.
func (r *Ring) Remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.current()
	i, found := slices.BinarySearch(cur, name)
	if !found {
		return
	}
	r.table.Store(build(slices.Delete(slices.Clone(cur), i, i+1)))
}

// current returns the sorted member names of the snapshot in force; r.mu
// must be held so that it stays in force.
func (r *Ring) current() []string {
	if t := r.table.Load(); t != nil {
		return t.members
	}
	return nil
}

// build returns the snapshot for members, which must be sorted and
// unique. It asks consistent for the owner of every partition once, so
// lookups afterwards are a hash and an index.
func build(members []string) *table {
	t := &table{members: members}
	if len(members) == 0 {
		return t
	}
	ms := make([]consistent.Member, len(members))
	for i, m := range members {
		ms[i] = member(m)
	}
	c := consistent.New(ms, consistent.Config{
		Hasher:            hasher{},
		PartitionCount:    partitions,
		ReplicationFactor: replicas,
		Load:              load,
	})
	t.owners = make([]string, partitions)
	for p := range t.owners {
		t.owners[p] = c.GetPartitionOwner(p).String()
	}
	return t
}

// member is a member name as consistent wants it.
type member string

func (m member) String() string { return string(m) }

// hasher hashes with xxhash for consistent.
type hasher struct{}

func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }
