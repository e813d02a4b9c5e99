// Package tierlimittest holds what the tests of the limiter and of the
// programs built on it share: a tiers file to count against, and real node
// processes to start, read and stop.
package tierlimittest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Limits of the tiers in TiersFile, per 60 s window: burst (NORMAL) and
// degraded (DEGRADED).
const (
	FreeBurst, FreeDegraded = 20, 2
	ProBurst, ProDegraded   = 150, 100
	EntBurst                = 1500
)

// TiersFile writes a tiers file with a 60 s window, the tiers free (limit
// 10, burst 20, degraded 2), pro (100, 150, 100) and enterprise (1000, 1500,
// 1000), and perTier keys per tier named "<tier>-<i>", and returns its path.
func TiersFile(t testing.TB, perTier int) string {
	t.Helper()
	keys := map[string]string{}
	for _, tier := range []string{"free", "pro", "enterprise"} {
		for i := range perTier {
			keys[fmt.Sprintf("%s-%d", tier, i)] = tier
		}
	}
	doc := map[string]any{
		"window_seconds": 60,
		"tiers": map[string]any{
			"free":       map[string]int{"limit": 10, "burst": FreeBurst, "degraded": FreeDegraded},
			"pro":        map[string]int{"limit": 100, "burst": ProBurst, "degraded": ProDegraded},
			"enterprise": map[string]int{"limit": 1000, "burst": EntBurst, "degraded": 1000},
		},
		"api_keys": keys,
	}
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "tiers.json")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}

// Logs collects the log lines of a running process (JSON for a node). It
// is safe for concurrent use.
type Logs struct {
	// mu guards buf.
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far, as it came.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Records returns the JSON records written so far; other lines are skipped.
func (l *Logs) Records() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// Find returns the first record whose msg is msg, if any.
func (l *Logs) Find(msg string) (map[string]any, bool) {
	for _, r := range l.Records() {
		if r["msg"] == msg {
			return r, true
		}
	}
	return nil, false
}

// Count returns how many records have msg.
func (l *Logs) Count(msg string) int {
	n := 0
	for _, r := range l.Records() {
		if r["msg"] == msg {
			n++
		}
	}
	return n
}

// Build builds the Go package pkg (a directory, such as "." or
// "../../cmd/node") into a temporary directory and returns the binary's
// path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	name := filepath.Base(filepath.Clean(pkg))
	if name == "." || name == ".." {
		name = "bin"
	}
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	require.NoError(t, err, "go build %s: %s", pkg, out)
	return bin
}

// Proc is a program running as a real process, logging JSON to stderr.
type Proc struct {
	Name   string
	Cmd    *exec.Cmd
	Logs   *Logs
	Exited chan error // receives the exit status once
}

// Start starts bin with args and kills it when the test ends if it is
// still running.
func Start(t testing.TB, name, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Cmd: exec.Command(bin, args...), Logs: &Logs{}, Exited: make(chan error, 1)}
	stderr, err := p.Cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.Cmd.Start())
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			_, _ = p.Logs.Write(append(sc.Bytes(), '\n'))
		}
		p.Exited <- p.Cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.Cmd.ProcessState == nil {
			_ = p.Cmd.Process.Kill()
		}
	})
	return p
}

// WaitLog waits up to timeout for a record with msg and returns it.
func (p *Proc) WaitLog(t testing.TB, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	var rec map[string]any
	require.Eventually(t, func() bool {
		var ok bool
		rec, ok = p.Logs.Find(msg)
		return ok
	}, timeout, 20*time.Millisecond, "%s logged no %q", p.Name, msg)
	return rec
}

// Alive returns how many members the node at base (an http:// URL) reports
// alive in GET /system/cluster, or -1 if it does not answer.
func Alive(base, token string) int {
	req, err := http.NewRequest(http.MethodGet, base+"/system/cluster", nil)
	if err != nil {
		return -1
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var body struct {
		Members []struct{ State string } `json:"members"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return -1
	}
	n := 0
	for _, m := range body.Members {
		if m.State == "alive" {
			n++
		}
	}
	return n
}

// DiscardWriter is an http.ResponseWriter that keeps nothing but its header
// map, so that a benchmark measures the handler, not a recorder.
type DiscardWriter struct{ H http.Header }

// Header returns the header map.
func (w *DiscardWriter) Header() http.Header { return w.H }

// Write discards b.
func (w *DiscardWriter) Write(b []byte) (int, error) { return len(b), nil }

// WriteHeader discards the status.
func (w *DiscardWriter) WriteHeader(int) {}

// Bare is the floor of the middleware benchmarks: a handler that writes a
// small JSON body and nothing else.
func Bare() http.Handler {
	body := []byte(`{"ok":true}`)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(body)
	})
}

// BenchServe serves one GET request with X-API-Key apiKey through h per
// benchmark iteration, and reports allocations.
func BenchServe(b *testing.B, h http.Handler, apiKey string) {
	r, err := http.NewRequest(http.MethodGet, "/v1/transcribe", nil)
	require.NoError(b, err)
	r.Header.Set("X-API-Key", apiKey)
	w := &DiscardWriter{H: make(http.Header, 8)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.H)
		h.ServeHTTP(w, r)
	}
}
