package tierlimit

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBindFlagsAndEnvironment(t *testing.T) {
	var cfg Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	BindFlags(fs, &cfg)
	require.NoError(t, fs.Parse([]string{"-join", "a:1, b:2,", "-forward-timeout", "7ms"}))
	env := map[string]string{"JOIN": "ignored:1", "GRPC_ADDR": "127.0.0.1:0", "CLUSTER_KEY": "k", "MAX_KEYS": "12"}
	require.NoError(t, FlagsFromEnv(fs, func(k string) string { return env[k] }))
	assert.Equal(t, []string{"a:1", "b:2"}, cfg.Join, "a flag beats its variable")
	assert.Equal(t, 7*time.Millisecond, cfg.ForwardTimeout)
	assert.Equal(t, "127.0.0.1:0", cfg.GRPCAddr)
	assert.Equal(t, "k", cfg.ClusterKey)
	assert.Equal(t, 12, cfg.MaxKeys)
	assert.Equal(t, ":7946", cfg.GossipAddr, "the default")
	assert.Equal(t, "config/tiers.json", cfg.TiersFile, "the default")

	err := FlagsFromEnv(fs, func(k string) string {
		if k == "FORWARD_TIMEOUT" || k == "MAX_KEYS" {
			return "soon"
		}
		return ""
	})
	assert.ErrorContains(t, err, `environment variable MAX_KEYS="soon"`)
	assert.NotContains(t, err.Error(), "FORWARD_TIMEOUT", "a flag given on the command line is not read from the environment")
}

func TestConfigErrorNamesTheFlag(t *testing.T) {
	assert.Equal(t, "tierlimit: Config.ForwardTimeout (-forward-timeout): -1s is negative",
		(&ConfigError{Field: "ForwardTimeout", Reason: "-1s is negative"}).Error())
	assert.Equal(t, "tierlimit: Config.Window: bad", (&ConfigError{Field: "Window", Reason: "bad"}).Error())
	assert.Equal(t, "HTTP_ADDR", EnvName("http-addr"))
}
