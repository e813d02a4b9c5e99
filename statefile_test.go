package tierlimit

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// fileT0 is when the state file step tables start, by a right clock.
var fileT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fileNode is one node's health Holder and state file, wired as
// Limiter.openState wires them, on a clock the test sets.
type fileNode struct {
	h     *health.Holder
	f     *stateFile
	clock time.Time
}

// startFileNode opens the state file at path for the node name whose clock
// reads now and, as Limiter.openState does, puts the state the file holds
// in force unless Merge refuses it as stamped too far ahead.
func startFileNode(t *testing.T, path, name string, now time.Time) *fileNode {
	t.Helper()
	f, d, err := openStateFile(path)
	require.NoError(t, err, "openStateFile(%s)", path)
	n := &fileNode{h: health.NewHolder(name), f: f, clock: now}
	f.now = func() time.Time { return n.clock }
	if d.Health.Version != 0 {
		if _, err := n.h.Merge(d.Health, now, health.DefaultMaxOffset); err != nil {
			require.ErrorIs(t, err, health.ErrTooFarAhead, "Merge(%s) at start", stateString(d.Health))
		}
	}
	n.h.OnChange(f.later)
	return n
}

// flush lets the file's writer write what is queued, as Limiter's run
// goroutine does, and reports its failures.
func (n *fileNode) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // run writes what is queued and returns
	var errs []error
	n.f.run(ctx, func(err error) { errs = append(errs, err) })
	assert.Empty(t, errs, "run: failures")
}

// readStateFile returns what the state file at path holds.
func readStateFile(t *testing.T, path string) stateDoc {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	d, err := decodeState(b)
	require.NoError(t, err, "decodeState(%s)", b)
	return d
}

// stateString describes s for a failure message.
func stateString(s health.State) string {
	if s.Version == 0 {
		return "zero state"
	}
	return fmt.Sprintf("%s by %s stamped %s", s.Status, s.Origin, s.Stamped().Sub(fileT0))
}

// fileStep is one step of a state file step table.
type fileStep struct {
	node  string        // the node that acts; it starts at its first step
	clock time.Duration // its clock, from fileT0
	do    string        // "set NORMAL", "set DEGRADED", "hear <node>", "members", "restart"
	force string        // the status in force at node after the step: N or D
	file  string        // whose state the file holds after it: a node (the state in force there), "start" (the one it held before the first step) or "zero"
}

// runFileSteps plays steps on nodes that share the state file at path.
func runFileSteps(t *testing.T, path string, steps []fileStep) {
	t.Helper()
	var start health.State
	if b, err := os.ReadFile(path); err == nil {
		d, err := decodeState(b)
		require.NoError(t, err)
		start = d.Health
	}
	nodes := map[string]*fileNode{}
	for i, st := range steps {
		now := fileT0.Add(st.clock)
		n := nodes[st.node]
		if n == nil || st.do == "restart" {
			n = startFileNode(t, path, st.node, now)
			nodes[st.node] = n
		}
		n.clock = now
		switch verb, arg, _ := strings.Cut(st.do, " "); verb {
		case "restart":
		case "set":
			status, err := health.ParseStatus(arg)
			require.NoError(t, err)
			s, _ := n.h.Set(status, now)
			assert.NoError(t, n.f.save(s), "step %d: %s save(%s)", i, st.node, stateString(s))
			n.flush(t)
		case "hear":
			peer := nodes[arg].h.Current()
			_, err := n.h.Merge(peer, now, health.DefaultMaxOffset)
			require.NoError(t, err, "step %d: %s Merge(%s)", i, st.node, stateString(peer))
			n.flush(t)
		case "members":
			n.f.remember([]string{"10.0.0.2:7946"})
			n.flush(t)
		default:
			t.Fatalf("step %d: unknown action %q", i, st.do)
		}
		assert.Equal(t, st.force, n.h.Status().String()[:1], "step %d: %s %q at %s: status in force", i, st.node, st.do, st.clock)
		var want health.State
		switch st.file {
		case "start":
			want = start
		case "zero":
		default:
			want = nodes[st.file].h.Current()
		}
		got := readStateFile(t, path).Health
		assert.Equal(t, stateString(want), stateString(got), "step %d: %s %q at %s: the file holds %s, want %s",
			i, st.node, st.do, st.clock, stateString(got), stateString(want))
		assert.Equal(t, want.Version, got.Version, "step %d: version in the file", i)
	}
}

// TestStateFileHoldsTheStateLastAdopted: whatever the stamps, the file
// holds the state the node adopted last, and a restart, even once the
// time a clock ran ahead to has come, brings that state back.
func TestStateFileHoldsTheStateLastAdopted(t *testing.T) {
	tests := []struct {
		name  string
		steps []fileStep
	}{
		{"DEGRADED while an hour fast, NORMAL once corrected", []fileStep{
			{"a", time.Hour, "set DEGRADED", "D", "a"},
			{"a", time.Minute, "set NORMAL", "N", "a"}, // stamped an hour below the one before
			{"a", 2 * time.Minute, "restart", "N", "a"},
			{"a", 2 * time.Hour, "restart", "N", "a"}, // past the old stamp: it is gone
		}},
		{"a peer's state once corrected", []fileStep{
			{"b", 0, "set NORMAL", "N", "b"},
			{"a", time.Hour, "set DEGRADED", "D", "a"},
			{"a", time.Minute, "hear b", "N", "b"}, // adopted over the held state past the bound
			{"a", 2 * time.Hour, "restart", "N", "b"},
		}},
		{"written again once corrected", []fileStep{
			{"a", time.Hour, "set DEGRADED", "D", "a"},
			{"a", time.Minute, "set DEGRADED", "D", "a"},
			{"a", 2 * time.Hour, "restart", "D", "a"},
		}},
		{"right clocks", []fileStep{
			{"a", 0, "set DEGRADED", "D", "a"},
			{"a", time.Second, "set NORMAL", "N", "a"},
			{"a", 2 * time.Second, "restart", "N", "a"},
			{"a", 3 * time.Second, "set DEGRADED", "D", "a"},
			{"a", time.Hour, "restart", "D", "a"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runFileSteps(t, filepath.Join(t.TempDir(), "state.json"), tt.steps)
		})
	}
}

// TestStateFileStampedFarAheadAtStart: a state read back at start that is
// stamped more than the max offset ahead of the clock is not in force; it
// stays in the file, in case the clock that is wrong is this one, only
// until the node next writes the file.
func TestStateFileStampedFarAheadAtStart(t *testing.T) {
	tests := []struct {
		name   string
		before time.Duration // the clock of the node that wrote the file: DEGRADED
		steps  []fileStep
	}{
		{"the operator's write replaces it", time.Hour, []fileStep{
			{"a", time.Minute, "restart", "N", "start"},
			{"a", 2 * time.Minute, "set NORMAL", "N", "a"},
			{"a", 2 * time.Hour, "restart", "N", "a"},
		}},
		{"the members written first drop it", time.Hour, []fileStep{
			{"a", time.Minute, "restart", "N", "start"},
			{"a", 2 * time.Minute, "members", "N", "zero"},
			{"a", 2 * time.Hour, "restart", "N", "zero"},
		}},
		{"the clock was slow at the restart: the write survives", 0, []fileStep{
			{"a", -time.Hour, "restart", "N", "start"},
			{"a", time.Minute, "restart", "D", "start"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			w := startFileNode(t, path, "a", fileT0.Add(tt.before))
			s, _ := w.h.Set(health.Degraded, fileT0.Add(tt.before))
			require.NoError(t, w.f.save(s))
			runFileSteps(t, path, tt.steps)
		})
	}
}

// TestStateFileSharedByTwoNodes: nodes that share one file (one volume)
// keep a newer state another wrote, unless it is stamped more than the max
// offset ahead of the writer's clock.
func TestStateFileSharedByTwoNodes(t *testing.T) {
	runFileSteps(t, filepath.Join(t.TempDir(), "state.json"), []fileStep{
		{"b", time.Hour, "set DEGRADED", "D", "b"},
		{"a", time.Minute, "set NORMAL", "N", "a"}, // b's stamp, an hour ahead of a's clock, counts for nothing
		{"a", 2 * time.Minute, "restart", "N", "a"},
		{"b", 2 * time.Minute, "hear a", "N", "a"}, // corrected: b takes a's state
		{"b", 3 * time.Minute, "set DEGRADED", "D", "b"},
		{"a", 3*time.Minute - 200*time.Millisecond, "set NORMAL", "N", "b"}, // b's later write, within the bound, is kept
		{"a", 2 * time.Hour, "restart", "D", "b"},
	})
}

// TestRestartFromAStateFileStampedAnHourAhead: a Limiter that starts from a
// file stamped an hour ahead of its clock starts NORMAL, saves the
// operator's next write, and a restart brings that write back.
func TestRestartFromAStateFileStampedAnHourAhead(t *testing.T) {
	state := filepath.Join(t.TempDir(), "health.json")
	ahead, _ := health.NewHolder("fast").Set(Degraded, time.Now().Add(time.Hour))
	require.NoError(t, os.WriteFile(state, ahead.Encode(), 0o600))

	first, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.StateFile = state })
	require.Equal(t, Normal, first.Health().Status, "the state an hour ahead is not in force")
	written, err := first.SetHealth(Degraded)
	require.NoError(t, err, "SetHealth(DEGRADED)")
	got := readStateFile(t, state).Health
	assert.Equal(t, stateString(written), stateString(got), "after SetHealth(DEGRADED) the file holds %s, want %s", stateString(got), stateString(written))
	require.NoError(t, first.Close(t.Context()))

	second, _ := newSingle(t, tenSecondTiers, func(c *Config) { c.StateFile = state })
	assert.Equal(t, written.Version, second.Health().Version, "the restarted node holds the acknowledged write")
	assert.Equal(t, Degraded, second.Health().Status)
}

// TestStateFileConcurrentWritesEndOnTheStateInForce: with operator writes,
// peers' states and the writer racing, every save succeeds and the file
// ends on the state in force.
func TestStateFileConcurrentWritesEndOnTheStateInForce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	n := startFileNode(t, path, "a", fileT0)
	n.f.now = func() time.Time { return fileT0 } // read by the writer goroutine: fixed
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { n.f.run(ctx, func(err error) { t.Errorf("run: %v", err) }) })
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			for i := range 25 {
				at := fileT0.Add(time.Duration(i) * time.Millisecond)
				if w%2 == 0 {
					s, _ := n.h.Set(health.Status(i%2), at)
					assert.NoError(t, n.f.save(s), "save(%s)", stateString(s))
					continue
				}
				peer, _ := health.NewHolder(fmt.Sprintf("p%d", w)).Set(health.Status(i%2), at)
				_, err := n.h.Merge(peer, at, health.DefaultMaxOffset)
				assert.NoError(t, err)
			}
		})
	}
	writers.Wait()
	stop()
	wg.Wait()
	got, want := readStateFile(t, path).Health, n.h.Current()
	assert.Equal(t, stateString(want), stateString(got), "the file holds %s, want the state in force %s", stateString(got), stateString(want))
}
