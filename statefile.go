package tierlimit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/tierlimit/tierlimit/health"
)

// stateFile keeps the health state in force in a file, so that a cluster
// restarted whole comes back in the state it left: each node writes every
// state it adopts, and reads the file back when it starts. A write goes to
// a temporary file in the same directory, is synced, and is renamed over
// the old one, so the file always holds one whole state. It is safe for
// concurrent use.
type stateFile struct {
	path string

	// mu serialises writes and guards saved.
	mu    sync.Mutex
	saved health.State // the newest state in the file

	pending chan health.State // capacity 1: the newest state not yet written
}

// openStateFile returns the state file at path and the state it holds, the
// zero State if there is no file yet.
func openStateFile(path string) (*stateFile, health.State, error) {
	f := &stateFile{path: path, pending: make(chan health.State, 1)}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, health.State{}, nil
	case err != nil:
		return nil, health.State{}, fmt.Errorf("read state file: %w", err)
	}
	s, err := health.Decode(b)
	if err != nil {
		return nil, health.State{}, fmt.Errorf("state file %s: %w", path, err)
	}
	f.saved = s
	return f, s, nil
}

// save writes s to the file unless it holds s or a newer state already,
// and returns once s is on disk.
func (f *stateFile) save(s health.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !s.Newer(f.saved) {
		return nil
	}
	if b, err := os.ReadFile(f.path); err == nil {
		// Replicas may share the file (one volume): keep a newer state
		// another wrote.
		if onDisk, err := health.Decode(b); err == nil && !s.Newer(onDisk) {
			f.saved = onDisk
			return nil
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	_, err = tmp.Write(s.Encode())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("save state to %s: %w", f.path, err)
	}
	f.saved = s
	return nil
}

// later queues s to be written by run, replacing a state queued before
// that is not written yet. It does not block: the Holder calls it with its
// lock held.
func (f *stateFile) later(s health.State) {
	for {
		select {
		case f.pending <- s:
			return
		default:
		}
		select {
		case old := <-f.pending:
			if old.Newer(s) {
				s = old
			}
		default:
		}
	}
}

// run writes the queued states until ctx ends, then the last one queued,
// and reports failures to fail.
func (f *stateFile) run(ctx context.Context, fail func(error)) {
	write := func(s health.State) {
		if err := f.save(s); err != nil {
			fail(err)
		}
	}
	for {
		select {
		case s := <-f.pending:
			write(s)
		case <-ctx.Done():
			select {
			case s := <-f.pending:
				write(s)
			default:
			}
			return
		}
	}
}
