package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCounterKeys(t *testing.T) {
	assert.Equal(t, "k1 cost", CostKey("k1"))
	assert.Equal(t, "k1", RouteKey(CostKey("k1")))
	assert.Equal(t, "k1", RouteKey("k1"))
	require.NoError(t, CheckCounterKey("k1"))
	require.NoError(t, CheckCounterKey(CostKey("k1")))
	require.NoError(t, CheckCounterKey(CostKey(strings.Repeat("x", MaxKeyLen))), "the longest API key has a cost key")
	for counter, want := range map[string]string{
		"k1 gpu":       "counter key has an unknown suffix",
		"k1 cost cost": "counter key has an unknown suffix",
		" cost":        "empty API key",
		"k\x01 cost":   "API key has byte 0x1 at 1; want printable ASCII without spaces",
		"k1 cost\x00":  "counter key has an unknown suffix",
		"":             "empty API key",
	} {
		assert.EqualError(t, CheckCounterKey(counter), want, "CheckCounterKey(%q)", counter)
	}
}
