package tierlimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/tierlimit/tierlimit/health"
)

// stateFile keeps, in a file, the health state in force and the gossip
// addresses of the other members last seen alive, so that a cluster
// restarted whole comes back in the state it left, and a node restarted at
// a new address without seeds finds its peers again. Each node writes every
// state it adopts and every change of its members, and reads the file back
// when it starts. A write goes to a temporary file in the same directory,
// is synced, and is renamed over the old one, so the file always holds one
// whole document. It is safe for concurrent use.
type stateFile struct {
	path string

	// mu serialises writes and guards saved and members.
	mu      sync.Mutex
	saved   health.State // the newest state in the file
	members []string     // the members to write, sorted

	pending chan health.State // capacity 1: the newest state not yet written
	moved   chan struct{}     // capacity 1: members not yet written
}

// stateDoc is what a state file holds. A file that holds only a health
// state, as the file once did, is read as one without members.
type stateDoc struct {
	Health health.State `json:"health"`
	// Members are the gossip addresses of the other members.
	Members []string `json:"members,omitempty"`
}

// Bounds of a state file.
const (
	maxStateFileSize  = 64 << 10
	maxStateFilePeers = 64
)

// decodeState parses a state file.
func decodeState(b []byte) (stateDoc, error) {
	if len(b) > maxStateFileSize {
		return stateDoc{}, fmt.Errorf("%d bytes, more than %d", len(b), maxStateFileSize)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return stateDoc{}, fmt.Errorf("decode: %w", err)
	}
	if _, ok := fields["health"]; !ok {
		s, err := health.Decode(b)
		return stateDoc{Health: s}, err
	}
	var d stateDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return stateDoc{}, fmt.Errorf("decode: %w", err)
	}
	if len(d.Members) > maxStateFilePeers {
		return stateDoc{}, fmt.Errorf("members: %d, at most %d", len(d.Members), maxStateFilePeers)
	}
	for i, m := range d.Members {
		if _, _, err := splitHostPort(m); err != nil {
			return stateDoc{}, fmt.Errorf("members[%d]: %w", i, err)
		}
	}
	return d, nil
}

// openStateFile returns the state file at path and what it holds, nothing
// if there is no file yet.
func openStateFile(path string) (*stateFile, stateDoc, error) {
	f := &stateFile{path: path, pending: make(chan health.State, 1), moved: make(chan struct{}, 1)}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, stateDoc{}, nil
	case err != nil:
		return nil, stateDoc{}, fmt.Errorf("read state file: %w", err)
	}
	d, err := decodeState(b)
	if err != nil {
		return nil, stateDoc{}, fmt.Errorf("state file %s: %w", path, err)
	}
	f.saved, f.members = d.Health, d.Members
	return f, d, nil
}

// save writes s to the file unless it holds s or a newer state already,
// and returns once s is on disk.
func (f *stateFile) save(s health.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !s.Newer(f.saved) {
		return nil
	}
	return f.write(s)
}

// write writes s and the members; f.mu must be held.
func (f *stateFile) write(s health.State) error {
	if b, err := os.ReadFile(f.path); err == nil {
		// Replicas may share the file (one volume): keep a newer state
		// another wrote.
		if onDisk, err := decodeState(b); err == nil && onDisk.Health.Newer(s) {
			s = onDisk.Health
		}
	}
	b, err := json.Marshal(stateDoc{Health: s, Members: f.members})
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	_, err = tmp.Write(b)
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

// remember queues the gossip addresses of the other alive members to be
// written by run, if they differ from those written last. A node alone
// keeps the members it had: they are the ones to try after a restart. It
// does not block.
func (f *stateFile) remember(addrs []string) {
	if len(addrs) == 0 {
		return
	}
	addrs = slices.Sorted(slices.Values(addrs))
	addrs = addrs[:min(len(addrs), maxStateFilePeers)]
	f.mu.Lock()
	same := slices.Equal(addrs, f.members)
	if !same {
		f.members = addrs
	}
	f.mu.Unlock()
	if !same {
		select {
		case f.moved <- struct{}{}:
		default:
		}
	}
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

// run writes the queued states and members until ctx ends, then the last
// ones queued, and reports failures to fail.
func (f *stateFile) run(ctx context.Context, fail func(error)) {
	write := func(s health.State) {
		if err := f.save(s); err != nil {
			fail(err)
		}
	}
	members := func() {
		f.mu.Lock()
		err := f.write(f.saved)
		f.mu.Unlock()
		if err != nil {
			fail(err)
		}
	}
	for {
		select {
		case s := <-f.pending:
			write(s)
		case <-f.moved:
			members()
		case <-ctx.Done():
			select {
			case s := <-f.pending:
				write(s)
			default:
			}
			select {
			case <-f.moved:
				members()
			default:
			}
			return
		}
	}
}
