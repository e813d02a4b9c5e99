package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSaveToken(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dir := t.TempDir()
	stale := filepath.Join(dir, "health.admin-token")
	require.NoError(t, os.WriteFile(stale, []byte("left by a crashed run\n"), 0o644))

	tests := []struct {
		name, stateFile string
		wantDir         string // the file's directory, if wantPath is ""
		wantPath        string
	}{
		{"no state file: a new file in TMPDIR", "", tmp, ""},
		{"beside the state file, replacing a stale one", filepath.Join(dir, "health.json"), "", stale},
		{"a state file without an extension", filepath.Join(dir, "state"), "", filepath.Join(dir, "state.admin-token")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := randomToken()
			path, err := saveToken(token, tt.stateFile)
			require.NoError(t, err, "saveToken(_, %q)", tt.stateFile)
			t.Cleanup(func() { _ = os.Remove(path) })
			if tt.wantPath != "" {
				assert.Equal(t, tt.wantPath, path)
			} else {
				assert.Equal(t, tt.wantDir, filepath.Dir(path))
			}
			info, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "mode of %s", path)
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, token+"\n", string(b))
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), ".tmp-", "a temporary file left beside the state file")
	}

	_, err = saveToken(randomToken(), filepath.Join(dir, "missing", "health.json"))
	assert.ErrorContains(t, err, "save admin token", "a state file in a directory that does not exist")
	assert.Len(t, randomToken(), 48)
	assert.NotEqual(t, randomToken(), randomToken())
}
