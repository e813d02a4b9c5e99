package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tierlimit/tierlimit/api"
)

// admin calls the nodes' GET and POST /system/health with the admin token.
type admin struct {
	client *http.Client
	token  string
}

// health returns what target's GET /system/health answers.
func (a admin) health(ctx context.Context, target string) (api.HealthResponse, error) {
	return a.do(ctx, http.MethodGet, target, "")
}

// post POSTs body to target's /system/health and returns its answer.
func (a admin) post(ctx context.Context, target, body string) (api.HealthResponse, error) {
	return a.do(ctx, http.MethodPost, target, body)
}

func (a admin) do(ctx context.Context, method, target, body string) (api.HealthResponse, error) {
	var out api.HealthResponse
	req, err := http.NewRequestWithContext(ctx, method, target+"/system/health", strings.NewReader(body))
	if err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("%s %s/system/health: %d %s", method, target, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	return out, nil
}
