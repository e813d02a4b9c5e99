package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/tierlimittest"
)

// TestMinimalServiceLimitsAndSwitches runs the example as a process, from
// the repository's root as its TiersFile expects, and checks what the
// README says of it: a free key gets its burst of 20, then 429, and the
// admin endpoint switches the tiers to DEGRADED.
func TestMinimalServiceLimitsAndSwitches(t *testing.T) {
	bin := tierlimittest.Build(t, ".")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())

	cmd := exec.Command(bin)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "HTTP_ADDR="+addr, "ADMIN_TOKEN=minimal-token", "JOIN=")
	cmd.Stderr = io.Discard
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	get := func(key string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/v1/transcribe", nil)
		require.NoError(t, err)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp
	}
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}, 20*time.Second, 20*time.Millisecond, "the example did not listen on %s", addr)

	for i := range 20 {
		resp := get("free-demo-3")
		require.Equal(t, http.StatusOK, resp.StatusCode, "request %d of the burst", i+1)
		assert.Equal(t, "20", resp.Header.Get("X-RateLimit-Limit"))
	}
	resp := get("free-demo-3")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the 21st")
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/system/health", strings.NewReader(`{"status":"DEGRADED"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer minimal-token")
	admin, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = admin.Body.Close()
	require.Equal(t, http.StatusOK, admin.StatusCode)
	assert.Equal(t, "100", get("pro-demo-3").Header.Get("X-RateLimit-Limit"), "pro keeps its SLA in DEGRADED")
	assert.Equal(t, "2", get("free-demo-2").Header.Get("X-RateLimit-Limit"), "free is held to 2")
}
