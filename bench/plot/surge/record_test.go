package surge

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sample returns a valid 10 s run in auto mode: calm 0-3 s, a surge 3-7 s,
// calm 7-10 s. Each paid tier (pro, enterprise) sends 2 requests a second,
// unloaded at about 100 ms, queued behind the surge in seconds 3-5 and
// unloaded again from second 6; free sends 100 a second in the surge,
// refused once DEGRADED is in force. The three nodes report DEGRADED at
// 4.3, 4.4 and 4.45 s (written at 4.2 s) and NORMAL at 9.1, 9.2 and 9.3
// s; their jobs queue (a signal above 1) in seconds 3-5.
func sample() *Run {
	const n = 10
	zeros := func() []int { return make([]int, n) }
	floats := func() []float64 { return make([]float64, n) }
	paid := func(name string, lat [][]float64) Tier {
		t := Tier{Name: name, Keys: 2, Burst: 1000, Limit: 1000, Degraded: 1000,
			Admitted: zeros(), Refused: zeros(), Other: zeros(), Failed: zeros(), TimedOut: zeros(), Unsent: zeros(),
			P50: floats(), P99: floats(), Max: floats(), Latency: lat}
		for s := range n {
			t.Admitted[s] = len(lat[s])
		}
		return t
	}
	unloaded := []float64{104, 105}
	node := func(name string, degraded, normal float64) Node {
		written := ms(4200)
		nd := Node{Target: "http://" + name, Name: name, Polls: 100, Writer: "n1",
			Changes: []Change{
				{At: ms(-100), Status: Normal, Version: "1", Mode: ModeAuto},
				{At: ms(degraded), Status: Degraded, Version: "2", Origin: "n1", Mode: ModeAuto, Why: "auto: demand 3.50 >= high 1.00 for 2s", Written: &written},
				{At: ms(normal), Status: Normal, Version: "3", Origin: "n1", Mode: ModeAuto, Why: "auto: demand 0.50 <= low 0.75 for 15s"},
			},
			LoadPolls:  []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10},
			Saturation: floats(), Demand: floats(), Signal: floats(),
			SignalMax: []float64{0.5, 0.75, 0.5, 5, 8, 4, 0.75, 0.5, 0.5, 0.5}}
		return nd
	}
	return &Run{
		Name: "auto", Mode: ModeAuto, Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Targets: []string{"http://n1", "http://n2", "http://n3"}, WindowSeconds: 60, Capacity: 4,
		Work: ms(100), Timeout: ms(10000), MaxInFlight: 6000, Poll: ms(100),
		Settings: &Settings{High: 1, Low: 0.75, UpHold: "2s", DownHold: "15s"},
		Phases: []Phase{
			{Name: "before", Start: ms(0), End: ms(3000), Rates: map[string]float64{"pro": 2, "enterprise": 2}},
			{Name: PhaseSurge, Start: ms(3000), End: ms(7000), Rates: map[string]float64{"pro": 2, "enterprise": 2, "free": 100}},
			{Name: "after", Start: ms(7000), End: ms(10000), Rates: map[string]float64{"pro": 2, "enterprise": 2}},
		},
		Paid: []string{"pro", "enterprise"},
		Tiers: []Tier{
			{Name: "free", Keys: 10, Burst: 150, Limit: 150, Degraded: 2,
				Admitted: []int{0, 0, 0, 100, 40, 0, 0, 0, 0, 0}, Refused: []int{0, 0, 0, 0, 60, 100, 100, 0, 0, 0},
				Other: zeros(), Failed: zeros(), TimedOut: zeros(), Unsent: zeros(), P50: floats(), P99: floats(), Max: floats()},
			paid("pro", [][]float64{{150, 160}, {100, 102}, {104, 105}, {500, 900}, {2000, 2100}, {1200, 1500}, {110, 112}, unloaded, unloaded, unloaded}),
			paid("enterprise", [][]float64{{140, 145}, {101, 103}, {100, 106}, {700, 800}, {2200, 2300}, {1000, 1100}, {111, 140}, unloaded, unloaded, unloaded}),
		},
		Nodes:   []Node{node("n1", 4300, 9100), node("n2", 4400, 9200), node("n3", 4450, 9300)},
		Seconds: n,
	}
}

func TestWriteRead(t *testing.T) {
	f := &File{Commit: "abc1234", Runs: []Run{*sample()}}
	require.NoError(t, f.Validate())
	var b bytes.Buffer
	require.NoError(t, Write(&b, f))
	assert.Contains(t, b.String(), `"admitted": [0,0,0,100,40,0,0,0,0,0]`, "a series on one line")
	assert.Contains(t, b.String(), `[1200,1500]`, "a second's latencies on one line")
	assert.Contains(t, b.String(), `"to_degraded_s": 1.45`, "the summary is written with the run")
	assert.Nil(t, f.Runs[0].Summary, "Write leaves f as it was")

	back, err := Read(&b)
	require.NoError(t, err)
	assert.Equal(t, "abc1234", back.Commit)
	require.Len(t, back.Runs, 1)
	r := back.Runs[0]
	require.NotNil(t, r.Summary)
	assert.Equal(t, Summarize(sample()), *r.Summary)
	r.Summary = nil
	want := sample()
	assert.Equal(t, want.Start, r.Start.UTC())
	r.Start = want.Start
	assert.Equal(t, *want, r)

	dir := t.TempDir()
	path := filepath.Join(dir, "auto.json")
	require.NoError(t, WriteFile(path, f))
	got, err := ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "auto", got.Run("auto").Name)
	assert.Nil(t, got.Run("manual"))

	require.NoError(t, os.WriteFile(path, []byte(`{"runs": []}`), 0o644))
	_, err = ReadFile(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), path+": read surge: no runs")
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(r *Run)
		want   string
	}{
		{"no name", func(r *Run) { r.Name = "" }, "run: no name"},
		{"mode", func(r *Run) { r.Mode = "on" }, `mode "on"`},
		{"no surge", func(r *Run) { r.Phases[1].Name = "storm" }, `no phase named "surge"`},
		{"phases out of order", func(r *Run) { r.Phases[2].Start = ms(6000) }, "phase 2 (after) out of order"},
		{"no timeout", func(r *Run) { r.Timeout = 0 }, "want them positive"},
		{"paid unknown", func(r *Run) { r.Paid = []string{"gold"} }, "paid tier gold: no such tier"},
		{"paid without latencies", func(r *Run) { r.Paid = []string{"free"} }, "paid tier free keeps no latencies"},
		{"short series", func(r *Run) { r.Tiers[0].Refused = r.Tiers[0].Refused[:9] }, "tier free: refused has 9 seconds, want 10"},
		{"latencies per second", func(r *Run) { r.Tiers[1].Latency = r.Tiers[1].Latency[:9] }, "tier pro: latency_ms has 9 seconds"},
		{"a latency missing", func(r *Run) { r.Tiers[1].Latency[3] = []float64{500} }, "tier pro: second 3: 1 latencies for 2 requests"},
		{"timed out", func(r *Run) { r.Tiers[0].TimedOut[2] = 1 }, "second 2: 1 timed out of 0 failed"},
		{"node series", func(r *Run) { r.Nodes[2].SignalMax = nil }, "node http://n3: signal_max has 0 seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sample()
			tc.break_(r)
			err := r.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	f := &File{Runs: []Run{*sample(), *sample()}}
	err := f.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run auto given twice")
	assert.True(t, strings.HasPrefix((&File{}).Validate().Error(), "no runs"))
}
