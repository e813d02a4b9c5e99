package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/health"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{Name: "n", Health: health.NewHolder("n")}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, DefaultRejoinInterval, c.RejoinInterval)
	assert.Equal(t, DefaultReconnectTimeout, c.ReconnectTimeout)
	assert.NotNil(t, c.Logger)
}

func TestMemberlistConfigCopiesBase(t *testing.T) {
	base := TestMemberlistConfig()
	baseName := base.Name
	cfg, err := Config{
		Name: "n1", Health: health.NewHolder("n1"), BindPort: 7000,
		AdvertiseAddr: "localhost", SecretKey: "s", Memberlist: base,
	}.withDefaults()
	require.NoError(t, err)
	mc, err := cfg.memberlistConfig(t.Context(), &delegate{})
	require.NoError(t, err)

	assert.Equal(t, "n1", mc.Name)
	assert.Equal(t, "127.0.0.1", mc.BindAddr, "BindAddr from the base config")
	assert.Equal(t, 7000, mc.BindPort)
	assert.Equal(t, "127.0.0.1", mc.AdvertiseAddr, "AdvertiseAddr resolved to an IP")
	assert.Equal(t, 7000, mc.AdvertisePort, "AdvertisePort defaults to BindPort")
	assert.True(t, mc.EncryptionEnabled(), "SecretKey set, encryption off")
	assert.NotNil(t, mc.Logger)
	assert.Equal(t, 100*time.Millisecond, mc.ProbeInterval, "timings from the base config")

	assert.Equal(t, baseName, base.Name, "base config changed")
	assert.Nil(t, base.Keyring, "base config changed")
	assert.Nil(t, base.Delegate, "base config changed")
}

// Without a base config, memberlist's LAN defaults apply except for the
// settings docs/gossip.md measured: a 300-member cluster started at once
// converges by gossip alone only with RetransmitMult 6, and push/pull at 15 s
// halves the wait for what gossip missed.
func TestMemberlistConfigDefaults(t *testing.T) {
	cfg, err := Config{Name: "n1", Health: health.NewHolder("n1")}.withDefaults()
	require.NoError(t, err)
	mc, err := cfg.memberlistConfig(t.Context(), &delegate{})
	require.NoError(t, err)

	assert.Equal(t, DefaultRetransmitMult, mc.RetransmitMult)
	assert.Equal(t, 6, DefaultRetransmitMult)
	assert.Equal(t, DefaultPushPullInterval, mc.PushPullInterval)
	assert.Equal(t, 15*time.Second, DefaultPushPullInterval)
	assert.Equal(t, DeadNodeReclaimTime, mc.DeadNodeReclaimTime)
	lan := memberlist.DefaultLANConfig()
	assert.Equal(t, lan.GossipNodes, mc.GossipNodes, "GossipNodes stays memberlist's")
	assert.Equal(t, lan.GossipInterval, mc.GossipInterval, "GossipInterval stays memberlist's")
	assert.Equal(t, lan.ProbeInterval, mc.ProbeInterval, "ProbeInterval stays memberlist's")
}

func TestDeriveKey(t *testing.T) {
	k1, err := deriveKey("secret")
	require.NoError(t, err)
	assert.Len(t, k1, 32)
	k2, err := deriveKey("secret")
	require.NoError(t, err)
	assert.Equal(t, k1, k2, "same secret, different keys")
	k3, err := deriveKey("other")
	require.NoError(t, err)
	assert.NotEqual(t, k1, k3, "different secrets, same key")
}
