package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/ring"
)

func TestLoopbackURL(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://127.0.0.22:25300", "http://[::1]:80"} {
		assert.NoError(t, loopbackURL(u), "loopbackURL(%q)", u)
	}
	for _, u := range []string{"http://10.0.0.1:8080", "http://localhost:8080", "https://127.0.0.1:8080", "http://example.com", "::"} {
		assert.Error(t, loopbackURL(u), "loopbackURL(%q)", u)
	}
}

func TestSumSeries(t *testing.T) {
	text := `# HELP tierlimit_local_fallbacks_total Checks decided locally.
# TYPE tierlimit_local_fallbacks_total counter
tierlimit_local_fallbacks_total{reason="breaker_open"} 12
tierlimit_local_fallbacks_total{reason="timeout"} 3
tierlimit_local_fallbacks_totalish 100
tierlimit_store_keys 8
`
	got, err := sumSeries(strings.NewReader(text), "tierlimit_local_fallbacks_total")
	require.NoError(t, err)
	assert.Equal(t, 15.0, got)
	got, err = sumSeries(strings.NewReader(text), "tierlimit_store_keys")
	require.NoError(t, err)
	assert.Equal(t, 8.0, got)
}

func TestPickKeys(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	keys := map[string]string{}
	for i := range 60 {
		keys[fmt.Sprintf("k-pro-%02d", i)] = "pro"
		keys[fmt.Sprintf("k-ent-%02d", i)] = "enterprise"
	}
	got, err := pickKeys(keys, "pro", names, "n2", 4)
	require.NoError(t, err)
	require.Len(t, got, 4)
	rg := ring.New()
	rg.Set([]string{"n3", "n1", "n2"}) // the order the nodes learn of each other does not matter
	for _, k := range got {
		owner, _ := rg.Owner(k)
		assert.Equal(t, "n2", owner, "owner of %s", k)
		assert.Equal(t, "pro", keys[k], "tier of %s", k)
	}
	assert.IsIncreasing(t, got)

	_, err = pickKeys(keys, "pro", names, "n2", 60)
	assert.ErrorContains(t, err, "generate more keys")
}
