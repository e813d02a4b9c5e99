package ownership

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tierlimit/tierlimit/bucket"
)

func TestRefusalsGet(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	reset := t0.Add(time.Minute)
	refused := bucket.Decision{Limit: 5, ResetAt: reset, RetryAt: t0.Add(10 * time.Second)}
	tests := []struct {
		name  string
		at    time.Duration
		limit int
		want  bool
	}{
		{"before RetryAt", 9 * time.Second, 5, true},
		{"lower limit", 9 * time.Second, 4, true},
		{"higher limit", 9 * time.Second, 6, false},
		{"at RetryAt", 10 * time.Second, 5, false},
		{"after RetryAt", time.Hour, 5, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newAnswers(10, time.Minute)
			c.put("k", 5, refused, t0)
			d, ok := c.get("k", 1, tc.limit, t0.Add(tc.at))
			assert.Equal(t, tc.want, ok, "get(k, %d, t0+%v)", tc.limit, tc.at)
			if tc.want {
				assert.Equal(t, bucket.Decision{Limit: tc.limit, ResetAt: reset, RetryAt: refused.RetryAt}, d)
			}
			_, ok = c.get("other", 1, 5, t0)
			assert.False(t, ok, "get of a key never put")
		})
	}
}

func TestRefusalsKeepOnlyRefusals(t *testing.T) {
	t0 := time.Unix(0, 0)
	tests := []struct {
		name string
		d    bucket.Decision
	}{
		{"allowed", bucket.Decision{Allowed: true, Limit: 5, RetryAt: t0.Add(time.Second)}},
		{"no RetryAt", bucket.Decision{Limit: 5}},
		{"RetryAt now", bucket.Decision{Limit: 5, RetryAt: t0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newAnswers(10, time.Minute)
			c.put("k", 5, tc.d, t0)
			assert.Equal(t, 0, c.len(), "entries after put(%+v)", tc.d)
		})
	}
}

func TestRefusalsExpireLazily(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := newAnswers(10, time.Minute)
	c.put("k", 5, bucket.Decision{RetryAt: t0.Add(time.Second)}, t0)
	assert.Equal(t, 1, c.len())
	_, ok := c.get("k", 1, 5, t0.Add(time.Second))
	assert.False(t, ok)
	assert.Equal(t, 0, c.len(), "an expired entry was kept after get")
}

func TestRefusalsBounded(t *testing.T) {
	t0 := time.Unix(0, 0)
	const size = 320
	c := newAnswers(size, time.Minute)
	for i := range 10 * size {
		c.put("k"+strconv.Itoa(i), 5, bucket.Decision{RetryAt: t0.Add(time.Hour)}, t0)
	}
	assert.LessOrEqual(t, c.len(), size, "entries after %d puts into a cache of %d", 10*size, size)
	assert.GreaterOrEqual(t, c.len(), size*3/4, "entries after %d puts into a cache of %d", 10*size, size)
}

func TestRefusalShardEvict(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(d time.Duration) answer { return answer{limit: 5, retryAt: t0.Add(d)} }
	tests := []struct {
		name    string
		entries map[string]answer
		want    []string // keys left
	}{
		{"expired go first", map[string]answer{
			"gone1": at(time.Second), "live1": at(time.Hour), "gone2": at(2 * time.Second), "live2": at(3 * time.Hour),
		}, []string{"live1", "live2"}},
		{"else the one that expires first", map[string]answer{
			"a": at(2 * time.Hour), "b": at(time.Hour), "c": at(3 * time.Hour),
		}, []string{"a", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sh := &answerShard{m: tc.entries}
			sh.evict(t0.Add(time.Minute))
			var left []string
			for k := range sh.m {
				left = append(left, k)
			}
			assert.ElementsMatch(t, tc.want, left, "keys left after evict")
		})
	}
}

func TestRefusalsClearAndOff(t *testing.T) {
	t0 := time.Unix(0, 0)
	refused := bucket.Decision{RetryAt: t0.Add(time.Second)}

	c := newAnswers(10, time.Minute)
	c.put("k", 5, refused, t0)
	c.clear()
	_, ok := c.get("k", 1, 5, t0)
	assert.False(t, ok, "get after clear")

	off := newAnswers(-1, time.Minute)
	off.put("k", 5, refused, t0)
	_, ok = off.get("k", 1, 5, t0)
	assert.False(t, ok, "get from a cache of size -1")
	assert.Equal(t, 0, off.len())
}

func BenchmarkRefusalsGet(b *testing.B) {
	t0 := time.Unix(0, 0)
	c := newAnswers(DefaultOverLimitCacheSize, time.Minute)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
		c.put(keys[i], 5, bucket.Decision{RetryAt: t0.Add(time.Hour)}, t0)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.get(keys[i&1023], 1, 5, t0)
			i++
		}
	})
}

// TestRefusalsNeverServeAResetInThePast: a key refused near the end of its
// window may still be refused after the window rolled over (the previous
// window's hits decay); the cached refusal then names the end of the
// window the key is in now, as the owner would.
func TestRefusalsNeverServeAResetInThePast(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	refused := bucket.Decision{Limit: 20, ResetAt: t0.Add(time.Second), RetryAt: t0.Add(4 * time.Second)}
	c := newAnswers(10, time.Minute)
	c.put("k", 20, refused, t0)
	for _, at := range []time.Duration{0, 999 * time.Millisecond, time.Second, 3 * time.Second} {
		now := t0.Add(at)
		d, ok := c.get("k", 1, 20, now)
		if !assert.True(t, ok, "get at t0+%v", at) {
			continue
		}
		assert.True(t, d.ResetAt.After(now), "get at t0+%v: ResetAt %v is not after now", at, d.ResetAt.Sub(t0))
		want := refused.ResetAt
		if at >= time.Second {
			want = refused.ResetAt.Add(time.Minute)
		}
		assert.Equal(t, want, d.ResetAt, "get at t0+%v", at)
	}
}

// TestRefusalsRememberWhatWasLeft: a node deciding locally while the owner
// is unreachable learns from the owner's last answers how much a key has
// left, and not beyond the key's window.
func TestRefusalsRememberWhatWasLeft(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := newAnswers(10, time.Minute)
	c.put("k", 150, bucket.Decision{Allowed: true, Limit: 150, Remaining: 12, ResetAt: t0.Add(30 * time.Second)}, t0)
	tests := []struct {
		name  string
		at    time.Duration
		limit int
		want  int
		ok    bool
	}{
		{"in the window", time.Second, 150, 12, true},
		{"a lower limit", time.Second, 100, 12, true},
		{"a higher limit: unknown", time.Second, 200, 0, false},
		{"after the window", 31 * time.Second, 150, 0, false},
	}
	for _, tt := range tests {
		got, _, ok := c.remaining("k", tt.limit, t0.Add(tt.at))
		assert.Equal(t, tt.ok, ok, "%s: remaining found", tt.name)
		assert.Equal(t, tt.want, got, "%s", tt.name)
	}
	_, hit := c.get("k", 1, 150, t0.Add(time.Second))
	assert.False(t, hit, "an admitted key is no cached refusal")
	c.put("k", 150, bucket.Decision{Limit: 150, ResetAt: t0.Add(30 * time.Second), RetryAt: t0.Add(40 * time.Second)}, t0)
	got, until, ok := c.remaining("k", 150, t0.Add(35*time.Second))
	assert.Equal(t, t0.Add(40*time.Second), until)
	assert.True(t, ok)
	assert.Zero(t, got, "nothing left while a refusal holds")
}

// TestAnswersRefuseOnlyWhatDoesNotFit: a remembered refusal of a cost
// (many hits) with some left refuses checks of more than that, not of what
// fits, nor a read.
func TestAnswersRefuseOnlyWhatDoesNotFit(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := newAnswers(100, time.Minute)
	c.put("k", 1000, bucket.Decision{Limit: 1000, Remaining: 90, ResetAt: t0.Add(time.Minute), RetryAt: t0.Add(30 * time.Second)}, t0)
	_, ok := c.get("k", 91, 1000, t0)
	assert.True(t, ok, "91 does not fit in 90")
	_, ok = c.get("k", 90, 1000, t0)
	assert.False(t, ok, "90 fits")
	_, ok = c.get("k", 0, 1000, t0)
	assert.False(t, ok, "a read is never refused")
}
