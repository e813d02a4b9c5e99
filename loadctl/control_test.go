package loadctl

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/health"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// three returns the samples of three fresh members at demand d.
func three(d float64) []Sample {
	return []Sample{{Name: "a", Signal: d, Demand: d}, {Name: "b", Signal: d, Demand: d}, {Name: "c", Signal: d, Demand: d}}
}

// step feeds c samples every 500 ms from from to to (exclusive) and
// returns the decisions that switch, with their times.
func step(c *Control, from, to time.Duration, status *health.Status, samples func(time.Duration) []Sample) map[time.Duration]health.Status {
	out := map[time.Duration]health.Status{}
	for d := from; d < to; d += Period {
		if dec := c.Observe(at(d), *status, samples(d)); dec.Switch {
			out[d] = dec.To
			*status = dec.To
		}
	}
	return out
}

func TestControlSwitchesWithHysteresis(t *testing.T) {
	c := NewControl(Settings{High: 1, Low: 0.6, UpHold: 2 * time.Second, DownHold: 10 * time.Second})
	status := health.Normal
	// 1.5 s above the mark, then below: too short to switch.
	sw := step(c, 0, 3*time.Second, &status, func(d time.Duration) []Sample {
		if d < 1500*time.Millisecond {
			return three(1.2)
		}
		return three(0.5)
	})
	assert.Empty(t, sw, "a spike shorter than the up hold")

	// Above from 3 s: DEGRADED once it has held 2 s.
	sw = step(c, 3*time.Second, 10*time.Second, &status, func(time.Duration) []Sample { return three(1.2) })
	assert.Equal(t, map[time.Duration]health.Status{5 * time.Second: health.Degraded}, sw)

	// Between the marks: stays DEGRADED however long.
	sw = step(c, 10*time.Second, 60*time.Second, &status, func(time.Duration) []Sample { return three(0.8) })
	assert.Empty(t, sw, "between the marks nothing moves")

	// Below the low mark for 9.5 s, a blip above it, then below for good:
	// NORMAL 10 s after the blip.
	sw = step(c, 60*time.Second, 90*time.Second, &status, func(d time.Duration) []Sample {
		if d == 70*time.Second {
			return three(0.7)
		}
		return three(0.3)
	})
	assert.Equal(t, map[time.Duration]health.Status{70*time.Second + Period + 10*time.Second: health.Normal}, sw)
}

func TestControlWeighsDemandNotSignal(t *testing.T) {
	c := NewControl(Settings{High: 1, Low: 0.6, UpHold: time.Second, DownHold: 5 * time.Second})
	status := health.Degraded
	// DEGRADED refuses the surge: the work drains to 0.3, but the demand
	// it refuses keeps the cluster at 2.5.
	sw := step(c, 0, 60*time.Second, &status, func(time.Duration) []Sample {
		return []Sample{{Name: "a", Signal: 0.3, Demand: 2.5}, {Name: "b", Signal: 0.3, Demand: 2.5}}
	})
	assert.Empty(t, sw, "the refused demand holds DEGRADED")
	assert.InDelta(t, 0.3, c.Last().Saturation, 1e-9)
	assert.InDelta(t, 2.5, c.Last().Demand, 1e-9)
}

func TestControlLeavesStaleMembersOut(t *testing.T) {
	c := NewControl(Settings{High: 1, Low: 0.6, UpHold: time.Second, DownHold: 5 * time.Second})
	// A member that stopped reporting while idle is unknown, not idle: the
	// two that report are full, so the cluster is.
	samples := []Sample{
		{Name: "a", Signal: 1.5, Demand: 1.5},
		{Name: "b", Signal: 1.5, Demand: 1.5},
		{Name: "c", Signal: 0, Demand: 0, Age: 3 * time.Second},
	}
	status := health.Normal
	sw := step(c, 0, 5*time.Second, &status, func(time.Duration) []Sample { return samples })
	assert.Equal(t, map[time.Duration]health.Status{time.Second: health.Degraded}, sw)
	assert.Equal(t, Reading{Saturation: 1.5, Demand: 1.5, Known: 2, Unknown: 1}, c.Last())
}

func TestControlWithTooLittleKnownGoesBackToNormal(t *testing.T) {
	c := NewControl(Settings{High: 1, Low: 0.6, UpHold: time.Second, DownHold: 5 * time.Second})
	status := health.Normal
	// One fresh member at full, two stale: not enough to go DEGRADED on.
	sw := step(c, 0, 10*time.Second, &status, func(time.Duration) []Sample {
		return []Sample{{Name: "a", Signal: 2, Demand: 2}, {Name: "b", Age: time.Minute}, {Name: "c", Age: time.Minute}}
	})
	assert.Empty(t, sw, "a minority known moves nothing")

	// DEGRADED (a person's write, say), and every signal lost: back to
	// the configured limits once the load has been unknown for the down
	// hold (it has been since 0 s), never pinned.
	status = health.Degraded
	sw = step(c, 10*time.Second, 30*time.Second, &status, func(time.Duration) []Sample {
		return []Sample{{Name: "a", Age: time.Minute}}
	})
	assert.Equal(t, map[time.Duration]health.Status{10 * time.Second: health.Normal}, sw)
	c = NewControl(Settings{High: 1, Low: 0.6, UpHold: time.Second, DownHold: 5 * time.Second})
	status = health.Degraded
	sw = step(c, 0, 30*time.Second, &status, func(d time.Duration) []Sample {
		if d < 3*time.Second {
			return three(0.8)
		}
		return nil
	})
	assert.Equal(t, map[time.Duration]health.Status{8 * time.Second: health.Normal}, sw, "unknown from 3 s")
}

func TestControlSurvivesAClockSetBack(t *testing.T) {
	// Production passes time.Now, whose monotonic reading no wall-clock
	// jump moves. Given times that do jump back an hour, the hold restarts
	// from the jump rather than waiting the hour out.
	c := NewControl(Settings{High: 1, Low: 0.6, UpHold: 2 * time.Second, DownHold: 10 * time.Second})
	assert.False(t, c.Observe(at(0), health.Normal, three(1.5)).Switch)
	assert.False(t, c.Observe(at(time.Second), health.Normal, three(1.5)).Switch)
	back := at(time.Second - time.Hour)
	assert.False(t, c.Observe(back, health.Normal, three(1.5)).Switch)
	assert.False(t, c.Observe(back.Add(time.Second), health.Normal, three(1.5)).Switch)
	d := c.Observe(back.Add(2*time.Second), health.Normal, three(1.5))
	assert.True(t, d.Switch, "one hold after the jump")
	assert.Equal(t, health.Degraded, d.To)
	assert.Contains(t, d.Why, "demand 1.50 >= high 1.00 for 2s")

	// Unknown load, timed the same way.
	assert.False(t, c.Observe(at(0), health.Degraded, nil).Switch)
	assert.False(t, c.Observe(at(-time.Hour), health.Degraded, nil).Switch)
	assert.True(t, c.Observe(at(10*time.Second-time.Hour), health.Degraded, nil).Switch)
}

func TestWriterIsTheFirstNameThatReports(t *testing.T) {
	assert.Equal(t, "", Writer(nil))
	assert.Equal(t, "a", Writer([]Sample{{Name: "c"}, {Name: "a", Age: time.Hour}, {Name: "b"}}),
		"a stale sample still names its member: it is alive, and decides on the others'")
}

func TestSettingsAreChecked(t *testing.T) {
	ok := Settings{}.WithDefaults()
	require.NoError(t, ok.Check())
	assert.Equal(t, Settings{High: 1, Low: 0.75, UpHold: time.Second, DownHold: 15 * time.Second, Stale: 2 * time.Second}, ok)
	assert.InDelta(t, 0.6, Settings{High: 0.8}.WithDefaults().Low, 1e-9, "the low mark follows a lower high one")
	for field, s := range map[string]Settings{
		"High":     {High: math.NaN()},
		"Low":      {High: 0.5, Low: 0.5},
		"UpHold":   {UpHold: -time.Second},
		"DownHold": {DownHold: 2 * time.Hour},
		"Stale":    {Stale: time.Millisecond},
	} {
		err := s.WithDefaults().Check()
		var fe *FieldError
		require.ErrorAs(t, err, &fe, field)
		assert.Equal(t, field, fe.Field)
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), -0.1, 10.5} {
		assert.ErrorIs(t, CheckSignal(v), ErrBadSignal, "%v", v)
	}
	assert.NoError(t, CheckSignal(0))
	assert.NoError(t, CheckSignal(10))
}

func TestMeterAddsTheShedDemand(t *testing.T) {
	m := NewMeter(at(0))
	_, _, ok := m.Sample(at(Period), 0, 0)
	assert.False(t, ok, "no reading, no sample")
	// NORMAL for a minute: 0.5 full while admitting 100 requests a second,
	// so a request a second brings 0.005.
	adm := int64(0)
	d := Period
	for range 120 {
		for range 10 {
			m.Read(0.5)
		}
		m.Read(math.NaN()) // dropped
		m.Read(-1)         // dropped
		d += Period
		adm += 50
		sig, dem, ok := m.Sample(at(d), adm, 0)
		require.True(t, ok)
		require.Equal(t, 0.5, sig)
		require.Equal(t, 0.5, dem, "nothing shed: demand is the signal")
	}
	// DEGRADED sheds 400 a second while the same 100 a second run: the
	// demand counts them at 0.005 each.
	for range 10 {
		m.Read(0.5)
	}
	d += Period
	adm += 50
	sig, dem, _ := m.Sample(at(d), adm, 200)
	assert.Equal(t, 0.5, sig)
	assert.InDelta(t, 2.5, dem, 0.01)
	// Nothing admitted for a period, only shed: the averages still weigh
	// it.
	m.Read(0)
	d += Period
	_, dem, _ = m.Sample(at(d), adm, 400)
	assert.InDelta(t, 2.0, dem, 0.1)
	// An absurd shed rate is capped.
	m.Read(0)
	d += Period
	_, dem, _ = m.Sample(at(d), adm, 1_000_000)
	assert.Equal(t, MaxSignal, dem)
}

func TestMeterWeighsRareLongJobs(t *testing.T) {
	// One job of 10 s at a time on one GPU: a job every 10 s keeps the
	// signal at 1. Each job a second brings 10.
	m := NewMeter(at(0))
	adm := int64(0)
	d := time.Duration(0)
	for i := range int(2 * time.Minute / Period) {
		m.Read(1)
		d += Period
		if i%int(10*time.Second/Period) == 0 {
			adm++
		}
		m.Sample(at(d), adm, 0)
	}
	assert.InDelta(t, 10, m.perReq, 1.5, "a job a second would keep ten GPUs busy")
	m.Read(1)
	d += 5 * time.Second
	_, dem, _ := m.Sample(at(d), adm, 1) // one job shed in 5 s
	assert.InDelta(t, 1+0.2*10, dem, 0.3)
}

func TestMeterDoesNotCountQueueingAsWork(t *testing.T) {
	// 0.5 full at 100 requests a second, then a surge queues ten times the
	// capacity while 500 a second are admitted, then DEGRADED sheds 400 a
	// second of it: each shed request weighs what one weighed before the
	// queue, not its wait in the queue.
	m := NewMeter(at(0))
	d, adm := time.Duration(0), int64(0)
	feed := func(signal float64, admitted, shed float64, n int) (dem float64) {
		var sh int64
		for range n {
			for range Reads {
				m.Read(signal)
			}
			d += Period
			adm += int64(admitted * Period.Seconds())
			sh += int64(shed * Period.Seconds())
			_, dem, _ = m.Sample(at(d), adm, sh)
		}
		return dem
	}
	feed(0.5, 100, 0, int(30*time.Second/Period))
	feed(10, 500, 0, int(5*time.Second/Period))
	dem := feed(0.5, 100, 400, 1)
	assert.InDelta(t, 0.5+400*0.005, dem, 0.05)
}
