package main

import (
	"flag"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit"
	"github.com/tierlimit/tierlimit/proxy"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestOptionsDefaults(t *testing.T) {
	o, err := parseOptions(nil, envOf(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "config/tiers.json", o.cfg.TiersFile)
	assert.Equal(t, ":8080", o.httpAddr)
	assert.Equal(t, ":9090", o.cfg.GRPCAddr)
	assert.Equal(t, ":7946", o.cfg.GossipAddr)
	assert.Empty(t, o.cfg.Join)
	assert.Zero(t, o.cfg.ForwardTimeout, "adaptive")
	assert.Equal(t, time.Millisecond, o.cfg.ForwardTimeoutMin)
	assert.Equal(t, tierlimit.DefaultForwardTimeoutMax, o.cfg.ForwardTimeoutMax)
	assert.Equal(t, 1_000_000, o.cfg.MaxKeys)
	assert.NotEmpty(t, o.cfg.NodeName, "defaults to the hostname")
}

func TestOptionsFromEnvironmentAndFlags(t *testing.T) {
	env := envOf(map[string]string{
		"CONFIG": "/etc/tiers.json", "HTTP_ADDR": ":1", "GRPC_ADDR": ":2", "GOSSIP_ADDR": ":3",
		"JOIN": "a:7946, b:7946,", "ADVERTISE_ADDR": "10.0.0.1", "NODE_NAME": "n1",
		"ADMIN_TOKEN": "t", "CLUSTER_KEY": "k", "FORWARD_TIMEOUT": "3ms", "MAX_KEYS": "10",
		"MAX_CLOCK_OFFSET": "1s", "STATE_FILE": "/var/lib/tierlimit/health.json", "INSECURE_OPEN_CLUSTER": "true",
		"UPSTREAM": "http://127.0.0.1:8000/api", "UPSTREAM_RESPONSE_TIMEOUT": "90s", "MAX_JOB_DURATION": "20m",
		"AUTO_HIGH": "0.9", "AUTO_DOWN_HOLD": "20s",
	})
	o, err := parseOptions([]string{"-http-addr", ":9"}, env, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, options{
		cfg: tierlimit.Config{
			TiersFile: "/etc/tiers.json", GRPCAddr: ":2", GossipAddr: ":3",
			Join: []string{"a:7946", "b:7946"}, AdvertiseAddr: "10.0.0.1", NodeName: "n1",
			AdminToken: "t", ClusterKey: "k", ForwardTimeout: 3 * time.Millisecond, MaxKeys: 10,
			MaxClockOffset: time.Second, StateFile: "/var/lib/tierlimit/health.json", InsecureOpenCluster: true,
			QuorumGrace: 30 * time.Second, BackupInterval: 100 * time.Millisecond, LeaseTTL: time.Second,
			ForwardTimeoutMin: time.Millisecond, ForwardTimeoutMax: tierlimit.DefaultForwardTimeoutMax,
			MaxJobDuration: 20 * time.Minute,
			AutoHigh:       0.9, AutoLow: 0.75, AutoUpHold: time.Second, AutoDownHold: 20 * time.Second,
		},
		httpAddr: ":9", shutdownGrace: 10 * time.Second, logLevel: "info", logFormat: "auto", nodeNameSet: true,
		upstream: proxy.Config{
			Upstream:    &url.URL{Scheme: "http", Host: "127.0.0.1:8000", Path: "/api"},
			DialTimeout: 5 * time.Second, ResponseTimeout: 90 * time.Second, IdleTimeout: time.Minute,
		},
	}, o, "a flag beats its variable; every other variable applies")
}

func TestOptionsRejectBadValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad duration in env", nil, map[string]string{"FORWARD_TIMEOUT": "soon"}, "FORWARD_TIMEOUT"},
		{"bad duration", []string{"-shutdown-grace", "5"}, nil, "shutdown-grace"},
		{"negative grace", []string{"-shutdown-grace", "-1s"}, nil, "-shutdown-grace"},
		{"stray argument", []string{"serve"}, nil, "unexpected argument"},
		{"zero upstream timeout", []string{"-upstream-response-timeout", "0s"}, nil, "-upstream-response-timeout: 0s is not positive"},
		{"negative idle timeout", nil, map[string]string{"PROXY_IDLE_TIMEOUT": "-1s"}, "-proxy-idle-timeout: -1s is not positive"},
		{"upstream is the node itself", []string{"-http-addr", ":8080", "-upstream", "http://127.0.0.1:8080/api"}, nil,
			"-upstream http://127.0.0.1:8080/api is this node's own -http-addr :8080: every request would come back to it"},
		{"upstream is the node itself by name", []string{"-http-addr", "127.0.0.1:80", "-upstream", "http://localhost"}, nil,
			"-upstream http://localhost is this node's own -http-addr 127.0.0.1:80"},
		{"upstream is the node itself, IPv6", []string{"-http-addr", "[::]:9000", "-upstream", "http://[::1]:9000"}, nil,
			"is this node's own -http-addr [::]:9000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(tt.args, envOf(tt.env), io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestUpstreamIsSelf(t *testing.T) {
	for _, tt := range []struct {
		listen, upstream string
		self             bool
	}{
		{":8080", "http://127.0.0.1:8080", true},
		{"0.0.0.0:8080", "http://localhost:8080/api", true},
		{"127.0.0.1:8080", "http://127.0.0.1:8080", true},
		{"10.0.0.5:443", "https://10.0.0.5", true},
		{":8080", "http://127.0.0.1:8000", false}, // the usual app beside the node
		{":8080", "http://10.0.0.5:8080", false},  // another host
		{"10.0.0.5:8080", "http://127.0.0.1:8080", false},
		{":8080", "https://127.0.0.1", false},
	} {
		u, err := url.Parse(tt.upstream)
		require.NoError(t, err)
		assert.Equal(t, tt.self, upstreamIsSelf(tt.listen, u), "%s -> %s", tt.listen, tt.upstream)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func TestRunRefusesBadLimiterSettings(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"negative forward timeout", []string{"-forward-timeout", "-1ms"}, "Config.ForwardTimeout (-forward-timeout): -1ms is negative"},
		{"seed without port", []string{"-join", "seed"}, `Config.Join (-join): "seed" is not host:port`},
		{"negative max keys", []string{"-max-keys", "-1"}, "Config.MaxKeys (-max-keys): -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-config", "../../config/tiers.json", "-http-addr", "127.0.0.1:0",
				"-grpc-addr", "127.0.0.1:0", "-gossip-addr", "127.0.0.1:0"}, tt.args...)
			err := run(t.Context(), args, envOf(nil), io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestCommandLineMistakesGetOneLine: -h prints the usage and is no error;
// a bad value or level gets one line that names the flag or variable, the
// value and what would do, and no usage dump.
func TestCommandLineMistakesGetOneLine(t *testing.T) {
	var out strings.Builder
	_, err := parseOptions([]string{"-h"}, envOf(nil), &out)
	assert.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, out.String(), "-forward-timeout", "the usage")

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"duration without a unit", []string{"-forward-timeout", "5"}, nil,
			`invalid value "5" for flag -forward-timeout: not a duration: give a number with a unit, such as 5ms or 2s`},
		{"duration in the environment", nil, map[string]string{"LEASE_TTL": "1"},
			`environment variable LEASE_TTL="1": not a duration: give a number with a unit, such as 5ms or 2s`},
		{"not a number", []string{"-max-keys", "many"}, nil, `invalid value "many" for flag -max-keys: not a whole number, such as 1000000`},
		{"not a boolean", []string{"-insecure-open-cluster=maybe"}, nil, `invalid boolean value "maybe" for -insecure-open-cluster: want true or false`},
		{"unknown flag", []string{"-frobnicate"}, nil, "flag provided but not defined: -frobnicate"},
		{"log level", []string{"-log-level", "verbose"}, nil, `invalid value "verbose" for flag -log-level: want debug, info, warn or error`},
		{"log level in the environment", nil, map[string]string{"LOG_LEVEL": "loud"},
			`environment variable LOG_LEVEL="loud": want debug, info, warn or error`},
		{"log format", []string{"-log-format", "xml"}, nil, `invalid value "xml" for flag -log-format: want json, text or auto`},
		{"upstream without a scheme", []string{"-upstream", "127.0.0.1:8000"}, nil,
			`invalid value "127.0.0.1:8000" for flag -upstream: the scheme must be http or https, as in http://127.0.0.1:8000`},
		{"upstream in the environment", nil, map[string]string{"UPSTREAM": "ftp://x"},
			`environment variable UPSTREAM="ftp://x": the scheme must be http or https, as in http://127.0.0.1:8000`},
		{"upstream without a host", []string{"-upstream", "http:///api"}, nil,
			`invalid value "http:///api" for flag -upstream: no host: give one such as http://127.0.0.1:8000`},
		{"upstream with a query", []string{"-upstream", "http://a:1/?x=1"}, nil,
			`invalid value "http://a:1/?x=1" for flag -upstream: a query or fragment is not supported: give the base URL, such as http://127.0.0.1:8000/api`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			_, err := parseOptions(tt.args, envOf(tt.env), &out)
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
			assert.Empty(t, out.String(), "nothing but the error is printed")
		})
	}

	_, err = newLogger(io.Discard, "verbose", "auto")
	assert.EqualError(t, err, `-log-level: "verbose" is not debug, info, warn or error`)
}
