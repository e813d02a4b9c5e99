package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := parseOptions([]string{"-n", "100"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, options{
		configPath:  "config/tiers.json",
		targets:     []string{"http://127.0.0.1:8080"},
		method:      "GET",
		path:        "/test",
		dnsInterval: 5 * time.Second,
		concurrency: 10,
		requests:    100,
		timeout:     2 * time.Second,
		mix:         []mixEntry{{"free", 70}, {"pro", 25}, {"enterprise", 5}},
		maxOver:     -1,
	}, o)
}

func TestOptionsAllFlags(t *testing.T) {
	o, err := parseOptions(strings.Fields(
		"-config c.json -keys-file k.json -targets http://h1:1/,https://h2:2/base -method POST -path /v1/x?y=1 "+
			"-c 3 -d 10s -n 5 -rate 2.5 "+
			"-timeout 1s -keys 7 -mix pro=100 -accuracy-keys 2 -json -quiet -fail-on-5xx -max-over-admission 1.5"), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, options{
		configPath: "c.json", keysFile: "k.json",
		targets: []string{"http://h1:1", "https://h2:2/base"}, method: "POST", path: "/v1/x?y=1",
		dnsInterval: 5 * time.Second,
		concurrency: 3, duration: 10 * time.Second, requests: 5, rate: 2.5, timeout: time.Second,
		keys: 7, mix: []mixEntry{{"pro", 100}}, accuracyKeys: 2,
		json: true, quiet: true, failOn5xx: true, maxOver: 1.5,
	}, o)

	o, err = parseOptions(strings.Fields("-dns nodes.local:8080 -dns-interval 1s -d 1s"), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "nodes.local:8080", o.dns)
	assert.Nil(t, o.targets)
	assert.Equal(t, time.Second, o.dnsInterval)

	o, err = parseOptions(strings.Fields("-gen-config out.json -gen-keys 5"), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "out.json", o.genConfig)
	assert.Equal(t, 5, o.genKeys)
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		args, wantErr string
	}{
		{"-bogus", "flag provided but not defined: -bogus"},
		{"-n 1 extra", `unexpected argument "extra"`},
		{"", "set -d or -n (or both) to bound the run"},
		{"-d 31m", "-d 31m0s: want at most 30m0s"},
		{"-d -1s -n 1", "-d -1s: want at most 30m0s"},
		{"-n 100000001", "-n 100000001: want 0 to 100000000"},
		{"-n 1 -c 0", "-c 0: want 1 to 10000"},
		{"-n 1 -rate -1", "-rate -1: want 0 to 10000000"},
		{"-n 1 -timeout 0s", "-timeout 0s: want more than 0, at most 5m0s"},
		{"-n 1 -keys -1", "-keys -1: want 0 to 1000000"},
		{"-n 1 -accuracy-keys 10001", "-accuracy-keys 10001: want 0 to 10000"},
		{"-n 1 -max-over-admission 5", "-max-over-admission needs -accuracy-keys"},
		{"-n 1 -mix free=90", "mix: percentages add up to 90, want 100"},
		{"-n 1 -targets localhost:8080", `-targets "localhost:8080": want a base URL such as http://127.0.0.1:8080`},
		{"-n 1 -targets http://h/?q=1", `-targets "http://h/?q=1": a base URL has no query or fragment`},
		{"-n 1 -targets ,", "-targets: empty"},
		{"-n 1 -dns h:1 -targets http://h:1", "-targets and -dns exclude each other"},
		{"-n 1 -method G@T", `-method "G@T": not an HTTP method`},
		{"-n 1 -method=", "-method: empty"},
		{"-n 1 -path test", `-path "test": want an absolute path such as /test`},
		{"-n 1 -path //h/test", `-path "//h/test": want an absolute path such as /test`},
		{"-n 1 -path http://h/test", `-path "http://h/test": want an absolute path such as /test`},
		{"-n 1 -path /a#b", `-path "/a#b": a request path has no fragment`},
		{"-n 1 -path /a%zz", `-path "/a%zz": want an absolute path such as /test`},
		{"-n 1 -dns h", `-dns "h": want host:port`},
		{"-n 1 -dns h:0", `-dns "h:0": port must be 1 to 65535`},
		{"-n 1 -dns h:1 -dns-interval 1ms", "-dns-interval 1ms: want at least 100ms"},
		{"-gen-config out.json", "-gen-keys 0: want 1 to 100000 with -gen-config"},
		{"-n 1 -gen-keys 3", "-gen-keys needs -gen-config"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			_, err := parseOptions(strings.Fields(tt.args), io.Discard)
			require.Error(t, err, "parseOptions(%q)", tt.args)
			assert.Equal(t, tt.wantErr, err.Error(), "parseOptions(%q)", tt.args)
			_, ok := errors.AsType[*usageError](err)
			assert.True(t, ok, "parseOptions(%q) = %T, want a *usageError", tt.args, err)
		})
	}
}

func TestOptionsHelp(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parseOptions([]string{"-h"}, &stderr)
	assert.ErrorIs(t, err, flag.ErrHelp)
	help := stderr.String()
	for _, want := range []string{"Usage:", "-targets URLs", "-method method", "-path path", "-dns host:port", "-accuracy-keys K", "-gen-keys", "lg-<tier>-<runid>-<i>", "Exit status", "Examples:"} {
		assert.Contains(t, help, want)
	}
}
