package surge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/health"
)

func TestWatch(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w := NewWatch("http://n1", start, 3)
	assert.Equal(t, "", w.Status(), "nothing before the first answer")
	answer := func(status health.Status, version uint64, mode string, signal, sat, demand float64) api.HealthResponse {
		return api.HealthResponse{Status: status, Version: version, Origin: "n1", Node: "n1", Mode: mode, Why: "why " + mode,
			UpdatedAt: start.Add(time.Duration(version) * time.Second),
			Load:      &api.Load{InFlight: int64(signal * 4), Capacity: 4, Signal: signal},
			Cluster:   &api.ClusterLoad{Saturation: sat, Demand: demand, Known: 3, Writer: "n1"}}
	}
	w.Answer(ms(-50), answer(health.Normal, 1, api.ModeOff, 0.5, 0.5, 0.5)) // before offset 0: a change, no load
	w.Answer(ms(100), answer(health.Normal, 1, ModeAuto, 0.5, 0.4, 0.4))
	w.Answer(ms(600), answer(health.Normal, 1, ModeAuto, 1.5, 0.8, 0.9))
	noLoad := answer(health.Normal, 1, ModeAuto, 0, 0, 0)
	noLoad.Cluster = nil
	w.Answer(ms(700), noLoad) // no cluster load yet: not in the means
	w.Failed()
	w.Answer(ms(1200), answer(health.Degraded, 2, ModeAuto, 3, 2, 3.5))
	w.Answer(ms(1300), answer(health.Degraded, 2, ModeAuto, 2, 2, 3.5)) // no change
	w.Answer(ms(2500), answer(health.Normal, 3, ModeAuto, 0.25, 0.5, 0.5))
	w.Answer(ms(3000), answer(health.Normal, 3, ModeAuto, 0.25, 0.5, 0.5)) // after the run: no second
	assert.Equal(t, Normal, w.Status())
	assert.Equal(t, ModeAuto, w.Mode())

	n := w.Node()
	assert.Equal(t, "http://n1", n.Target)
	assert.Equal(t, "n1", n.Name)
	assert.Equal(t, "n1", n.Writer)
	assert.Equal(t, 9, n.Polls)
	assert.Equal(t, 1, n.PollErrors)
	require.Len(t, n.Changes, 4, "NORMAL off, NORMAL auto, DEGRADED, NORMAL")
	assert.Equal(t, []string{"off", "auto", "auto", "auto"}, []string{n.Changes[0].Mode, n.Changes[1].Mode, n.Changes[2].Mode, n.Changes[3].Mode})
	c := n.Changes[2]
	assert.Equal(t, ms(1200), c.At)
	assert.Equal(t, Degraded, c.Status)
	assert.Equal(t, "2", c.Version)
	assert.Equal(t, "why auto", c.Why)
	require.NotNil(t, c.Written)
	assert.Equal(t, 2*time.Second, c.Written.Duration(), "updated_at against the start")
	assert.Equal(t, ms(2500), n.Changes[3].At)

	assert.Equal(t, []int{2, 2, 1}, n.LoadPolls)
	assert.Equal(t, []float64{0.6, 2, 0.5}, n.Saturation)
	assert.Equal(t, []float64{0.65, 3.5, 0.5}, n.Demand)
	assert.Equal(t, []float64{1, 2.5, 0.25}, n.Signal)
	assert.Equal(t, []float64{1.5, 3, 0.25}, n.SignalMax)
}
