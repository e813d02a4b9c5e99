package surge

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ms(n float64) Offset { return Offset(time.Duration(n * float64(time.Millisecond))) }

func TestCounterCountsPerSecond(t *testing.T) {
	c := NewCounter([]Tier{{Name: "free", Keys: 3, Burst: 150, Limit: 150, Degraded: 2}, {Name: "pro", Keys: 2}}, 2, time.Second, []string{"pro"})
	lat := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	assert.True(t, c.Add("free", ms(0), Outcome{Status: 200, Latency: lat(101)}))
	assert.True(t, c.Add("free", ms(999.9), Outcome{Status: 429, Latency: lat(2)}))
	assert.True(t, c.Add("free", ms(1000), Outcome{Status: 503, Latency: lat(5)}))
	assert.True(t, c.Add("free", ms(1500), Outcome{Status: NoResponse, TimedOut: true, Latency: lat(1003)}))
	assert.True(t, c.Add("free", ms(1600), Outcome{Status: NoResponse, Latency: lat(3)}), "a transport error")
	assert.True(t, c.Add("free", ms(1700), Outcome{Unsent: true}))
	assert.True(t, c.Add("free", ms(1800), Outcome{Deferred: true}))
	assert.True(t, c.Add("free", ms(1900), Outcome{Deferred: true}))
	assert.True(t, c.Add("pro", ms(10), Outcome{Status: 200, Latency: 104560 * time.Microsecond}))
	assert.True(t, c.Add("pro", ms(20), Outcome{Status: 200, Latency: lat(103)}))
	assert.False(t, c.Add("gold", ms(0), Outcome{Status: 200}), "no such tier")
	assert.False(t, c.Add("free", ms(2000), Outcome{Status: 200}), "after the run")
	assert.False(t, c.Add("free", ms(-1), Outcome{Status: 200}), "before the run")

	tiers := c.Tiers()
	require.Len(t, tiers, 2)
	free, pro := tiers[0], tiers[1]
	assert.Equal(t, "free", free.Name)
	assert.Equal(t, 3, free.Keys)
	assert.Equal(t, 2, free.Degraded)
	assert.Equal(t, []int{1, 0}, free.Admitted)
	assert.Equal(t, []int{1, 0}, free.Refused)
	assert.Equal(t, []int{0, 1}, free.Other)
	assert.Equal(t, []int{0, 2}, free.Failed)
	assert.Equal(t, []int{0, 1}, free.TimedOut)
	assert.Equal(t, []int{0, 1}, free.Unsent)
	assert.Equal(t, []int{0, 2}, free.Deferred, "apart, without a latency")
	assert.Equal(t, 2, free.Due(0))
	assert.Equal(t, 4, free.Due(1))
	// Second 1: 5 ms (the 503), and three at the timeout or later: 1000,
	// 1000 (the transport error and the unsent one) and 1003.
	assert.Equal(t, []float64{2, 1000}, free.P50, "second 0: 2 and 101 → 2; second 1: 5, 1000, 1000, 1003 → 1000")
	assert.Equal(t, []float64{101, 1003}, free.P99)
	assert.Equal(t, []float64{101, 1003}, free.Max)
	assert.Nil(t, free.Latency, "free's latencies are not kept")
	assert.Equal(t, [][]float64{{103, 104.6}, {}}, pro.Latency, "sorted, to 0.1 ms; [] for a second with none")
	assert.Equal(t, []float64{103, 0}, pro.P50)
}

func TestCounterConcurrent(t *testing.T) {
	c := NewCounter([]Tier{{Name: "pro"}}, 1, time.Second, []string{"pro"})
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			c.Add("pro", ms(float64(i)), Outcome{Status: 200, Latency: time.Duration(i) * time.Millisecond})
		})
	}
	wg.Wait()
	pro := c.Tiers()[0]
	assert.Equal(t, 100, pro.Admitted[0])
	assert.Len(t, pro.Latency[0], 100)
	assert.Equal(t, 98.0, pro.P99[0], "nearest rank: the 99th of 0..99")
}

func TestQuantile(t *testing.T) {
	assert.Equal(t, 0.0, Quantile(nil, 0.99))
	one := []float64{7}
	assert.Equal(t, 7.0, Quantile(one, 0.5))
	assert.Equal(t, 7.0, Quantile(one, 0.99))
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	assert.Equal(t, 50.0, Quantile(hundred, 0.5))
	assert.Equal(t, 99.0, Quantile(hundred, 0.99), "not 100: 0.99 x 100 is 99, however the float rounds")
	assert.Equal(t, 100.0, Quantile(hundred, 1))
	sixty := hundred[:60]
	assert.Equal(t, 60.0, Quantile(sixty, 0.99), "of 60, the p99 is the largest")
	assert.Equal(t, 30.0, Quantile(sixty, 0.5))
}

func TestMillis(t *testing.T) {
	assert.Equal(t, 104.6, Millis(104560*time.Microsecond))
	assert.Equal(t, 104.5, Millis(104549*time.Microsecond))
	assert.Equal(t, 10000.0, Millis(10*time.Second))
}
