package main

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/cluster"
)

// fastPhases fit cluster.TestMemberlistConfig's timings.
var fastPhases = Phases{
	Join:    10 * time.Second,
	Quiet:   5 * time.Second,
	Tick:    100 * time.Millisecond,
	Idle:    200 * time.Millisecond,
	Reach:   3 * time.Second,
	Window:  300 * time.Millisecond,
	Laggard: 5 * time.Second,
	Dead:    10 * time.Second,
	Poll:    5 * time.Millisecond,
}

func TestRunMeasuresEveryPhase(t *testing.T) {
	r, err := Run(t.Context(), Spec{
		Label: "test", Members: 6, Base: cluster.TestMemberlistConfig,
		Broadcasts: 2, Laggards: 1, LateJoin: true, Victims: 1, Phases: fastPhases,
	})
	require.NoError(t, err)
	assert.Zero(t, r.JoinLeft, "members that did not converge")
	assert.Positive(t, r.Join)
	assert.Len(t, r.Reach, 2, "broadcasts that reached every member")
	assert.Zero(t, r.Missed)
	assert.Len(t, r.Laggard, 2, "laggard catch-ups, one per broadcast")
	assert.Zero(t, r.LaggardLeft)
	assert.Positive(t, r.LateJoin, "late joiner")
	assert.Len(t, r.Dead, 1, "victims seen dead")
	assert.Zero(t, r.DeadLeft)
	assert.Zero(t, r.Unfiltered, "laggard packets that could not be parsed")
	assert.Positive(t, r.Idle, "idle bytes")
	assert.Positive(t, r.PerXchg, "bytes per push/pull")
}

// TestLaggardLearnsOnlyByPushPull: with push/pull an hour away, a member
// that drops user messages never hears a state the others all have, so the
// filter catches what memberlist really sends (compressed, with CRCs).
func TestLaggardLearnsOnlyByPushPull(t *testing.T) {
	noPushPull := func() *memberlist.Config {
		c := cluster.TestMemberlistConfig()
		c.PushPullInterval = time.Hour
		return c
	}
	ph := fastPhases
	ph.Laggard = time.Second
	r, err := Run(t.Context(), Spec{Label: "deaf", Members: 5, Base: noPushPull, Compression: true, Broadcasts: 1, Laggards: 1, Phases: ph})
	require.NoError(t, err)
	assert.Len(t, r.Reach, 1, "the others got the broadcast")
	assert.Equal(t, 1, r.LaggardLeft, "the laggard learnt the state without push/pull")
	assert.Zero(t, r.Unfiltered)
}

func TestRunRejectsBadSpecs(t *testing.T) {
	_, err := Run(t.Context(), Spec{Label: "one", Members: 1, Phases: fastPhases})
	assert.Error(t, err)
	_, err = Run(t.Context(), Spec{Label: "crowded", Members: 4, Laggards: 2, Victims: 1, Phases: fastPhases})
	assert.Error(t, err)
}

func TestLANConfigIsTheSweepsBaseline(t *testing.T) {
	c := lanConfig()
	d := memberlist.DefaultLANConfig()
	assert.Equal(t, cluster.DeadNodeReclaimTime, c.DeadNodeReclaimTime)
	assert.Equal(t, d.GossipNodes, c.GossipNodes)
	assert.Equal(t, d.PushPullInterval, c.PushPullInterval)

	s := Spec{Settings: Settings{GossipNodes: 6, RetransmitMult: 2, PushPullInterval: 15 * time.Second, GossipInterval: 100 * time.Millisecond}}
	got := s.base()
	assert.Equal(t, 6, got.GossipNodes)
	assert.Equal(t, 2, got.RetransmitMult)
	assert.Equal(t, 15*time.Second, got.PushPullInterval)
	assert.Equal(t, 100*time.Millisecond, got.GossipInterval)
	assert.Equal(t, d.ProbeInterval, got.ProbeInterval, "untouched settings stay LAN")
}

func TestPlan(t *testing.T) {
	o, err := parse([]string{"-sizes", "10,20", "-laggards", "3"}, nil)
	require.NoError(t, err)
	specs := plan(o)
	require.Len(t, specs, 2*(1+len(variants))+1+2, "both sizes, a compressed check, two push/pull checks")
	assert.Equal(t, defaultLabel, specs[0].Label)
	assert.Equal(t, 10, specs[0].Members)
	last := specs[len(specs)-1]
	assert.Equal(t, 3, last.Laggards)
	assert.Equal(t, 20, last.Members)
	assert.Equal(t, 2*time.Second, last.Settings.PushPullInterval)

	o, err = parse([]string{"-sizes", "10", "-sweep=false", "-long"}, nil)
	require.NoError(t, err)
	assert.Len(t, plan(o), 4, "default, compressed, check, long check")
	assert.True(t, plan(o)[1].Compression)

	_, err = parse([]string{"-sizes", "1"}, nil)
	assert.Error(t, err)
}
