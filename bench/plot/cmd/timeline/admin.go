package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/bench/plot/timeline"
)

// admin calls one node's /system/health with the admin token.
type admin struct {
	client *http.Client
	token  string
}

// health returns the state target reports.
func (a admin) health(ctx context.Context, target string) (api.HealthResponse, error) {
	return a.do(ctx, http.MethodGet, target, nil)
}

// set posts status to target and returns the state it answers with.
func (a admin) set(ctx context.Context, target, status string) (api.HealthResponse, error) {
	return a.do(ctx, http.MethodPost, target, []byte(`{"status":"`+status+`"}`))
}

func (a admin) do(ctx context.Context, method, target string, body []byte) (api.HealthResponse, error) {
	var out api.HealthResponse
	req, err := http.NewRequestWithContext(ctx, method, target+"/system/health", bytes.NewReader(body))
	if err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
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
		return out, &statusError{method: method, target: target, code: resp.StatusCode, body: strings.TrimSpace(string(data))}
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("%s %s/system/health: %w", method, target, err)
	}
	return out, nil
}

// statusError is an admin answer other than 200.
type statusError struct {
	method, target string
	code           int
	body           string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s/system/health: %d %s", e.method, e.target, e.code, e.body)
}

// post sets status on target and records the request, offsets from start.
func (a admin) post(ctx context.Context, target, status string, start time.Time) timeline.Post {
	p := timeline.Post{Target: target, Sent: timeline.Offset(time.Since(start))}
	h, err := a.set(ctx, target, status)
	p.Answered = timeline.Offset(time.Since(start))
	if err != nil {
		p.Error = err.Error()
		if se, ok := err.(*statusError); ok {
			p.HTTPStatus = se.code
		}
		return p
	}
	p.HTTPStatus = http.StatusOK
	p.Node = h.Node
	p.Version = fmt.Sprint(h.Version)
	return p
}
