package jsonfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type rec struct {
	N int `json:"n"`
}

func (r *rec) Validate() error {
	if r.N < 0 {
		return errors.New("n: negative")
	}
	return nil
}

func TestRead(t *testing.T) {
	r, err := Read[rec](strings.NewReader(`{"n": 3}`), "read rec")
	require.NoError(t, err)
	assert.Equal(t, 3, r.N)
	_, err = Read[rec](strings.NewReader(`{"n": -1}`), "read rec")
	assert.EqualError(t, err, "read rec: n: negative")
	_, err = Read[rec](strings.NewReader(`{"n": "x"`), "read rec")
	assert.ErrorContains(t, err, "read rec: ")
}

func TestReadFile(t *testing.T) {
	read := func(rd io.Reader) (*rec, error) { return Read[rec](rd, "read rec") }
	path := filepath.Join(t.TempDir(), "rec.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"n": 2}`), 0o644))
	r, err := ReadFile(path, read)
	require.NoError(t, err)
	assert.Equal(t, 2, r.N)
	require.NoError(t, os.WriteFile(path, []byte(`{"n": -1}`), 0o644))
	_, err = ReadFile(path, read)
	assert.EqualError(t, err, path+": read rec: n: negative")
	_, err = ReadFile(filepath.Join(t.TempDir(), "none.json"), read)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}
