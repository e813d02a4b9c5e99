package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS answers from maps, as /etc/hosts and Docker's DNS would.
type fakeDNS struct {
	hosts map[string][]string
	ptr   map[string]string
}

func (f fakeDNS) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := f.hosts[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

func (f fakeDNS) PTR(_ context.Context, ip net.IP) (string, error) {
	if n, ok := f.ptr[ip.String()]; ok {
		return n, nil
	}
	return "", errors.New("no PTR")
}

func TestDNSName(t *testing.T) {
	r := fakeDNS{
		hosts: map[string][]string{
			"3f2a9c1b7d8e": {"127.0.0.1", "172.20.0.3"},
			"lonely":       {"10.0.0.9"},
		},
		ptr: map[string]string{
			"127.0.0.1":  "localhost.",
			"172.20.0.3": "shop_node_2.shop_mesh.",
		},
	}
	name, err := dnsName(context.Background(), r, "3f2a9c1b7d8e")
	require.NoError(t, err)
	assert.Equal(t, "shop_node_2", name, "the first label, loopback skipped")

	_, err = dnsName(context.Background(), r, "lonely")
	assert.ErrorContains(t, err, `no reverse DNS name for host "lonely" (addresses 10.0.0.9)`)
	_, err = dnsName(context.Background(), r, "unknown")
	assert.ErrorContains(t, err, `look up host "unknown"`)
}

func TestNodeNameFromDNSYieldsToAGivenName(t *testing.T) {
	env := map[string]string{"NODE_NAME_FROM_DNS": "true"}
	o, err := parseOptions(nil, func(k string) string { return env[k] }, nil)
	require.NoError(t, err)
	assert.True(t, o.nameFromDNS)
	assert.False(t, o.nodeNameSet)

	env["NODE_NAME"] = "n1"
	o, err = parseOptions(nil, func(k string) string { return env[k] }, nil)
	require.NoError(t, err)
	assert.True(t, o.nodeNameSet, "NODE_NAME wins over the DNS name")
	o, err = parseOptions([]string{"-node-name", "n2"}, func(string) string { return "" }, nil)
	require.NoError(t, err)
	assert.True(t, o.nodeNameSet)
	assert.Equal(t, "n2", o.cfg.NodeName)
}

// TestPTRQueryOverUDP asks a DNS server on a real socket, which answers
// 172.20.0.3 with a container name as Docker's does.
func TestPTRQueryOverUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	asked := make(chan string, 1)
	go func() {
		buf := make([]byte, 1500)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var q dnsmessage.Message
		if q.Unpack(buf[:n]) != nil || len(q.Questions) != 1 {
			return
		}
		asked <- q.Questions[0].Name.String()
		answer := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: q.ID, Response: true},
			Questions: q.Questions,
			Answers: []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET, TTL: 600},
				Body:   &dnsmessage.PTRResource{PTR: dnsmessage.MustNewName("shop_node_2.shop_mesh.")},
			}},
		}
		out, err := answer.Pack()
		if err == nil {
			_, _ = pc.WriteTo(out, from)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	name, err := dnsResolver{server: pc.LocalAddr().String()}.PTR(ctx, net.ParseIP("172.20.0.3"))
	require.NoError(t, err)
	assert.Equal(t, "shop_node_2.shop_mesh.", name)
	assert.Equal(t, "3.0.20.172.in-addr.arpa.", <-asked)
}

func TestNameServerAndReverseName(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	require.NoError(t, os.WriteFile(path, []byte("search shop_mesh\nnameserver 127.0.0.11\noptions ndots:0\n"), 0o600))
	s, err := nameServer(path)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.11:53", s)
	require.NoError(t, os.WriteFile(path, []byte("search x\n"), 0o600))
	_, err = nameServer(path)
	assert.ErrorContains(t, err, "no nameserver")

	assert.Equal(t, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", reverseName(net.ParseIP("2001:db8::1")))
}
