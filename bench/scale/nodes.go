package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// node is one cluster member as the script started it.
type node struct {
	Name string
	// URL is the base URL of its HTTP server, such as http://127.0.0.10:24180.
	URL string
	// Log is the path of the file its stderr, JSON log lines, goes to.
	Log string
}

// readNodes reads a nodes file: one node a line, its name, URL and log path
// separated by tabs. Blank lines are skipped.
func readNodes(path string) ([]node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []node
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		fields := strings.Split(text, "\t")
		if len(fields) != 3 || fields[0] == "" || fields[1] == "" || fields[2] == "" {
			return nil, fmt.Errorf("%s:%d: want name, URL and log path separated by tabs, got %q", path, line, text)
		}
		if seen[fields[0]] {
			return nil, fmt.Errorf("%s:%d: node %s listed twice", path, line, fields[0])
		}
		seen[fields[0]] = true
		out = append(out, node{Name: fields[0], URL: strings.TrimRight(fields[1], "/"), Log: fields[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no nodes", path)
	}
	return out, nil
}

// splitNames splits a comma-separated list of names, dropping empty ones.
func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
