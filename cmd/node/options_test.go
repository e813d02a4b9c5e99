package main

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestOptionsDefaults(t *testing.T) {
	o, err := parseOptions(nil, envOf(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "config/tiers.json", o.configPath)
	assert.Equal(t, ":8080", o.httpAddr)
	assert.Equal(t, ":9090", o.grpcAddr)
	assert.Equal(t, ":7946", o.gossipAddr)
	assert.Empty(t, o.join)
	assert.Equal(t, 5*time.Millisecond, o.forwardTimeout)
	assert.NotEmpty(t, o.nodeName, "defaults to the hostname")
}

func TestOptionsFromEnvironmentAndFlags(t *testing.T) {
	env := envOf(map[string]string{
		"CONFIG": "/etc/tiers.json", "HTTP_ADDR": ":1", "GRPC_ADDR": ":2", "GOSSIP_ADDR": ":3",
		"JOIN": "a:7946, b:7946,", "ADVERTISE_ADDR": "10.0.0.1", "NODE_NAME": "n1",
		"ADMIN_TOKEN": "t", "CLUSTER_KEY": "k", "FORWARD_TIMEOUT": "3ms", "MAX_KEYS": "10",
	})
	o, err := parseOptions([]string{"-http-addr", ":9"}, env, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, options{
		configPath: "/etc/tiers.json", httpAddr: ":9", grpcAddr: ":2", gossipAddr: ":3",
		join: []string{"a:7946", "b:7946"}, advertiseAddr: "10.0.0.1", nodeName: "n1",
		adminToken: "t", clusterKey: "k", forwardTimeout: 3 * time.Millisecond, maxKeys: 10,
		shutdownGrace: 10 * time.Second, logLevel: "info", logFormat: "auto",
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
		{"zero forward timeout", []string{"-forward-timeout", "0s"}, nil, "-forward-timeout"},
		{"seed without port", []string{"-join", "seed"}, nil, "-join"},
		{"negative max keys", []string{"-max-keys", "-1"}, nil, "-max-keys"},
		{"stray argument", []string{"serve"}, nil, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(tt.args, envOf(tt.env), io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
