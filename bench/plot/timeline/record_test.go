package timeline

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sample returns a valid record of a 6 s run: NORMAL 2 s, DEGRADED 2 s
// (posted to n1 at 2.001 s), NORMAL 2 s (posted to n2 at 4.002 s), with
// free keys refused in DEGRADED (by the requests limit, one by cost) and
// pro keys unchanged, every request a job of 100 ms (free ones cost 15
// audio-seconds, pro ones 40), and three nodes that report each state a
// few tens of milliseconds after its POST.
func sample() *Record {
	return &Record{
		Start:         time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Targets:       []string{"http://n1", "http://n2", "http://n3"},
		WindowSeconds: 60,
		CostUnit:      "audio-seconds",
		Work:          ms(100),
		Seconds:       6,
		Phases: []Phase{
			{Status: "NORMAL", Start: ms(0), End: ms(2000)},
			{Status: "DEGRADED", Start: ms(2000), End: ms(4000),
				Post: &Post{Target: "http://n1", Node: "n1", Sent: ms(2001), Answered: ms(2003), HTTPStatus: 200, Version: "7"}},
			{Status: "NORMAL", Start: ms(4000), End: ms(6000),
				Post: &Post{Target: "http://n2", Node: "n2", Sent: ms(4002), Answered: ms(4004), HTTPStatus: 200, Version: "9"}},
		},
		Tiers: []Tier{
			{Name: "free", Keys: 30, Rate: 9, Burst: 20, Limit: 10, Degraded: 2,
				Cost: &Limits{Burst: 600, Limit: 300, Degraded: 60}, Concurrency: &Limits{Burst: 2, Limit: 1, Degraded: 1},
				Estimate: 20, CostPerJob: 15,
				Admitted: []int{9, 9, 1, 0, 8, 9}, CostAdmitted: []int{135, 135, 15, 0, 120, 135},
				Refused:   []int{0, 0, 8, 9, 1, 0},
				RefusedBy: map[string][]int{"requests": {0, 0, 7, 9, 1, 0}, "cost": {0, 0, 1, 0, 0, 0}},
				Other:     []int{0, 0, 0, 0, 0, 0}, Failed: []int{0, 0, 0, 0, 0, 0},
				LimitMin: []int{20, 20, 2, 2, 2, 20}, LimitMax: []int{20, 20, 20, 2, 20, 20}},
			{Name: "pro", Keys: 10, Rate: 15, Burst: 150, Limit: 100, Degraded: 100,
				Cost: &Limits{Burst: 9000, Limit: 6000, Degraded: 6000}, Concurrency: &Limits{Burst: 15, Limit: 10, Degraded: 10},
				Estimate: 50, CostPerJob: 40,
				Admitted: []int{15, 15, 15, 15, 15, 15}, CostAdmitted: []int{600, 600, 600, 600, 600, 600},
				Refused: []int{0, 0, 0, 0, 0, 0},
				Other:   []int{0, 0, 0, 0, 0, 0}, Failed: []int{0, 0, 0, 1, 0, 0},
				LimitMin: []int{150, 150, 100, 100, 100, 150}, LimitMax: []int{150, 150, 150, 100, 150, 150}},
		},
		Nodes: []Node{
			{Target: "http://n1", Name: "n1", Polls: 240, Changes: []Change{
				{At: ms(-190), Status: "NORMAL", Version: "0"},
				{At: ms(2010), Status: "DEGRADED", Version: "7", Origin: "n1"},
				{At: ms(4080), Status: "NORMAL", Version: "9", Origin: "n2"}}},
			{Target: "http://n2", Name: "n2", Polls: 240, Changes: []Change{
				{At: ms(-190), Status: "NORMAL", Version: "0"},
				{At: ms(2078), Status: "DEGRADED", Version: "7", Origin: "n1"},
				{At: ms(4006), Status: "NORMAL", Version: "9", Origin: "n2"}}},
			{Target: "http://n3", Name: "n3", Polls: 240, Changes: []Change{
				{At: ms(-190), Status: "NORMAL", Version: "0"},
				{At: ms(2055), Status: "DEGRADED", Version: "7", Origin: "n1"},
				{At: ms(4061), Status: "NORMAL", Version: "9", Origin: "n2"}}},
		},
	}
}

func TestOffsetJSON(t *testing.T) {
	for _, tc := range []struct {
		o    Offset
		json string
	}{
		{0, "0"},
		{ms(20000), "20000"},
		{Offset(1500 * time.Microsecond), "1.5"},
		{Offset(1234567 * time.Nanosecond), "1.235"}, // to the microsecond
		{ms(-199), "-199"},
	} {
		got, err := json.Marshal(tc.o)
		require.NoError(t, err)
		assert.Equal(t, tc.json, string(got), "Marshal(%v)", time.Duration(tc.o))
	}
	var o Offset
	require.NoError(t, json.Unmarshal([]byte("4077.763"), &o))
	assert.Equal(t, Offset(4077763*time.Microsecond), o)
	assert.Error(t, json.Unmarshal([]byte(`"4077"`), &o), "a string is not an offset")
	assert.Error(t, json.Unmarshal([]byte("1e300"), &o), "an offset past the range of a Duration")
}

func TestOffsetSecond(t *testing.T) {
	for _, tc := range []struct {
		o  Offset
		s  int
		ok bool
	}{
		{0, 0, true},
		{ms(999), 0, true},
		{ms(1000), 1, true},
		{ms(2999), 2, true},
		{ms(3000), 3, false}, // past a run of 3 s
		{-1, 0, false},
	} {
		s, ok := tc.o.Second(3)
		assert.Equal(t, tc.ok, ok, "%v", tc.o.Duration())
		if ok {
			assert.Equal(t, tc.s, s, "%v", tc.o.Duration())
		}
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	want := sample()
	var b bytes.Buffer
	require.NoError(t, Write(&b, want))
	got, err := Read(&b)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestReadFileNamesThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timeline.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"phases": []}`), 0o644))
	_, err := ReadFile(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), "no phases")
}

func TestReadRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(r *Record)
		want   string
	}{
		{"no phases", func(r *Record) { r.Phases = nil }, "no phases"},
		{"no tiers", func(r *Record) { r.Tiers = nil }, "no tiers"},
		{"short counts", func(r *Record) { r.Tiers[1].Refused = r.Tiers[1].Refused[:5] }, "tier pro: refused has 5 seconds, want 6"},
		{"short costs", func(r *Record) { r.Tiers[1].CostAdmitted = r.Tiers[1].CostAdmitted[:5] }, "tier pro: cost_admitted has 5 seconds, want 6"},
		{"short refusals", func(r *Record) { r.Tiers[0].RefusedBy["cost"] = []int{0, 0, 1} }, "tier free: refused_by cost has 3 seconds, want 6"},
		{"refusals that do not add up", func(r *Record) { r.Tiers[0].RefusedBy["cost"][3] = 1 }, "tier free: second 3: refused_by adds up to 10, refused is 9"},
		{"phase ends before it starts", func(r *Record) { r.Phases[1].End = ms(1000) }, "phase 1 (DEGRADED): ends at 1000 ms"},
		{"phases overlap", func(r *Record) { r.Phases[2].Start = ms(3000) }, "phase 2 (NORMAL): starts before phase 1 ends"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sample()
			tc.mutate(r)
			var b bytes.Buffer
			require.NoError(t, Write(&b, r))
			_, err := Read(&b)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := Read(strings.NewReader("{"))
	assert.Error(t, err, "Read of a truncated document")
}

func TestReadRecordWithoutCosts(t *testing.T) {
	// A record of a run before costs (as the pictures' were) still reads.
	r := sample()
	r.CostUnit, r.Work = "", 0
	for i := range r.Tiers {
		tr := &r.Tiers[i]
		tr.Cost, tr.Concurrency, tr.Estimate, tr.CostPerJob, tr.CostAdmitted, tr.RefusedBy = nil, nil, 0, 0, nil, nil
	}
	var b bytes.Buffer
	require.NoError(t, Write(&b, r))
	for _, field := range []string{"cost", "refused_by", "work_ms", "estimate"} {
		assert.NotContains(t, b.String(), `"`+field+`"`, "nothing written of a run without costs")
	}
	got, err := Read(&b)
	require.NoError(t, err)
	assert.Equal(t, r, got)
}

func TestRefusals(t *testing.T) {
	assert.Equal(t, []string{"requests", "cost", "concurrency", "tokens", "unnamed"},
		Refusals(map[string]int{"unnamed": 1, "tokens": 1, "concurrency": 1, "requests": 1, "cost": 1}))
	assert.Equal(t, []string{"cost"}, Refusals(map[string][]int{"cost": nil}))
	assert.Empty(t, Refusals(map[string]int(nil)))
}

func TestRecordTier(t *testing.T) {
	r := sample()
	require.NotNil(t, r.Tier("pro"))
	assert.Equal(t, 150, r.Tier("pro").Burst)
	assert.Nil(t, r.Tier("gold"))
	assert.Equal(t, ms(6000), r.End())
}
