package config

import (
	"fmt"
	"sync/atomic"
	"time"
)

// File is a tiers file that can be read again while the limiter runs: the
// key store behind the middleware when the keys live in tiers.json. Lookup
// reads the table in force with one atomic load; Reload reads and validates
// the whole file first and only then swaps the new table in, so a request
// sees either the old table or the new one, never a mix, and a bad file
// changes nothing.
//
// The window is fixed for the life of a File: counts are kept per window, so
// Reload refuses a file whose window_seconds differs from the one loaded
// first. Change the window with a restart.
//
// A File is safe for concurrent use.
type File struct {
	path string
	cur  atomic.Pointer[Tiers]
}

// Open loads the tiers file at path; see Load for what makes it valid.
func Open(path string) (*File, error) {
	t, err := Load(path)
	if err != nil {
		return nil, err
	}
	f := &File{path: path}
	f.cur.Store(t)
	return f, nil
}

// Path returns the file's path, as given to Open.
func (f *File) Path() string { return f.path }

// Tiers returns the table in force. It is immutable: a Reload swaps in a
// new one and leaves this one as it was.
func (f *File) Tiers() *Tiers { return f.cur.Load() }

// Window returns the counting window, which never changes.
func (f *File) Window() time.Duration { return f.cur.Load().Window }

// Lookup returns the tier of apiKey in the table in force and reports
// whether the key is known. It does not allocate.
func (f *File) Lookup(apiKey string) (Tier, bool) { return f.cur.Load().Lookup(apiKey) }

// Reload reads the file again and, if it is valid and keeps the window,
// makes it the table in force (Tiers returns it). Otherwise it returns an
// error naming the problem (the field, for a bad file) and the table in
// force stays as it was.
func (f *File) Reload() error {
	next, err := Load(f.path)
	if err != nil {
		return err
	}
	if cur := f.cur.Load(); next.Window != cur.Window {
		return fmt.Errorf("load tiers %s: window_seconds: %d differs from %d, the window in force; counts are kept per window, so a new window needs a restart",
			f.path, int64(next.Window/time.Second), int64(cur.Window/time.Second))
	}
	f.cur.Store(next)
	return nil
}
