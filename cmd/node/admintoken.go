package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// randomToken returns a new admin token: 24 random bytes in hex.
func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// saveToken writes token, for the operator of a node that was given none,
// to a file only this user may read (mode 0600), and returns its path. The
// token never goes into a log: logs travel to log stores that many people
// read. With a state file, the token's file lies beside it, named after
// it (/state/health.json: /state/health.admin-token), and replaces one a
// crashed run left; without one, it is a new file in the system's
// temporary directory ($TMPDIR). The caller removes it when the node
// stops, as the token dies with the process.
func saveToken(token, stateFile string) (string, error) {
	if stateFile == "" {
		f, err := os.CreateTemp("", "tierlimit-admin-token-*") // 0600, a new name
		if err != nil {
			return "", fmt.Errorf("save admin token: %w", err)
		}
		return f.Name(), writeToken(f, token)
	}
	path := strings.TrimSuffix(stateFile, filepath.Ext(stateFile)) + ".admin-token"
	// Written aside and renamed into place, so that the file at path has
	// mode 0600 whatever a file there had, and is never half written.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("save admin token: %w", err)
	}
	if err := writeToken(f, token); err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("save admin token: %w", err)
	}
	return path, nil
}

// writeToken writes token and a newline to f and closes it.
func writeToken(f *os.File, token string) error {
	_, err := f.WriteString(token + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("save admin token to %s: %w", f.Name(), err)
	}
	return nil
}
