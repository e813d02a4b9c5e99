package bucket

import (
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkTake measures one hit on an existing key, from all CPUs at once,
// over a family of key-set sizes.
func BenchmarkTake(b *testing.B) {
	for _, keys := range []int{1, 1_000, 100_000} {
		b.Run("keys="+strconv.Itoa(keys), func(b *testing.B) {
			s := New(Config{Window: time.Minute})
			names := make([]string, keys)
			for i := range names {
				names[i] = "key-" + strconv.Itoa(i)
				s.Take(t0, names[i], 1, 1<<30)
			}
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(7919))
				now := t0.Add(time.Second)
				for pb.Next() {
					s.Take(now, names[i%keys], 1, 1<<30)
					i++
				}
			})
		})
	}
}

// BenchmarkTakeSerial measures one hit on one goroutine, without
// contention, in a store that tracks changes for backups (as a cluster
// member's does) and in one that does not.
func BenchmarkTakeSerial(b *testing.B) {
	for _, track := range []bool{false, true} {
		b.Run("track="+strconv.FormatBool(track), func(b *testing.B) {
			s := New(Config{Window: time.Minute, TrackChanges: track})
			now := t0.Add(time.Second)
			b.ReportAllocs()
			for b.Loop() {
				s.Take(now, "key", 1, 1<<30)
			}
		})
	}
}

// BenchmarkTakeAcrossBackupRounds measures hits on 1,000 keys in a store
// that tracks changes, with a backup round (Changed) after every 1,000
// hits, so that every hit is a key's first since the last round: the
// worst case for the changed set. The round's own cost is included.
func BenchmarkTakeAcrossBackupRounds(b *testing.B) {
	s := New(Config{Window: time.Minute, TrackChanges: true})
	now := t0.Add(time.Second)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
		s.Take(now, keys[i], 1, 1<<30)
	}
	s.Changed()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Take(now, keys[i], 1, 1<<30)
		if i++; i == len(keys) {
			s.Changed()
			i = 0
		}
	}
}

// BenchmarkStoreMemory reports the heap held per live key, for keys of 24
// bytes (the size of a typical API key), over a million keys.
func BenchmarkStoreMemory(b *testing.B) {
	const n = 1_000_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%020d", i)
	}
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := New(Config{Window: time.Minute, MaxKeys: n})
		for _, k := range keys {
			s.Take(t0, k, 1, 10)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/key")
		runtime.KeepAlive(s)
	}
}
