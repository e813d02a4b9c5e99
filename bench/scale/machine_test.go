package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePids(t *testing.T) {
	got, err := parsePids("loadgen=12, floor=34")
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"loadgen": 12, "floor": 34}, got)
	got, err = parsePids("")
	require.NoError(t, err)
	assert.Empty(t, got)
	for _, bad := range []string{"loadgen", "=12", "loadgen=x", "loadgen=0"} {
		_, err := parsePids(bad)
		assert.Error(t, err, "parsePids(%q)", bad)
	}
}

func TestParseProcTicks(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime ...
	got, err := parseProcTicks("4242 (load gen) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0\n")
	require.NoError(t, err)
	assert.Equal(t, uint64(175), got, "utime + stime, with a space in the name")

	_, err = parseProcTicks("4242 (x) S 1 2")
	assert.Error(t, err)
	_, err = parseProcTicks("no parenthesis")
	assert.Error(t, err)
}

func TestOthers(t *testing.T) {
	// 10 s on 2 CPUs at 100 ticks a second: 2,000 ticks, 1,000 busy. The
	// two nodes used 2 CPU-seconds of the 20 (10%), loadgen 200 ticks (10%).
	a := snapAt(0, 0, 0, 0, nil, "a", "b")
	b := snapAt(10*time.Second, 1, 0, 0, nil, "a", "b")
	a.Procs, b.Procs = map[string]uint64{"loadgen": 50}, map[string]uint64{"loadgen": 250, "gone": 9}
	procs, others, _, ok := rest(a, b)
	require.True(t, ok)
	assert.InDelta(t, 0.1, procs["loadgen"], 1e-9)
	assert.NotContains(t, procs, "gone", "a process in one snapshot only")
	assert.InDelta(t, 0.3, others, 1e-9)

	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	require.NoError(t, writeJSON(pa, a))
	require.NoError(t, writeJSON(pb, b))
	var out strings.Builder
	require.NoError(t, run(t.Context(), []string{"others", "-a", pa, "-b", pb}, &out, io.Discard))
	assert.Equal(t, "30\n", out.String())

	a.Machine = nil
	require.NoError(t, writeJSON(pa, a))
	out.Reset()
	require.NoError(t, run(t.Context(), []string{"others", "-a", pa, "-b", pb}, &out, io.Discard))
	assert.Equal(t, "-1\n", out.String(), "without the machine's counters")
}
