package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tierlimit/tierlimit/bench/loadreport"
)

// Stacks measured, as named in runs.tsv.
const (
	stackFloor     = "floor"          // bench/floor, reached directly
	stackProxy     = "proxy"          // cmd/node -upstream, in front of the floor
	stackBare      = "bare"           // FastAPI with no limiter
	stackTL        = "tierlimit"      // FastAPI + TierLimitMiddleware, a node beside each app
	stackRedis     = "redis"          // FastAPI + RedisLimitMiddleware, one central Redis
	stackRedisEdg  = "redis-boundary" // the same, an accuracy run across a fixed window's end
	stackNginx     = "nginx"          // nginx with bench/nginx/plain.conf, in front of the floor
	stackNginxAuth = "nginx-auth"     // nginx with examples/nginx/nginx.conf: auth_request to a node, then the floor
)

var stackLabel = map[string]string{
	stackFloor:     "Go upstream (bench/floor), direct",
	stackProxy:     "cmd/node -upstream → the same upstream",
	stackBare:      "FastAPI, no limiter",
	stackTL:        "FastAPI + TierLimitMiddleware (3-node cluster)",
	stackRedis:     "FastAPI + Redis middleware (central Redis)",
	stackRedisEdg:  "FastAPI + Redis middleware, across a window's end",
	stackNginx:     "nginx, plain (bench/nginx/plain.conf) → the upstream",
	stackNginxAuth: "nginx as shipped (examples/nginx/nginx.conf): auth_request → node → the upstream",
}

// tierlimitStacks are the stacks whose answers come with a tierlimit
// node's rate-limit headers, which the smoke checks hold them to.
var tierlimitStacks = map[string]bool{stackProxy: true, stackTL: true, stackNginxAuth: true}

// noLimiter are the stacks with no limiter, whose answers carry no
// rate-limit headers.
var noLimiter = map[string]bool{stackFloor: true, stackBare: true, stackNginx: true}

// Kinds of runs, as named in runs.tsv.
const (
	kindLoad     = "load"     // enterprise keys whose limit never binds, 500 of them
	kindHot      = "hot"      // the same over 30 keys, each hit often enough to be leased
	kindAccuracy = "accuracy" // fresh keys of every tier, sent well over their limits
)

// result is one line of runs.tsv with its report.
type result struct {
	kind   string // kindLoad, kindHot or kindAccuracy
	stack  string
	c      int
	cpu    map[string]float64 // CPU seconds used during the run, by role
	others int                // percent of the machine other programs took meanwhile
	// paths are the decisions the stack's nodes made during the run, by
	// the path that decided them; nil for a stack without nodes.
	paths []decisions
	rep   *loadreport.Report
}

// decisions are the checks one path decided (local, lease, forwarded, …)
// and the time they took in all.
type decisions struct {
	path    string
	count   int64
	seconds float64
}

// upload is one line of upload.tsv: one 200 MB POST, direct or through
// the proxy.
type upload struct {
	path    string // direct or proxy
	seconds float64
	bytes   int64
	code    int
	// rssBefore and peak are the proxy node's VmRSS just before the upload
	// and its VmHWM after it, in kB (proxy uploads only); peakReset
	// reports whether the peak was reset (clear_refs) before the upload,
	// so that it is the upload's, not the process's lifetime peak.
	rssBefore, peak int64
	peakReset       bool
}

// profile is one profile's top entries, as the script saved them.
type profile struct {
	name string // file name without extension
	text string
}

// inputs is everything a report is made of.
type inputs struct {
	meta     [][2]string // key=value lines, in order
	runs     []result
	uploads  []upload
	profiles []profile
}

// readInputs reads the files the script wrote. uploads and profiles may be
// empty paths.
func readInputs(runsPath, uploadsPath, metaPath, profilesDir string) (*inputs, error) {
	in := &inputs{}
	var err error
	if in.meta, err = readMeta(metaPath); err != nil {
		return nil, err
	}
	if in.runs, err = readRuns(runsPath); err != nil {
		return nil, err
	}
	if uploadsPath != "" {
		if in.uploads, err = readUploads(uploadsPath); err != nil {
			return nil, err
		}
	}
	if profilesDir != "" {
		if in.profiles, err = readProfiles(profilesDir); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// readMeta reads key=value lines; blank lines are skipped.
func readMeta(path string) ([][2]string, error) {
	var out [][2]string
	err := eachLine(path, func(line int, s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want key=value", path, line)
		}
		out = append(out, [2]string{k, v})
		return nil
	})
	return out, err
}

// readRuns reads runs.tsv: kind (load, hot or accuracy), stack,
// concurrency, report path, CPU seconds by role (role=seconds,
// comma-separated), others' percent, and, optionally, the nodes' decisions
// by path (path=count:seconds, comma-separated, or "-"); tab-separated. A
// relative report path is taken from runs.tsv's directory.
func readRuns(path string) ([]result, error) {
	var runs []result
	err := eachLine(path, func(line int, s string) error {
		f := strings.Split(s, "\t")
		if len(f) != 6 && len(f) != 7 {
			return fmt.Errorf("%s:%d: %d fields, want 6 or 7", path, line, len(f))
		}
		r := result{kind: f[0], stack: f[1]}
		if r.kind != kindLoad && r.kind != kindHot && r.kind != kindAccuracy {
			return fmt.Errorf("%s:%d: unknown kind %q", path, line, r.kind)
		}
		if _, ok := stackLabel[r.stack]; !ok {
			return fmt.Errorf("%s:%d: unknown stack %q", path, line, r.stack)
		}
		var err error
		if r.c, err = strconv.Atoi(f[2]); err != nil {
			return fmt.Errorf("%s:%d: concurrency: %w", path, line, err)
		}
		if r.cpu, err = parseCPU(f[4]); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if r.others, err = strconv.Atoi(f[5]); err != nil {
			return fmt.Errorf("%s:%d: others: %w", path, line, err)
		}
		if len(f) == 7 {
			if r.paths, err = parseDecisions(f[6]); err != nil {
				return fmt.Errorf("%s:%d: %w", path, line, err)
			}
		}
		rp := f[3]
		if !filepath.IsAbs(rp) {
			rp = filepath.Join(filepath.Dir(path), rp)
		}
		if r.rep, err = loadreport.ReadFile(rp); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		runs = append(runs, r)
		return nil
	})
	return runs, err
}

// parseCPU parses "app=1.5,node=0.25" into seconds by role; "" or "-" is
// none.
func parseCPU(s string) (map[string]float64, error) {
	out := make(map[string]float64)
	if s == "" || s == "-" {
		return out, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		x, err := strconv.ParseFloat(v, 64)
		if !ok || k == "" || err != nil || x < 0 {
			return nil, fmt.Errorf("cpu %q: want role=seconds, comma-separated", s)
		}
		out[k] = x
	}
	return out, nil
}

// parseDecisions parses "local=120:0.0012,forwarded=30:0.009"; "" or "-"
// is none.
func parseDecisions(s string) ([]decisions, error) {
	if s == "" || s == "-" {
		return nil, nil
	}
	var out []decisions
	for part := range strings.SplitSeq(s, ",") {
		p, v, ok1 := strings.Cut(part, "=")
		n, secs, ok2 := strings.Cut(v, ":")
		d := decisions{path: p}
		var err1, err2 error
		d.count, err1 = strconv.ParseInt(n, 10, 64)
		d.seconds, err2 = strconv.ParseFloat(secs, 64)
		if !ok1 || !ok2 || p == "" || err1 != nil || err2 != nil || d.count < 0 || d.seconds < 0 {
			return nil, fmt.Errorf("decisions %q: want path=count:seconds, comma-separated", s)
		}
		out = append(out, d)
	}
	return out, nil
}

// readUploads reads upload.tsv: path, seconds, bytes, HTTP status, VmRSS
// before (kB), VmHWM after (kB), whether the peak was reset (yes or no);
// tab-separated; "-" for the memory of a direct upload.
func readUploads(path string) ([]upload, error) {
	var out []upload
	err := eachLine(path, func(line int, s string) error {
		f := strings.Split(s, "\t")
		if len(f) != 7 {
			return fmt.Errorf("%s:%d: %d fields, want 7", path, line, len(f))
		}
		u := upload{path: f[0], peakReset: f[6] == "yes"}
		if u.path != "direct" && u.path != "proxy" {
			return fmt.Errorf("%s:%d: unknown path %q", path, line, u.path)
		}
		var errs []error
		var err error
		u.seconds, err = strconv.ParseFloat(f[1], 64)
		errs = append(errs, err)
		u.bytes, err = strconv.ParseInt(f[2], 10, 64)
		errs = append(errs, err)
		u.code, err = strconv.Atoi(f[3])
		errs = append(errs, err)
		if u.path == "proxy" {
			u.rssBefore, err = strconv.ParseInt(f[4], 10, 64)
			errs = append(errs, err)
			u.peak, err = strconv.ParseInt(f[5], 10, 64)
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// readProfiles reads every .txt file of dir, by name.
func readProfiles(dir string) ([]profile, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	var out []profile
	for _, n := range names { // Glob sorts
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, profile{name: strings.TrimSuffix(filepath.Base(n), ".txt"), text: string(data)})
	}
	return out, nil
}

// eachLine calls fn with every non-blank line of the file at path,
// numbered from 1.
func eachLine(path string, fn func(line int, s string) error) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		if err := fn(line, sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}
