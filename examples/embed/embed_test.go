package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/tierlimittest"
)

const token = "embed-test-token"

// member is one process of the mixed cluster.
type member struct {
	*tierlimittest.Proc
	http   string // base URL
	gossip string
	path   string // the limited endpoint
}

// start runs bin (cmd/node or this example) on 127.0.0.1 with free ports.
func start(t *testing.T, bin, name, config, join, startedMsg, path string) *member {
	t.Helper()
	args := []string{"-config", config, "-node-name", name, "-admin-token", token, "-cluster-key", "mixed cluster key",
		"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-gossip-addr", "127.0.0.1:0",
		"-forward-timeout", "1s"} // generous: the count must be exact on a busy machine
	if strings.HasSuffix(bin, "node") {
		args = append(args, "-log-format", "json")
	}
	if join != "" {
		args = append(args, "-join", join)
	}
	m := &member{Proc: tierlimittest.Start(t, name, bin, args...), path: path}
	m.http = "http://" + m.WaitLog(t, startedMsg, 20*time.Second)["http_addr"].(string)
	m.gossip = m.WaitLog(t, "limiter started", time.Second)["gossip_addr"].(string)
	return m
}

// do sends a request to m and returns the status and body.
func (m *member) do(t *testing.T, method, path, header, value, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, m.http+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set(header, value)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMixedClusterSharesOneCount runs two cmd/node processes and one of
// this example as one cluster: each key is counted once whichever program
// a request reaches, the health switch set on the example reaches the
// nodes, and SIGHUP reloads the example's tiers file.
func TestMixedClusterSharesOneCount(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts real processes; skipped with -short")
	}
	nodeBin := tierlimittest.Build(t, "../../cmd/node")
	embedBin := tierlimittest.Build(t, ".")
	config := tierlimittest.TiersFile(t, 20)
	n0 := start(t, nodeBin, "node-0", config, "", "node started", "/test")
	e1 := start(t, embedBin, "embed-1", config, n0.gossip, "embed started", "/v1/transcribe")
	n2 := start(t, nodeBin, "node-2", config, n0.gossip, "node started", "/test")
	all := []*member{n0, e1, n2}
	for _, m := range all {
		require.Eventually(t, func() bool { return tierlimittest.Alive(m.http, token) == 3 }, 15*time.Second, 50*time.Millisecond,
			"%s never saw 3 members", m.Name)
	}

	// Ten free keys (burst 20), 30 requests each, round-robin over the
	// three programs: the ring spreads the keys over all three owners.
	for k := range 10 {
		key := fmt.Sprintf("free-%d", k)
		admitted := 0
		for i := range 30 {
			m := all[(i+k)%3]
			method := http.MethodGet // cmd/node's GET /test
			if m == e1 {
				method = http.MethodPost
			}
			code, body := m.do(t, method, m.path, "X-API-Key", key, "")
			require.Contains(t, []int{200, 429}, code, "%s %s: %s", m.Name, m.path, body)
			if code == 200 {
				admitted++
			}
		}
		assert.Equal(t, tierlimittest.FreeBurst, admitted, "key %s: admitted %d of 30 across node and embed", key, admitted)
	}
	code, body := e1.do(t, http.MethodGet, "/v1/transcribe", "X-API-Key", "pro-1", "")
	require.Equal(t, 200, code)
	assert.JSONEq(t, `{"text":"hello world","model":"whisper-demo"}`, body)

	// DEGRADED set on the example is in force on the nodes.
	code, body = e1.do(t, http.MethodPost, "/system/health", "Authorization", "Bearer "+token, `{"status":"DEGRADED"}`)
	require.Equal(t, 200, code, body)
	for _, m := range []*member{n0, n2} {
		require.Eventually(t, func() bool {
			_, body := m.do(t, http.MethodGet, "/system/health", "Authorization", "Bearer "+token, "")
			var s struct{ Status string }
			return json.Unmarshal([]byte(body), &s) == nil && s.Status == "DEGRADED"
		}, 5*time.Second, 20*time.Millisecond, "%s did not learn DEGRADED", m.Name)
	}

	// SIGHUP: a bad file is refused and logged, a good one is taken.
	good, err := os.ReadFile(config)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(config, []byte(`{"window_seconds":60,"tiers":{}}`), 0o600))
	require.NoError(t, e1.Cmd.Process.Signal(syscall.SIGHUP))
	refused := e1.WaitLog(t, "reload refused; the config in force stays", 5*time.Second)
	assert.Contains(t, refused["err"], "tiers: empty")
	code, _ = e1.do(t, http.MethodGet, "/v1/transcribe", "X-API-Key", "pro-2", "")
	assert.Equal(t, 200, code, "the last good config stays in force")
	require.NoError(t, os.WriteFile(config, good, 0o600))
	require.NoError(t, e1.Cmd.Process.Signal(syscall.SIGHUP))
	e1.WaitLog(t, "config reloaded", 5*time.Second)

	// Every program stops cleanly on SIGTERM.
	for _, m := range all {
		require.NoError(t, m.Cmd.Process.Signal(syscall.SIGTERM))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, m := range all {
		select {
		case err := <-m.Exited:
			assert.NoError(t, err, "%s exit status", m.Name)
		case <-ctx.Done():
			t.Fatalf("%s did not exit after SIGTERM", m.Name)
		}
	}
}
