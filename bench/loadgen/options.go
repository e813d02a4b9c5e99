package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bounds on the flags, so that a typo cannot start a run that never ends or
// eats the machine.
const (
	maxDuration    = 30 * time.Minute
	maxRequests    = 100_000_000
	maxConcurrency = 10_000
	maxTimeout     = 5 * time.Minute
	maxRate        = 10_000_000
)

// usageError is a bad command line: main prints it with a hint to -h and
// exits 2, as package flag does.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a *usageError with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// options is the parsed command line.
type options struct {
	configPath string
	keysFile   string

	targets     []string // base URLs, without a trailing slash
	method      string   // HTTP method of every request
	path        string   // request path, with its query, appended to each target
	dns         string   // host:port, exclusive with targets
	dnsInterval time.Duration

	concurrency int
	duration    time.Duration // 0: no time limit
	requests    int64         // 0: no count limit
	rate        float64       // total requests per second; 0: no limit
	timeout     time.Duration

	keys         int // 0: every key of the mix's tiers
	mix          []mixEntry
	accuracyKeys int

	json      bool
	quiet     bool
	failOn5xx bool
	maxOver   float64 // percent; negative: off

	genConfig string
	genKeys   int
}

const usageHead = `loadgen sends GET /test (or -method -path) with X-API-Key to tierlimit nodes,
or to anything behind them, and reports throughput, latency, status counts,
the spread over targets and, for a set of fresh keys, how exactly the limits
were enforced.

Usage:
  loadgen [flags]                                  run a load
  loadgen -gen-config out.json -gen-keys N         write a config with fresh keys

Fresh keys for accuracy runs. The node counts only keys in its config, and a
key used earlier in the window starts the run already counted. So:
  1. loadgen -config config/tiers.json -gen-config /tmp/lg.json -gen-keys 50
     writes a copy of -config with 50 more keys per tier, named
     lg-<tier>-<runid>-<i> (i = 1..50, runid random hex, printed on stdout);
  2. start every node with -config /tmp/lg.json;
  3. loadgen -config /tmp/lg.json -accuracy-keys 5 -n 20000 ...
Keys are used generated-first: lg- keys, in order, then the others. The first
-accuracy-keys keys of each tier are the accuracy keys; the next are load
keys. A key is fresh for one run only: generate a new file per accuracy run,
or wait a window. -keys-file takes keys from another tiers file than -config.

Accuracy assumes fresh keys and judges each accuracy key against
  bound = max X-RateLimit-Limit seen × windows,
  windows = max(1, ceil(elapsed / window_seconds)),
so a run shorter than one window (60 s in config/tiers.json) is judged
against one window's limit. Over-admission = admitted above the bound;
under-admission = admitted below min(decided, limit), the first requests any
correct limiter admits. Requests without a decision (5xx, transport errors)
may have been counted by the node unseen; they are shown as undecided.

Flags:
`

const usageTail = `
Output: progress every second on stderr (-quiet hides it); the final report
on stdout, as tables or, with -json, as one JSON object and nothing else.
Latencies are of requests that got a response, from send to the last byte of
the body, from an HdrHistogram accurate to 0.1% (exact under 2 µs); -json
adds their distribution at percentiles 50 to 99.99 (latency.distribution).

Exit status: 0; 1 if the run failed, was interrupted, or a -fail-on-5xx or
-max-over-admission check failed (the report is printed first); 2 for a bad
command line.

Examples:
  loadgen -targets http://127.0.0.1:8080,http://127.0.0.1:8081 -c 32 -d 20s
  loadgen -dns tierlimit:8080 -c 64 -rate 5000 -d 1m -fail-on-5xx
  loadgen -config /tmp/lg.json -accuracy-keys 3 -mix free=50,pro=50 -n 6000 -json
`

// parseOptions parses and checks the command line. For -h it prints the
// usage on stderr and returns flag.ErrHelp; a bad command line returns a
// *usageError.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; usage is printed on -h only
	var targets, mix string
	fs.StringVar(&o.configPath, "config", "config/tiers.json", "tiers `file`: the window, the tiers' limits, and keys unless -keys-file is set")
	fs.StringVar(&o.keysFile, "keys-file", "", "tiers `file` to take keys from, by tier (default: -config)")
	fs.StringVar(&targets, "targets", "http://127.0.0.1:8080", "comma-separated base `URLs`; requests go round-robin to <url><-path>")
	fs.StringVar(&o.method, "method", http.MethodGet, "HTTP `method` of every request; the body is always empty")
	fs.StringVar(&o.path, "path", "/test", "request `path`, with an optional query, appended to each target")
	fs.StringVar(&o.dns, "dns", "", "resolve the name in `host:port` and send to http://<every address>:port, re-resolved every -dns-interval (instead of -targets)")
	fs.DurationVar(&o.dnsInterval, "dns-interval", 5*time.Second, "how often -dns is resolved again")
	fs.IntVar(&o.concurrency, "c", 10, "concurrent workers, each with at most one request in flight")
	fs.DurationVar(&o.duration, "d", 0, "run `duration`, at most 30m (-d or -n or both: whichever ends first)")
	fs.Int64Var(&o.requests, "n", 0, "total `requests`, at most 100000000")
	fs.Float64Var(&o.rate, "rate", 0, "most requests per second, all workers together (0: as fast as possible)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "per-request timeout")
	fs.IntVar(&o.keys, "keys", 0, "`N` load keys to spread over, split by -mix, besides the accuracy keys (0: every key of the mix's tiers)")
	fs.StringVar(&mix, "mix", defaultMix, "tier `mix` in percent, adding up to 100")
	fs.IntVar(&o.accuracyKeys, "accuracy-keys", 0, "`K` fresh keys per tier whose admissions are counted exactly and judged (see above)")
	fs.BoolVar(&o.json, "json", false, "print the report as one JSON object on stdout")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines on stderr")
	fs.BoolVar(&o.failOn5xx, "fail-on-5xx", false, "exit 1 if any 5xx response or transport error happened")
	fs.Float64Var(&o.maxOver, "max-over-admission", -1, "exit 1 if a tier's over-admission exceeds `P` percent (needs -accuracy-keys; negative: off)")
	fs.StringVar(&o.genConfig, "gen-config", "", "write a copy of -config with -gen-keys fresh keys per tier to `file`, then exit")
	fs.IntVar(&o.genKeys, "gen-keys", 0, "keys per tier for -gen-config, at most 100000")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usageHead)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			fmt.Fprint(stderr, usageTail)
			return options{}, err
		}
		return options{}, &usageError{err: err}
	}
	if fs.NArg() > 0 {
		return options{}, usagef("unexpected argument %q", fs.Arg(0))
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if o.genConfig != "" {
		if o.genKeys < 1 || o.genKeys > maxGenKeys {
			return options{}, usagef("-gen-keys %d: want 1 to %d with -gen-config", o.genKeys, maxGenKeys)
		}
		return o, nil
	}
	if set["gen-keys"] {
		return options{}, usagef("-gen-keys needs -gen-config")
	}
	return o, o.check(targets, mix, set)
}

// check validates the load options and fills targets and mix.
func (o *options) check(targets, mix string, set map[string]bool) error {
	var err error
	if o.dns != "" {
		if set["targets"] {
			return usagef("-targets and -dns exclude each other")
		}
		host, port, err := net.SplitHostPort(o.dns)
		if err != nil || host == "" {
			return usagef("-dns %q: want host:port", o.dns)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return usagef("-dns %q: port must be 1 to 65535", o.dns)
		}
		if o.dnsInterval < 100*time.Millisecond {
			return usagef("-dns-interval %s: want at least 100ms", o.dnsInterval)
		}
	} else if o.targets, err = parseTargets(targets); err != nil {
		return &usageError{err: err}
	}
	if err := checkMethod(o.method); err != nil {
		return &usageError{err: err}
	}
	if err := checkPath(o.path); err != nil {
		return &usageError{err: err}
	}
	switch {
	case o.duration == 0 && o.requests == 0:
		return usagef("set -d or -n (or both) to bound the run")
	case o.duration < 0 || o.duration > maxDuration:
		return usagef("-d %s: want at most %s", o.duration, maxDuration)
	case o.requests < 0 || o.requests > maxRequests:
		return usagef("-n %d: want 0 to %d", o.requests, maxRequests)
	case o.concurrency < 1 || o.concurrency > maxConcurrency:
		return usagef("-c %d: want 1 to %d", o.concurrency, maxConcurrency)
	case o.rate < 0 || o.rate > maxRate:
		return usagef("-rate %g: want 0 to %d", o.rate, maxRate)
	case o.timeout <= 0 || o.timeout > maxTimeout:
		return usagef("-timeout %s: want more than 0, at most %s", o.timeout, maxTimeout)
	case o.keys < 0 || o.keys > maxKeys:
		return usagef("-keys %d: want 0 to %d", o.keys, maxKeys)
	case o.accuracyKeys < 0 || o.accuracyKeys > maxAccuracyKeys:
		return usagef("-accuracy-keys %d: want 0 to %d", o.accuracyKeys, maxAccuracyKeys)
	case o.maxOver >= 0 && o.accuracyKeys == 0:
		return usagef("-max-over-admission needs -accuracy-keys")
	}
	if o.mix, err = parseMix(mix); err != nil {
		return &usageError{err: err}
	}
	return nil
}

// parseTargets parses a comma-separated list of http or https base URLs,
// such as "http://127.0.0.1:8080,http://127.0.0.1:8081", and returns them
// without trailing slashes. A base URL may carry a path prefix.
func parseTargets(s string) ([]string, error) {
	var out []string
	for t := range strings.SplitSeq(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		u, err := url.Parse(t)
		if err != nil {
			return nil, fmt.Errorf("-targets: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("-targets %q: want a base URL such as http://127.0.0.1:8080", t)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("-targets %q: a base URL has no query or fragment", t)
		}
		out = append(out, strings.TrimRight(t, "/"))
	}
	if len(out) == 0 {
		return nil, errors.New("-targets: empty")
	}
	return out, nil
}

// checkMethod reports a method that is not an HTTP token (RFC 9110,
// Section 5.6.2), such as "GET" or "POST", as net/http would refuse it on
// every request.
func checkMethod(m string) error {
	if m == "" {
		return errors.New("-method: empty")
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return fmt.Errorf("-method %q: not an HTTP method", m)
	}
	return nil
}

// checkPath reports a -path that is not an absolute path with an optional
// query, such as /test or /v1/x?y=1.
func checkPath(p string) error {
	u, err := url.Parse(p)
	if err != nil || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || u.Scheme != "" || u.Host != "" {
		return fmt.Errorf("-path %q: want an absolute path such as /test", p)
	}
	if u.Fragment != "" || strings.Contains(p, "#") {
		return fmt.Errorf("-path %q: a request path has no fragment", p)
	}
	return nil
}
