package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/peerpb"
)

func TestCredentials(t *testing.T) {
	tests := []struct {
		name      string
		serverKey string
		clientKey string
		wantOK    bool
	}{
		{"same key", "s3cret-cluster-key", "s3cret-cluster-key", true},
		{"no key on either side", "", "", true},
		{"different key", "s3cret-cluster-key", "other-cluster-key", false},
		{"keys differing in one byte", "s3cret-cluster-key", "s3cret-cluster-kez", false},
		{"keyed server, client without key", "s3cret-cluster-key", "", false},
		{"unkeyed server, keyed client", "", "s3cret-cluster-key", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverCreds, _, err := Credentials(tt.serverKey)
			require.NoError(t, err)
			_, clientCreds, err := Credentials(tt.clientKey)
			require.NoError(t, err)
			store := &scriptedStore{window: peerWindow}
			addr := serveTCP(t, serverCreds, store)
			c, err := NewClient(addr, clientCreds)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			ds, err := c.Check(ctx, []forward.Item{{Key: "k7", Hits: 1, Limit: 10, Window: peerWindow}})

			if tt.wantOK {
				require.NoError(t, err)
				assert.Equal(t, 7, ds[0].Remaining, "Check(k7) = %+v", ds[0])
				assert.Len(t, store.seen(), 1)
				return
			}
			require.Error(t, err, "Check with server key %q, client key %q = %+v, want a refusal", tt.serverKey, tt.clientKey, ds)
			assert.Equal(t, codes.Unavailable, status.Code(err), "Check error: %v", err)
			assert.NoError(t, ctx.Err(), "Check waited for the deadline instead of failing")
			assert.Empty(t, store.seen(), "the server counted a call it should have refused")
		})
	}
}

// TestCredentialsPinEachSide checks each side's pinning alone: the other
// side trusts anything, so only the side under test can refuse.
func TestCredentialsPinEachSide(t *testing.T) {
	const key = "s3cret-cluster-key"
	serverCreds, clientCreds, err := Credentials(key)
	require.NoError(t, err)
	impostor, _, err := clusterCertificate("another key")
	require.NoError(t, err)
	trusting := func(certs ...tls.Certificate) credentials.TransportCredentials {
		return credentials.NewTLS(&tls.Config{
			MinVersion:         tls.VersionTLS13,
			Certificates:       certs,
			ClientAuth:         tls.RequireAnyClientCert,
			InsecureSkipVerify: true, // the impostor checks nothing
		})
	}
	tests := []struct {
		name   string
		server credentials.TransportCredentials
		client credentials.TransportCredentials
	}{
		{"server refuses a client with another key's certificate", serverCreds, trusting(impostor)},
		{"server refuses a TLS client without a certificate", serverCreds, trusting()},
		{"client refuses a server with another key's certificate", trusting(impostor), clientCreds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &scriptedStore{window: peerWindow}
			c, err := NewClient(serveTCP(t, tt.server, store), tt.client)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			ds, err := c.Check(ctx, []forward.Item{{Key: "k7", Hits: 1, Limit: 10, Window: peerWindow}})

			require.Error(t, err, "Check = %+v, want a refusal", ds)
			assert.Equal(t, codes.Unavailable, status.Code(err), "Check error: %v", err)
			assert.Empty(t, store.seen(), "the server counted a call it should have refused")
		})
	}
}

func TestCredentialsSpeakOnlyTLS13(t *testing.T) {
	const key = "s3cret-cluster-key"
	serverCreds, _, err := Credentials(key)
	require.NoError(t, err)
	addr := serveTCP(t, serverCreds, &scriptedStore{window: peerWindow})
	cert, _, err := clusterCertificate(key)
	require.NoError(t, err)

	for _, tt := range []struct {
		name    string
		version uint16
		wantOK  bool
	}{
		{"TLS 1.3", tls.VersionTLS13, true},
		{"TLS 1.2", tls.VersionTLS12, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := tls.Dialer{Config: &tls.Config{
				Certificates:       []tls.Certificate{cert},
				InsecureSkipVerify: true, // this test checks versions only
				MinVersion:         tt.version,
				MaxVersion:         tt.version,
				NextProtos:         []string{"h2"},
			}}
			conn, err := d.DialContext(t.Context(), "tcp", addr)
			if !tt.wantOK {
				assert.Error(t, err, "a %s handshake with the right certificate succeeded", tt.name)
				return
			}
			require.NoError(t, err)
			defer conn.Close()
			assert.Equal(t, uint16(tls.VersionTLS13), conn.(*tls.Conn).ConnectionState().Version)
		})
	}
}

func TestClusterCertificate(t *testing.T) {
	cert1, pub1, err := clusterCertificate("cluster key")
	require.NoError(t, err)
	cert2, pub2, err := clusterCertificate("cluster key")
	require.NoError(t, err)
	_, other, err := clusterCertificate("cluster key 2")
	require.NoError(t, err)

	assert.Equal(t, cert1.Certificate, cert2.Certificate, "the same key gave two certificates")
	assert.True(t, pub1.Equal(pub2))
	assert.False(t, pub1.Equal(other), "two keys gave the same public key")

	leaf := cert1.Leaf
	require.NotNil(t, leaf)
	assert.Equal(t, "tierlimit-peer", leaf.Subject.CommonName)
	assert.Equal(t, int64(1), leaf.SerialNumber.Int64())
	assert.Equal(t, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), leaf.NotBefore)
	assert.Equal(t, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), leaf.NotAfter)
	assert.True(t, pub1.Equal(leaf.PublicKey.(ed25519.PublicKey)))
	assert.NoError(t, leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature),
		"the certificate is not self-signed")

	priv, ok := cert1.PrivateKey.(ed25519.PrivateKey)
	require.True(t, ok, "private key is a %T", cert1.PrivateKey)
	msg := []byte("handshake")
	assert.True(t, ed25519.Verify(pub1, msg, ed25519.Sign(priv, msg)), "the private key does not match the certificate")
}

func TestCheckStreamNeedsClusterKey(t *testing.T) {
	serverCreds, _, err := Credentials("s3cret-cluster-key")
	require.NoError(t, err)
	for _, key := range []string{"", "other-cluster-key"} {
		t.Run("client key "+strconv.Quote(key), func(t *testing.T) {
			store := &scriptedStore{window: peerWindow}
			addr := serveTCP(t, serverCreds, store)
			_, clientCreds, err := Credentials(key)
			require.NoError(t, err)
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(clientCreds))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			stream, err := peerpb.NewPeerClient(conn).CheckStream(ctx)
			if err == nil {
				err = stream.Send(&peerpb.CheckRequest{Id: 1, Items: []*peerpb.Item{
					{Key: "k1", Hits: 1, Limit: 10, WindowNanos: int64(peerWindow)},
				}})
			}
			if err == nil {
				_, err = stream.Recv()
			}

			require.Error(t, err, "a stream opened with client key %q", key)
			assert.Equal(t, codes.Unavailable, status.Code(err), "CheckStream error %v", err)
			assert.NoError(t, ctx.Err(), "CheckStream waited for the deadline instead of failing")
			assert.Empty(t, store.seen(), "the server counted a check from a stranger")
		})
	}
}
