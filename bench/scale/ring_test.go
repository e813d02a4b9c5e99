package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("10 30,60")
	require.NoError(t, err)
	assert.Equal(t, []int{10, 30, 60}, got)
	for _, bad := range []string{"", "0", "ten", "10,-1"} {
		_, err := parseSizes(bad)
		assert.Error(t, err, "parseSizes(%q)", bad)
	}
}

func TestTimeRing(t *testing.T) {
	if testing.Short() {
		t.Skip("three benchmark runs: about three seconds")
	}
	got := timeRing(5)
	assert.Equal(t, 5, got.Members)
	assert.Positive(t, got.NsPerOp)
	assert.Positive(t, got.Runs)
}
