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
	"time"

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
//
// The file holds the state the node's Holder adopted last, whatever the
// stamps say: the Holder gives later every state it adopts, in the order
// it adopts them, and a write takes the last one given. A state stamped
// later is not always the one in force: one stamped more than the max
// offset ahead of the clock was stamped by a clock that was wrong, and the
// Holder gives it up for an older one (package health, "Clocks that are
// wrong"). Nor is a state read back at start that is stamped that far
// ahead: the Holder does not take it, and the file keeps it (in case the
// clock that is wrong is this node's, and slow) only until the node first
// writes, whatever it writes.
type stateFile struct {
	path string
	// now is the clock, and maxOffset the max clock offset, by which a
	// state the file held at start, or one another node wrote to it, counts.
	// openStateFile sets time.Now and health.DefaultMaxOffset.
	now       func() time.Time
	maxOffset time.Duration

	// qmu guards adopted, seq and members. later and remember take it;
	// nothing that waits is done while it is held.
	qmu     sync.Mutex
	adopted health.State // the state the Holder adopted last
	seq     uint64       // how many states the Holder adopted since the file was opened
	members []string     // the members to write, sorted

	// mu serialises writes and guards written, start and mine.
	mu      sync.Mutex
	written uint64       // the seq of the adopted state in the file; 0 before any
	start   health.State // the state written while none is adopted: the one read at start, if it counts
	mine    health.State // this node's own state last written, or the one read at start: while the file holds it, no other node wrote there

	pending chan struct{} // capacity 1: a state adopted not yet written
	moved   chan struct{} // capacity 1: members not yet written
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
	f := &stateFile{path: path, now: time.Now, maxOffset: health.DefaultMaxOffset,
		pending: make(chan struct{}, 1), moved: make(chan struct{}, 1)}
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
	f.start, f.mine, f.members = d.Health, d.Health, d.Members
	return f, d, nil
}

// later records s as the state the Holder adopted last and queues it to be
// written by run. The Holder calls it, as an OnChange listener, with its
// lock held and in the order it adopts states; it does not block.
func (f *stateFile) later(s health.State) {
	f.qmu.Lock()
	f.adopted, f.seq = s, f.seq+1
	f.qmu.Unlock()
	select {
	case f.pending <- struct{}{}:
	default:
	}
}

// save returns once the state the Holder adopted last is in the file: the
// one it is given, which the Holder gave later before Set returned, or one
// adopted after it, which must not be overwritten by it.
func (f *stateFile) save(health.State) error {
	return f.flush(false)
}

// flush writes the state the Holder adopted last, and the members, unless
// that state is in the file already and members is false.
func (f *stateFile) flush(members bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.qmu.Lock()
	s, seq, addrs := f.adopted, f.seq, f.members
	f.qmu.Unlock()
	if seq == f.written && !members {
		return nil
	}
	if seq == 0 {
		s = f.start
		if s.TooFarAhead(f.now(), f.maxOffset) {
			s = health.State{} // the one the Holder holds: it did not take the file's
		}
	}
	if err := f.write(s, addrs); err != nil {
		return err
	}
	f.written = seq
	if seq == 0 {
		f.start = s
	}
	return nil
}

// write puts s and addrs in the file, or, in place of s, a state another
// node wrote there that wins over it (see fileState); f.mu must be held.
func (f *stateFile) write(s health.State, addrs []string) error {
	own := s
	if b, err := os.ReadFile(f.path); err == nil {
		if onDisk, err := decodeState(b); err == nil {
			s = fileState(s, onDisk.Health, f.mine, f.now(), f.maxOffset)
		}
	}
	b, err := json.Marshal(stateDoc{Health: s, Members: addrs})
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
	if sameState(s, own) {
		f.mine = own
	}
	return nil
}

// fileState returns the state to write when this node's Holder adopted s
// last and the file holds onDisk. Replicas may share the file (one volume):
// a state another wrote there is kept if it is Newer than s and stamped no
// more than maxOffset after now, as Merge would take it. The state this
// node left the file with last, mine, gives way to s whatever its stamp:
// the Holder adopted s after it.
func fileState(s, onDisk, mine health.State, now time.Time, maxOffset time.Duration) health.State {
	if sameState(onDisk, mine) || !onDisk.Newer(s) || onDisk.TooFarAhead(now, maxOffset) {
		return s
	}
	return onDisk
}

// sameState reports whether a and b are one write.
func sameState(a, b health.State) bool {
	return a.Version == b.Version && a.Origin == b.Origin && a.Status == b.Status
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
	f.qmu.Lock()
	same := slices.Equal(addrs, f.members)
	if !same {
		f.members = addrs
	}
	f.qmu.Unlock()
	if !same {
		select {
		case f.moved <- struct{}{}:
		default:
		}
	}
}

// run writes the queued states and members until ctx ends, then the last
// ones queued, and reports failures to fail.
func (f *stateFile) run(ctx context.Context, fail func(error)) {
	flush := func(members bool) {
		if err := f.flush(members); err != nil {
			fail(err)
		}
	}
	for {
		select {
		case <-f.pending:
			flush(false)
		case <-f.moved:
			flush(true)
		case <-ctx.Done():
			var state, members bool
			select {
			case <-f.pending:
				state = true
			default:
			}
			select {
			case <-f.moved:
				members = true
			default:
			}
			if state || members {
				flush(members)
			}
			return
		}
	}
}
