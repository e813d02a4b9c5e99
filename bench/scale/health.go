package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tierlimit/tierlimit/api"
)

// write is one admin POST and how the state reached the other nodes.
type write struct {
	To      string `json:"to"`
	Status  string `json:"status"`
	Version string `json:"version"`
	// PostMS is how long the POST took to answer, in milliseconds.
	PostMS float64 `json:"post_ms"`
	// Applied: the other nodes logging that they adopted this version,
	// from the moment the POST was sent.
	Applied spread `json:"applied"`
	// ViaPushPull counts the nodes that got it from a push/pull exchange
	// rather than from gossip.
	ViaPushPull int `json:"via_push_pull"`
}

// healthResult is what the health command writes.
type healthResult struct {
	Timeout string  `json:"timeout"`
	Writes  []write `json:"writes"`
	// Agree reports whether, after the last write, every node's GET
	// /system/health showed its version.
	Agree bool `json:"agree"`
	// Disagree lists the nodes that showed another version, or none.
	Disagree []string `json:"disagree,omitempty"`
}

func runHealth(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodesPath := fs.String("nodes", "", "nodes file")
	token := fs.String("token", "", "admin bearer token")
	writes := fs.Int("writes", 6, "how many writes, DEGRADED and NORMAL in turn (the last one is NORMAL)")
	gap := fs.Duration("gap", 500*time.Millisecond, "pause between a write reaching every node and the next one")
	timeout := fs.Duration("timeout", 20*time.Second, "how long each write may take to reach every node")
	out := fs.String("out", "", "JSON file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nodesPath == "" || *token == "" || *out == "" {
		return errors.New("health: -nodes, -token and -out are required")
	}
	if *writes < 1 {
		return fmt.Errorf("health: -writes %d: want at least 1", *writes)
	}
	nodes, err := readNodes(*nodesPath)
	if err != nil {
		return err
	}
	if len(nodes) < 2 {
		return errors.New("health: want at least 2 nodes")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	w := newWatcher(nodes)
	res := healthResult{Timeout: timeout.String()}
	for i := range *writes {
		// Ending on NORMAL leaves the cluster as it found it.
		status := "NORMAL"
		if (*writes-1-i)%2 == 1 {
			status = "DEGRADED"
		}
		// Each write to another node, spread over the whole cluster.
		to := nodes[(i*len(nodes)/(*writes))%len(nodes)]
		wr, err := oneWrite(ctx, client, w, nodes, to, *token, status, *timeout)
		if err != nil {
			return err
		}
		res.Writes = append(res.Writes, wr)
		if ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(*gap):
		}
	}
	if n := len(res.Writes); n > 0 {
		res.Disagree = disagree(ctx, client, nodes, *token, res.Writes[n-1].Version)
		res.Agree = len(res.Disagree) == 0
	}
	return writeJSON(*out, res)
}

// oneWrite posts status to node to and waits until every other node has
// adopted it.
func oneWrite(ctx context.Context, client *http.Client, w *watcher, nodes []node, to node, token, status string, timeout time.Duration) (write, error) {
	start := time.Now()
	hr, err := postHealth(ctx, client, to.URL, token, status)
	if err != nil {
		return write{}, err
	}
	wr := write{To: to.Name, Status: status, Version: strconv.FormatUint(hr.Version, 10),
		PostMS: float64(time.Since(start).Microseconds()) / 1000}
	var goals []*goal
	for _, n := range nodes {
		if n.Name != to.Name {
			goals = append(goals, &goal{node: n.Name, ok: adopted(wr.Version)})
		}
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	since := start
	if err := w.watch(wctx, since, goals); err != nil {
		return write{}, err
	}
	wr.Applied = spreadOf(since, goals)
	for _, g := range goals {
		if g.done() && g.met.Via == "push_pull" {
			wr.ViaPushPull++
		}
	}
	return wr, nil
}

// postHealth sets status through one node's admin endpoint.
func postHealth(ctx context.Context, client *http.Client, base, token, status string) (api.HealthResponse, error) {
	var hr api.HealthResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/system/health",
		strings.NewReader(`{"status":"`+status+`"}`))
	if err != nil {
		return hr, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if err := doJSON(client, req, &hr); err != nil {
		return hr, fmt.Errorf("post %s to %s: %w", status, base, err)
	}
	return hr, nil
}

// disagree returns the nodes whose GET /system/health does not show
// version, or that do not answer.
func disagree(ctx context.Context, client *http.Client, nodes []node, token, version string) []string {
	var out []string
	for _, n := range nodes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/system/health", nil)
		if err != nil {
			out = append(out, n.Name)
			continue
		}
		req.Header.Set("Authorization", "Bearer "+token)
		var hr api.HealthResponse
		if err := doJSON(client, req, &hr); err != nil || strconv.FormatUint(hr.Version, 10) != version {
			out = append(out, n.Name)
		}
	}
	return out
}

// doJSON sends req and decodes a 200 answer's JSON body into v.
func doJSON(client *http.Client, req *http.Request, v any) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}
