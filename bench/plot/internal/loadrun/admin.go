// Package loadrun holds what cmd/timeline and cmd/surge share to run a
// load against a cluster of nodes: the admin client of /system/health,
// the flags that name the nodes, the tiers file's keys, per-tier flag
// values and the bookkeeping of the requests in flight (targets in turn,
// how late requests left).
package loadrun

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tierlimit/tierlimit/api"
)

// Admin calls the nodes' GET and POST /system/health with the admin token.
type Admin struct {
	Client *http.Client
	Token  string
}

// Health returns what target's GET /system/health answers.
func (a Admin) Health(ctx context.Context, target string) (api.HealthResponse, error) {
	return a.do(ctx, http.MethodGet, target, "")
}

// Post POSTs body to target's /system/health and returns its answer.
func (a Admin) Post(ctx context.Context, target, body string) (api.HealthResponse, error) {
	return a.do(ctx, http.MethodPost, target, body)
}

// SetStatus POSTs status to target and returns the state it answers with.
func (a Admin) SetStatus(ctx context.Context, target, status string) (api.HealthResponse, error) {
	return a.Post(ctx, target, `{"status":"`+status+`"}`)
}

func (a Admin) do(ctx context.Context, method, target, body string) (api.HealthResponse, error) {
	var out api.HealthResponse
	req, err := http.NewRequestWithContext(ctx, method, target+"/system/health", strings.NewReader(body))
	if err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.Client.Do(req)
	if err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return out, &StatusError{Method: method, Target: target, Code: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	return out, nil
}

// StatusError is an admin answer other than 200.
type StatusError struct {
	Method, Target string
	Code           int
	Body           string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s/system/health: %d %s", e.Method, e.Target, e.Code, e.Body)
}
