package loadrun

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Main runs a command's run with its arguments, environment and standard
// error, stopped by an interrupt or SIGTERM, and exits 1 on its error
// (printed after name), quietly on -h.
func Main(name string, run func(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// ClusterFlags are the flags that name the nodes and the admin token.
type ClusterFlags struct {
	targets *string
	token   *string
}

// AddClusterFlags defines -targets and -admin-token (default: ADMIN_TOKEN
// from getenv) on fs.
func AddClusterFlags(fs *flag.FlagSet, getenv func(string) string) *ClusterFlags {
	return &ClusterFlags{
		targets: fs.String("targets", "", "comma-separated base URLs of the nodes, such as http://127.0.0.1:8081 (required)"),
		token:   fs.String("admin-token", getenv("ADMIN_TOKEN"), "bearer token of /system/health (env ADMIN_TOKEN)"),
	}
}

// Parse returns the targets and the token; it fails if there is no
// target, or no token (use says what the run does with it).
func (c *ClusterFlags) Parse(use string) ([]string, string, error) {
	targets := SplitList(*c.targets)
	if len(targets) == 0 {
		return nil, "", fmt.Errorf("-targets: want at least one base URL")
	}
	if *c.token == "" {
		return nil, "", fmt.Errorf("-admin-token (or ADMIN_TOKEN) is required: %s", use)
	}
	return targets, *c.token, nil
}

// NoArgs fails if fs was given arguments after its flags.
func NoArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// CheckWork fails unless a job of work fits in a request's timeout.
func CheckWork(work, timeout time.Duration) error {
	if work < 0 || work >= timeout {
		return fmt.Errorf("-work %v: want 0 or more, and less than -timeout %v", work, timeout)
	}
	return nil
}

// SplitList splits a comma-separated list, trimming each item (and a
// URL's trailing slash) and dropping empty ones.
func SplitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimRight(strings.TrimSpace(item), "/"); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// ParsePerTier parses "free=30,pro=10" into values by tier name. Every
// value must be a finite number that passes ok; want says, in an error,
// what ok takes.
func ParsePerTier(flagName, s string, ok func(float64) bool, want string) (map[string]float64, error) {
	out := make(map[string]float64)
	for item := range strings.SplitSeq(s, ",") {
		name, value, cut := strings.Cut(strings.TrimSpace(item), "=")
		if !cut || name == "" {
			return nil, fmt.Errorf("%s %q: %q is not TIER=NUMBER", flagName, s, item)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || !ok(v) {
			return nil, fmt.Errorf("%s %q: %s=%s: want %s", flagName, s, name, value, want)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s %q: tier %s given twice", flagName, s, name)
		}
		out[name] = v
	}
	return out, nil
}

// SleepUntil waits until t or until ctx ends, and then returns ctx's error.
func SleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
