package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/ring"
)

// Node is one cmd/node process of the cluster under test.
type Node struct {
	Name string `json:"name"` // as the node calls itself
	URL  string `json:"url"`
	PID  int    `json:"pid"`
}

// loopbackURL returns an error unless raw is an http URL whose host is a
// loopback IP address: the program stops processes and floods keys, and
// must not be pointed anywhere else.
func loopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("node URL %q: %w", raw, err)
	}
	ip := net.ParseIP(u.Hostname())
	if u.Scheme != "http" || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("node URL %q: want http://127.x.x.x:port, a loopback address", raw)
	}
	return nil
}

// processOf returns an error unless pid is a running process whose
// command line names binary: the node that serves url must be the one we
// stop.
func processOf(pid int, binary string) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	if !strings.HasSuffix(argv0, binary) {
		return fmt.Errorf("pid %d runs %q, not %s", pid, argv0, binary)
	}
	return nil
}

// admin is a client of the nodes' admin and metrics endpoints.
type admin struct {
	client *http.Client
	token  string
}

// cluster returns node url's view of the cluster.
func (a admin) cluster(ctx context.Context, url string) (api.ClusterResponse, error) {
	var out api.ClusterResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/system/cluster", nil)
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return out, fmt.Errorf("cluster of %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("cluster of %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("cluster of %s: %w", url, err)
	}
	return out, nil
}

// metric returns the sum of the samples of the series called name on node
// url's /metrics, labels ignored.
func (a admin) metric(ctx context.Context, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics of %s: %s", url, resp.Status)
	}
	return sumSeries(resp.Body, name)
}

// sumSeries adds up the samples of the series called name in Prometheus
// text read from r.
func sumSeries(r io.Reader, name string) (float64, error) {
	sum := 0.0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// nameNodes asks each node its name and checks that every one sees all of
// them alive: the ring the keys are picked with is built from those names.
func nameNodes(ctx context.Context, a admin, nodes []Node) error {
	for i := range nodes {
		c, err := a.cluster(ctx, nodes[i].URL)
		if err != nil {
			return err
		}
		nodes[i].Name = c.Node
		alive := 0
		for _, m := range c.Members {
			if m.State == "alive" {
				alive++
			}
		}
		if alive != len(nodes) {
			return fmt.Errorf("%s (%s) sees %d members alive, want %d", c.Node, nodes[i].URL, alive, len(nodes))
		}
	}
	return nil
}

// pickKeys returns n keys of tier from keys (API key → tier name) that the
// ring of names gives to owner, in sorted order: the ring is the nodes'
// own (ring.Ring), which places a key by member names alone.
func pickKeys(keys map[string]string, tier string, names []string, owner string, n int) ([]string, error) {
	rg := ring.New()
	rg.Set(names)
	var all []string
	for k, t := range keys {
		if t == tier {
			all = append(all, k)
		}
	}
	slices.Sort(all)
	var out []string
	for _, k := range all {
		if o, _ := rg.Owner(k); o == owner {
			out = append(out, k)
			if len(out) == n {
				return out, nil
			}
		}
	}
	return nil, fmt.Errorf("tier %s: %d of %d keys owned by %s, want %d: generate more keys", tier, len(out), len(all), owner, n)
}

// checkOwnership asks the nodes who counts the keys, once each key has
// been hit: each node's tierlimit_store_keys counts the keys it owns, so
// the owner must hold every one of the run's keys (and the others none,
// the cluster having served no other keys), or the ring computed here is
// not the nodes'.
func checkOwnership(ctx context.Context, a admin, nodes []Node, owner string, keys int) error {
	for _, n := range nodes {
		v, err := a.metric(ctx, n.URL, "tierlimit_store_keys")
		if err != nil {
			return err
		}
		switch {
		case n.Name == owner && int(v) < keys:
			return fmt.Errorf("owner %s counts %v keys, want the run's %d: the ring differs from the nodes'", n.Name, v, keys)
		case n.Name != owner && v != 0:
			return fmt.Errorf("%s counts %v keys, want 0: the ring differs from the nodes'", n.Name, v)
		}
	}
	return nil
}

// memberWatch records how one node sees another while the other is
// paused: the states it reports, with when each was first seen.
type memberWatch struct {
	Observer string       `json:"observer"`
	Seen     []stateSince `json:"seen"`
}

type stateSince struct {
	State string    `json:"state"`
	Since time.Time `json:"since"`
}

// watchMember polls observer's view of member every 200 ms until ctx ends.
func watchMember(ctx context.Context, a admin, observer Node, member string) memberWatch {
	w := memberWatch{Observer: observer.Name}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		c, err := a.cluster(cctx, observer.URL)
		cancel()
		state := "no answer"
		if err == nil {
			state = "absent"
			for _, m := range c.Members {
				if m.Name == member {
					state = m.State
				}
			}
		}
		if len(w.Seen) == 0 || w.Seen[len(w.Seen)-1].State != state {
			w.Seen = append(w.Seen, stateSince{State: state, Since: time.Now()})
		}
		select {
		case <-ctx.Done():
			return w
		case <-t.C:
		}
	}
}
