package peer

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// seedInfo binds the derived key to this one use; changing it changes every
// node's certificate, so it is versioned.
const seedInfo = "tierlimit peer mTLS ed25519 seed v1"

// Credentials returns the transport credentials for the node-to-node gRPC
// channel: server for the gRPC server (grpc.Creds) and client for the
// Clients that call other nodes.
//
// With a non-empty clusterKey both sides speak TLS 1.3 with mutual
// authentication, using one certificate that every node derives from the key
// alone (HKDF-SHA256 of the key seeds an Ed25519 key pair, which signs a fixed
// self-signed certificate). Each side accepts the other only if it presents
// that certificate's public key, so only holders of the cluster key can call
// a node or answer as one, and the traffic is encrypted. There is no CA and
// no host name check: the key is the identity. The key is not stretched, so
// choose a long random one (for example 32 random bytes, base64-encoded) and
// give every node the same.
//
// With an empty clusterKey both are insecure.NewCredentials(): plaintext and
// unauthenticated, so anyone who can reach the gRPC port can read the keys
// being checked and add hits to any count. Use that only on a private network
// or in tests.
func Credentials(clusterKey string) (server, client credentials.TransportCredentials, err error) {
	if clusterKey == "" {
		return insecure.NewCredentials(), insecure.NewCredentials(), nil
	}
	cert, pub, err := clusterCertificate(clusterKey)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster credentials: %w", err)
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer presented no certificate")
		}
		got, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
		if !ok || !got.Equal(pub) {
			return errors.New("peer certificate was not derived from this cluster key")
		}
		return nil
	}
	server = credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Require a certificate but leave its check to verify: the pinned
		// key, not a CA, is what makes it valid.
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: verify,
	})
	client = credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// The chain and host name checks are skipped only because verify
		// pins the server's public key instead; never one without the other.
		InsecureSkipVerify: true,
		VerifyConnection:   verify,
	})
	return server, client, nil
}

// clusterCertificate derives the cluster's key pair from clusterKey and
// returns its self-signed certificate and public key. The same key gives the
// same key pair on every node.
func clusterCertificate(clusterKey string) (tls.Certificate, ed25519.PublicKey, error) {
	seed, err := hkdf.Key(sha256.New, []byte(clusterKey), nil, seedInfo, ed25519.SeedSize)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("derive key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tierlimit-peer"},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	// Ed25519 signatures are deterministic, so no randomness is needed.
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, pub, nil
}
