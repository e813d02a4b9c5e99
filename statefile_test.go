package tierlimit

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/health"
)

func TestStateFileKeepsDegradedAcrossARestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "health.json")
	first, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.StateFile = state })
	assert.Equal(t, Normal, first.Health().Status, "no file yet: NORMAL")

	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/system/health", strings.NewReader(`{"status":"DEGRADED"}`))
	r.Header.Set("Authorization", "Bearer "+testToken)
	w := httptest.NewRecorder()
	first.AdminHandler().ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	written := first.Health()
	b, err := os.ReadFile(state)
	require.NoError(t, err, "the POST was answered, so the file holds the state")
	onDisk, err := decodeState(b)
	require.NoError(t, err)
	assert.Equal(t, written.Version, onDisk.Health.Version)
	require.NoError(t, first.Close(t.Context()))

	second, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.StateFile = state; c.NodeName = "solo-again" })
	assert.Equal(t, Degraded, second.Health().Status, "the restarted node comes back DEGRADED")
	assert.Equal(t, written.Version, second.Health().Version)
	assert.Equal(t, 1, admitted(t, second, "free-1", 3), "and applies the DEGRADED limit")

	// A later write wins over the restored one, and replaces it on disk.
	s, err := second.SetHealth(Normal)
	require.NoError(t, err)
	assert.True(t, s.Newer(written))
	b, err = os.ReadFile(state)
	require.NoError(t, err)
	onDisk, err = decodeState(b)
	require.NoError(t, err)
	assert.Equal(t, s.Version, onDisk.Health.Version)
	entries, err := os.ReadDir(filepath.Dir(state))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left beside the state file")
}

func TestStateFileRefusals(t *testing.T) {
	dir := t.TempDir()
	path := writeTiers(t, filepath.Join(dir, "tiers.json"), tenSecondTiers)
	garbage := filepath.Join(dir, "garbage.json")
	require.NoError(t, os.WriteFile(garbage, []byte("not a state"), 0o600))
	_, err := New(Config{TiersFile: path, StateFile: garbage})
	assert.ErrorContains(t, err, "Config.StateFile (-state-file): state file")

	// A file stamped an hour ahead (a clock that was wrong) is not taken.
	future := filepath.Join(dir, "future.json")
	ahead, _ := health.NewHolder("x").Set(Degraded, time.Now().Add(time.Hour))
	require.NoError(t, os.WriteFile(future, ahead.Encode(), 0o600))
	lim, err := New(Config{TiersFile: path, StateFile: future})
	require.NoError(t, err)
	t.Cleanup(func() { _ = lim.Close(t.Context()) })
	assert.Equal(t, Normal, lim.Health().Status)

	// A write that cannot be saved is in force, and says it was not saved.
	unsaved, err := New(Config{TiersFile: path, NodeName: "u", AdminToken: testToken, StateFile: filepath.Join(dir, "gone", "state.json")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = unsaved.Close(t.Context()) })
	_, err = unsaved.SetHealth(Degraded)
	assert.ErrorContains(t, err, "save state")
	assert.Equal(t, Degraded, unsaved.Health().Status)
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/system/health", strings.NewReader(`{"status":"NORMAL"}`))
	r.Header.Set("Authorization", "Bearer "+testToken)
	w := httptest.NewRecorder()
	unsaved.AdminHandler().ServeHTTP(w, r)
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), `"code":"not_saved"`)
}

func TestDecodeState(t *testing.T) {
	old := health.State{Status: health.Degraded, Version: 7, Origin: "a"}
	d, err := decodeState(old.Encode())
	require.NoError(t, err, "a file that holds only a state, as it once did")
	assert.Equal(t, old, d.Health)
	assert.Empty(t, d.Members)

	d, err = decodeState([]byte(`{"health":{"status":"DEGRADED","version":7,"origin":"a"},"members":["10.0.0.2:7946","[::1]:7946"]}`))
	require.NoError(t, err)
	assert.Equal(t, old, d.Health)
	assert.Equal(t, []string{"10.0.0.2:7946", "[::1]:7946"}, d.Members)

	tooMany := `{"health":{"status":"NORMAL"},"members":[` + strings.Repeat(`"10.0.0.2:7946",`, maxStateFilePeers) + `"10.0.0.2:7946"]}`
	for name, doc := range map[string]string{
		"bad member":   `{"health":{"status":"NORMAL"},"members":["no-port"]}`,
		"too many":     tooMany,
		"bad status":   `{"health":{"status":"MAYBE"}}`,
		"not json":     `members`,
		"huge":         `{"health":{"status":"NORMAL"},"x":"` + strings.Repeat("x", maxStateFileSize) + `"}`,
		"members type": `{"health":{"status":"NORMAL"},"members":"10.0.0.2:7946"}`,
	} {
		_, err := decodeState([]byte(doc))
		assert.Error(t, err, name)
	}
}
