package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// options are the node's settings, from flags and environment variables.
type options struct {
	configPath     string
	httpAddr       string
	grpcAddr       string
	gossipAddr     string
	join           []string
	advertiseAddr  string
	nodeName       string
	adminToken     string
	clusterKey     string
	forwardTimeout time.Duration
	maxKeys        int
	shutdownGrace  time.Duration
	logLevel       string
	logFormat      string

	// Test hooks, not flags: gossip timings, the re-join period, and dial
	// options for peer connections (fault injection).
	gossipConfig   memberlistConfig
	rejoinInterval time.Duration
	dialOptions    []grpc.DialOption
}

// envName returns the environment variable that sets flag name: upper case,
// dashes to underscores (-http-addr is HTTP_ADDR).
func envName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseOptions reads args (without the program name), then fills every flag
// not given on the command line from its environment variable. A flag
// always beats its variable.
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	hostname, _ := os.Hostname()
	var o options
	var join string
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configPath, "config", "config/tiers.json", "tier config file (env CONFIG)")
	fs.StringVar(&o.httpAddr, "http-addr", ":8080", "HTTP listen address (env HTTP_ADDR)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", ":9090", "gRPC listen address for peers (env GRPC_ADDR)")
	fs.StringVar(&o.gossipAddr, "gossip-addr", ":7946", "gossip (memberlist) listen address, UDP and TCP (env GOSSIP_ADDR)")
	fs.StringVar(&join, "join", "", "comma-separated host:port gossip seeds; empty = start alone (env JOIN)")
	fs.StringVar(&o.advertiseAddr, "advertise-addr", "", "host or IP peers use to reach this node; needed in containers (env ADVERTISE_ADDR)")
	fs.StringVar(&o.nodeName, "node-name", hostname, "unique node name (env NODE_NAME)")
	fs.StringVar(&o.adminToken, "admin-token", "", "bearer token for /system/*; empty = generate one and log it (env ADMIN_TOKEN)")
	fs.StringVar(&o.clusterKey, "cluster-key", "", "shared secret: encrypts gossip and authenticates gRPC between peers (env CLUSTER_KEY)")
	fs.DurationVar(&o.forwardTimeout, "forward-timeout", 5*time.Millisecond, "deadline of a check forwarded to a key's owner (env FORWARD_TIMEOUT)")
	fs.IntVar(&o.maxKeys, "max-keys", 1_000_000, "most keys counted at once per store (env MAX_KEYS)")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 10*time.Second, "how long in-flight requests may take to finish on shutdown (env SHUTDOWN_GRACE)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&o.logFormat, "log-format", "auto", "json, text, or auto (text on a terminal) (env LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("environment variable %s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return o, err
	}
	for _, s := range strings.Split(join, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.join = append(o.join, s)
		}
	}
	return o, o.validate()
}

func (o options) validate() error {
	switch {
	case o.nodeName == "":
		return errors.New("-node-name: empty (and no hostname to default to)")
	case o.forwardTimeout <= 0:
		return fmt.Errorf("-forward-timeout: %v is not positive", o.forwardTimeout)
	case o.maxKeys <= 0:
		return fmt.Errorf("-max-keys: %d is not positive", o.maxKeys)
	case o.shutdownGrace < 0:
		return fmt.Errorf("-shutdown-grace: %v is negative", o.shutdownGrace)
	}
	for _, s := range o.join {
		if _, port, err := splitHostPort(s); err != nil || port == 0 {
			return fmt.Errorf("-join: %q is not host:port", s)
		}
	}
	return nil
}

// splitHostPort splits "host:port" and parses the port.
func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("%q has no port", s)
	}
	port, err := strconv.Atoi(s[i+1:])
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", s)
	}
	return strings.Trim(s[:i], "[]"), port, nil
}
