package ring

import (
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/buraksezer/consistent"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/config"
)

// ringKeys returns n distinct keys.
func ringKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	return keys
}

// owners returns the owner of every key in r.
func owners(t *testing.T, r *Ring, keys []string) map[string]string {
	t.Helper()
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		o, ok := r.Owner(k)
		require.True(t, ok, "Owner(%q) on a ring of %v reported no owner", k, r.Members())
		m[k] = o
	}
	return m
}

func TestRingOwnerDoesNotDependOnOrder(t *testing.T) {
	members := []string{"node-a", "node-b", "node-c", "node-d"}
	builds := []struct {
		name  string
		build func(r *Ring)
	}{
		{"Set sorted", func(r *Ring) { r.Set(members) }},
		{"Set reversed with duplicates", func(r *Ring) {
			r.Set([]string{"node-d", "node-c", "node-d", "", "node-b", "node-a"})
		}},
		{"Add one by one", func(r *Ring) {
			for _, m := range []string{"node-c", "node-a", "node-d", "node-b"} {
				r.Add(m)
			}
		}},
		{"Set more then Remove", func(r *Ring) {
			r.Set(append([]string{"node-e"}, members...))
			r.Remove("node-e")
		}},
	}
	keys := ringKeys(10_000)
	want := make(map[string]string, len(keys))
	ref := consistent.New([]consistent.Member{
		member("node-a"), member("node-b"), member("node-c"), member("node-d"),
	}, consistent.Config{Hasher: hasher{}, PartitionCount: partitions, ReplicationFactor: replicas, Load: load})
	for _, k := range keys {
		want[k] = ref.LocateKey([]byte(k)).String()
	}

	for _, tc := range builds {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			tc.build(r)
			assert.Equal(t, members, r.Members())
			assert.Equal(t, len(members), r.Len())
			got := owners(t, r, keys)
			for _, k := range keys {
				if got[k] != want[k] {
					assert.Failf(t, "owner differs", "Owner(%q) = %q, want %q (consistent.LocateKey)", k, got[k], want[k])
					return
				}
			}
		})
	}
}

func TestRingSpreadsKeys(t *testing.T) {
	r := New()
	r.Set([]string{"node-a", "node-b", "node-c"})
	keys := ringKeys(30_000)
	count := make(map[string]int)
	for _, o := range owners(t, r, keys) {
		count[o]++
	}
	require.Len(t, count, 3, "owners of 30,000 keys: %v", count)
	// Bounded load caps a member at ceil(271/3 × 1.25) = 113 partitions
	// (42 %); partitions are uneven, so allow 20 % to 45 %.
	for m, n := range count {
		share := float64(n) / float64(len(keys))
		assert.True(t, share >= 0.20 && share <= 0.45,
			"%s owns %d of %d keys (%.1f %%), want 20 %% to 45 %%", m, n, len(keys), share*100)
	}
}

func TestRingGrowthMovesAboutAQuarter(t *testing.T) {
	r := New()
	r.Set([]string{"node-a", "node-b", "node-c"})
	keys := ringKeys(30_000)
	before := owners(t, r, keys)

	r.Add("node-d")
	after := owners(t, r, keys)
	moved, toNew := 0, 0
	for _, k := range keys {
		if before[k] != after[k] {
			moved++
			if after[k] == "node-d" {
				toNew++
			}
		}
	}
	share := float64(moved) / float64(len(keys))
	assert.True(t, share >= 0.15 && share <= 0.35,
		"going from 3 to 4 members moved %d of %d keys (%.1f %%), want about 25 %%", moved, len(keys), share*100)
	assert.GreaterOrEqual(t, toNew, moved*9/10,
		"of %d keys that moved, %d went to the new member, want nearly all", moved, toNew)
}

func TestRingEmpty(t *testing.T) {
	tests := []struct {
		name string
		ring func() *Ring
	}{
		{"zero value", func() *Ring { return &Ring{} }},
		{"New", New},
		{"Set nil", func() *Ring { r := New(); r.Set(nil); return r }},
		{"all removed", func() *Ring {
			r := New()
			r.Set([]string{"a", "b"})
			r.Remove("a")
			r.Remove("b")
			return r
		}},
		{"Set to empty", func() *Ring {
			r := New()
			r.Set([]string{"a"})
			r.Set([]string{})
			return r
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.ring()
			o, ok := r.Owner("k")
			assert.False(t, ok, "Owner(%q) = %q, true on an empty ring, want false", "k", o)
			assert.Equal(t, 0, r.Len())
			assert.Empty(t, r.Members())
			assert.NotNil(t, r.Members())
		})
	}
}

// Under consistent v0.10 replica keys were name+index, so "node-1" replica
// 10 collided with "node-11" replica 0, and removing one of them panicked.
func TestRingNamesThatCollidedInV010(t *testing.T) {
	r := New()
	var names []string
	for i := 1; i <= 12; i++ {
		names = append(names, fmt.Sprintf("node-%d", i))
	}
	r.Set(names)
	count := make(map[string]int)
	for _, o := range owners(t, r, ringKeys(20_000)) {
		count[o]++
	}
	assert.Positive(t, count["node-1"], "node-1 owns no keys: %v", count)
	assert.Positive(t, count["node-11"], "node-11 owns no keys: %v", count)

	assert.NotPanics(t, func() { r.Remove("node-11") })
	assert.NotPanics(t, func() { r.Remove("node-1") })
	assert.Equal(t, 10, r.Len())
	for k, o := range owners(t, r, ringKeys(2_000)) {
		assert.NotContains(t, []string{"node-1", "node-11"}, o, "Owner(%q) after removal", k)
	}
}

func TestRingRebuildsOnlyOnChange(t *testing.T) {
	r := New()
	r.Set([]string{"a", "b", "c"})
	first := r.table.Load()

	r.Set([]string{"c", "a", "b", "a"})
	assert.Same(t, first, r.table.Load(), "Set with the same members rebuilt the ring")
	r.Add("b")
	assert.Same(t, first, r.table.Load(), "Add of a member rebuilt the ring")
	r.Remove("z")
	assert.Same(t, first, r.table.Load(), "Remove of a non-member rebuilt the ring")

	r.Set([]string{"a", "b"})
	assert.NotSame(t, first, r.table.Load(), "Set with fewer members kept the old ring")
	assert.Equal(t, []string{"a", "b"}, r.Members())
}

func TestRingMembersIsACopy(t *testing.T) {
	r := New()
	r.Set([]string{"a", "b"})
	m := r.Members()
	m[0] = "zzz"
	assert.Equal(t, []string{"a", "b"}, r.Members())
}

func TestRingConcurrentUse(t *testing.T) {
	r := New()
	r.Set([]string{"a", "b", "c"})
	keys := ringKeys(1_000)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if g == 0 {
					if i%2 == 0 {
						r.Add("d")
					} else {
						r.Remove("d")
					}
					continue
				}
				o, ok := r.Owner(keys[i])
				if assert.True(t, ok) {
					assert.Contains(t, []string{"a", "b", "c", "d"}, o)
				}
				_ = r.Members()
			}
		})
	}
	wg.Wait()
}

func BenchmarkRingOwner(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := New()
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("node-%d", i)
			}
			r.Set(names)
			keys := ringKeys(1024)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := r.Owner(keys[i&1023]); !ok {
					b.Fatal("Owner on a full ring reported no owner")
				}
				i++
			}
		})
	}
}

func BenchmarkRingSet(b *testing.B) {
	for _, n := range []int{3, 10, 50, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := New()
			names := make([]string, n+1)
			for i := range names {
				names[i] = fmt.Sprintf("node-%d", i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Set(names[i%2 : n+i%2]) // a different set each time
				i++
			}
		})
	}
}

// TestCostKeyHasItsKeysOwner: a key's cost counter lives where the key's
// requests are counted, so both move together.
func TestCostKeyHasItsKeysOwner(t *testing.T) {
	r := New()
	r.Set([]string{"a", "b", "c", "d", "e"})
	moved := 0
	for i := range 1000 {
		key := fmt.Sprintf("key-%d", i)
		owner, _ := r.Owner(key)
		cost, _ := r.Owner(config.CostKey(key))
		require.Equal(t, owner, cost, "key %s", key)
		if other, _ := r.Owner(key + "cost"); other != owner {
			moved++
		}
	}
	assert.Greater(t, moved, 500, "keys without the space are placed by their whole text")
}
