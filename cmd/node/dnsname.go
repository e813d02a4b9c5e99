package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// resolver is what dnsName needs: the host's addresses, and the name that
// reverse DNS gives an address.
type resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	PTR(ctx context.Context, ip net.IP) (string, error)
}

// dnsName returns the first label of the name that reverse DNS gives for
// this host's own address. In a compose network that is the replica's
// container name ("shop-node-2" or "shop_node_2"), which a person can tell
// apart from its siblings and which stays the same when the replica
// restarts, where the host name is a container id.
func dnsName(ctx context.Context, r resolver, host string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, host)
	if err != nil {
		return "", fmt.Errorf("look up host %q: %w", host, err)
	}
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip == nil || ip.IsLoopback() {
			continue
		}
		name, err := r.PTR(ctx, ip)
		if err != nil {
			continue
		}
		label, _, _ := strings.Cut(strings.TrimSuffix(name, "."), ".")
		if label != "" && label != host {
			return label, nil
		}
	}
	return "", fmt.Errorf("no reverse DNS name for host %q (addresses %s)", host, strings.Join(addrs, ", "))
}

// dnsResolver asks the first name server of /etc/resolv.conf directly.
// net.Resolver.LookupAddr would answer from /etc/hosts, where a container's
// address maps to its id.
type dnsResolver struct {
	// server is host:port of the name server; empty means resolv.conf's.
	server string
}

func (dnsResolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, host)
}

// PTR sends one PTR query for ip over UDP and returns the first name in
// the answer.
func (d dnsResolver) PTR(ctx context.Context, ip net.IP) (string, error) {
	server := d.server
	if server == "" {
		var err error
		if server, err = nameServer("/etc/resolv.conf"); err != nil {
			return "", err
		}
	}
	q, err := dnsmessage.NewName(reverseName(ip))
	if err != nil {
		return "", err
	}
	id := uint16(rand.Uint32())
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: q, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET}},
	}
	packed, err := msg.Pack()
	if err != nil {
		return "", err
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "udp", server)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(packed); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return "", err
	}
	var p dnsmessage.Parser
	h, err := p.Start(buf[:n])
	if err != nil {
		return "", err
	}
	if h.ID != id || h.RCode != dnsmessage.RCodeSuccess {
		return "", fmt.Errorf("PTR %s: answer %d, %v", ip, h.ID, h.RCode)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return "", err
	}
	for {
		ah, err := p.AnswerHeader()
		if err != nil {
			return "", fmt.Errorf("PTR %s: no name", ip)
		}
		if ah.Type != dnsmessage.TypePTR {
			if err := p.SkipAnswer(); err != nil {
				return "", err
			}
			continue
		}
		r, err := p.PTRResource()
		if err != nil {
			return "", err
		}
		return r.PTR.String(), nil
	}
}

// reverseName is ip's name under in-addr.arpa or ip6.arpa.
func reverseName(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa.", v4[3], v4[2], v4[1], v4[0])
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := len(ip) - 1; i >= 0; i-- {
		b.WriteByte(hex[ip[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[ip[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

// nameServer returns the first "nameserver" of a resolv.conf file, with
// port 53.
func nameServer(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			return net.JoinHostPort(fields[1], "53"), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New(path + ": no nameserver")
}
