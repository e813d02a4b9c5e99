package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/tierlimittest"
)

const testToken = "test-admin-token"

// proc is a node running as a real process.
type proc struct {
	*tierlimittest.Proc
	http   string // base URL
	gossip string
}

// startProc starts the binary as a node on 127.0.0.1 with free ports, and
// extra flags, and waits for it to log where it listens.
func startProc(t *testing.T, bin, name, config string, join string, extra ...string) *proc {
	t.Helper()
	args := []string{"-config", config, "-node-name", name, "-admin-token", testToken,
		"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-gossip-addr", "127.0.0.1:0",
		"-log-format", "json"}
	if join != "" {
		args = append(args, "-join", join)
	}
	args = append(args, extra...)
	p := &proc{Proc: tierlimittest.Start(t, name, bin, args...)}
	rec := p.WaitLog(t, "node started", 20*time.Second)
	p.http = "http://" + rec["http_addr"].(string)
	p.gossip = rec["gossip_addr"].(string)
	return p
}

// alive returns how many members p reports alive.
func (p *proc) alive() int { return tierlimittest.Alive(p.http, testToken) }

func TestProcessesSurviveAKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	bin := tierlimittest.Build(t, ".")
	config := tierlimittest.TiersFile(t, 50)
	p0 := startProc(t, bin, "p0", config, "")
	p1 := startProc(t, bin, "p1", config, p0.gossip)
	p2 := startProc(t, bin, "p2", config, p0.gossip)
	procs := []*proc{p0, p1, p2}
	for _, p := range procs {
		require.Eventually(t, func() bool { return p.alive() == 3 }, 15*time.Second, 50*time.Millisecond, "%s never saw 3 members", p.Name)
	}

	// Load on the two survivors, before, during and after the kill.
	ctx, stop := context.WithCancel(t.Context())
	var ok200, ok429, bad atomic.Int64
	var badMu sync.Mutex
	var badSeen []string
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				p := procs[i%2] // p0 and p1 only
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.http+"/test", nil)
				req.Header.Set("X-API-Key", fmt.Sprintf("pro-%d", (w*7+i)%50))
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					bad.Add(1)
					badMu.Lock()
					badSeen = append(badSeen, err.Error())
					badMu.Unlock()
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok200.Add(1)
				case http.StatusTooManyRequests:
					ok429.Add(1)
				default:
					bad.Add(1)
					badMu.Lock()
					badSeen = append(badSeen, resp.Status)
					badMu.Unlock()
				}
			}
		})
	}
	require.Eventually(t, func() bool { return ok200.Load() > 200 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, p2.Cmd.Process.Signal(syscall.SIGKILL))
	<-p2.Exited

	// The cluster shrinks to two while the load goes on.
	for _, p := range procs[:2] {
		require.Eventually(t, func() bool { return p.alive() == 2 }, 20*time.Second, 50*time.Millisecond, "%s still counts p2 alive", p.Name)
	}
	before := ok200.Load() + ok429.Load()
	require.Eventually(t, func() bool { return ok200.Load()+ok429.Load() > before+200 }, 10*time.Second, 10*time.Millisecond)
	stop()
	wg.Wait()
	assert.Zero(t, bad.Load(), "survivors answered something other than 200/429: %v", badSeen)
	t.Logf("200: %d, 429: %d, other: %d", ok200.Load(), ok429.Load(), bad.Load())

	// The survivors shut down cleanly on SIGTERM.
	for _, p := range procs[:2] {
		require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
		select {
		case err := <-p.Exited:
			assert.NoError(t, err, "%s exit status", p.Name)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not exit after SIGTERM", p.Name)
		}
	}
	_ = os.Remove(bin)
}

// TestBinaryHelpAndMistakes: `node -h` prints the usage and exits 0; a
// value without a unit exits 1 with one line naming the flag.
func TestBinaryHelpAndMistakes(t *testing.T) {
	bin := tierlimittest.Build(t, ".")
	out, err := exec.CommandContext(t.Context(), bin, "-h").CombinedOutput()
	require.NoError(t, err, "node -h: %s", out)
	assert.Contains(t, string(out), "-lease-ttl")

	out, err = exec.CommandContext(t.Context(), bin, "-forward-timeout", "5").CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Equal(t, "node: invalid value \"5\" for flag -forward-timeout: not a duration: give a number with a unit, such as 5ms or 2s\n", string(out))
}
