package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// targetSet is the list of base URLs requests go to: fixed for -targets,
// the addresses of a DNS name for -dns. It is safe for concurrent use; with
// DNS, the list is swapped whole when an answer changes, so a reader sees
// an old list or a new one, never a mix.
type targetSet struct {
	list atomic.Pointer[[]string]
	// host is the Host header to send with -dns (the name and port given),
	// empty for -targets.
	host string
}

// newStaticTargets returns a set that always holds urls, which must not be
// empty.
func newStaticTargets(urls []string) *targetSet {
	s := &targetSet{}
	s.list.Store(&urls)
	return s
}

// at returns the target for position n: n modulo the current list.
func (s *targetSet) at(n uint64) string {
	l := *s.list.Load()
	return l[n%uint64(len(l))]
}

// current returns the current list. The caller must not change it.
func (s *targetSet) current() []string {
	return *s.list.Load()
}

// resolver looks up the addresses of a host. *net.Resolver satisfies it.
type resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// dnsTargets returns the base URLs for addrs on port: http://addr:port,
// sorted, without duplicates, IPv6 addresses in brackets.
func dnsTargets(addrs []string, port string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, "http://"+net.JoinHostPort(a, port))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// dnsWatcher keeps a targetSet in step with a DNS name, like a client-side
// load balancer: it resolves the name every interval and swaps the list
// when the answer changes. A failed lookup or an empty answer keeps the
// last list. Start it with startDNS; Close stops it.
type dnsWatcher struct {
	set    *targetSet
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startDNS resolves hostport (host:port) once, failing if that gives no
// address, and then again every interval until ctx ends or Close is
// called. Changes and lookup failures are reported on log, one line each.
func startDNS(ctx context.Context, r resolver, hostport string, interval time.Duration, log io.Writer) (*dnsWatcher, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("dns %s: %w", hostport, err)
	}
	addrs, err := r.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	list := dnsTargets(addrs, port)
	w := &dnsWatcher{set: &targetSet{host: hostport}}
	w.set.list.Store(&list)
	ctx, w.cancel = context.WithCancel(ctx)
	w.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			addrs, err := r.LookupHost(ctx, host)
			if ctx.Err() != nil {
				return
			}
			if err != nil || len(addrs) == 0 {
				fmt.Fprintf(log, "dns: resolve %s: %v; keeping %d targets\n", host, orNoAddresses(err), len(w.set.current()))
				continue
			}
			next := dnsTargets(addrs, port)
			if prev := w.set.current(); !slices.Equal(prev, next) {
				w.set.list.Store(&next)
				fmt.Fprintf(log, "dns: %s now resolves to %d targets: %s\n", host, len(next), strings.Join(next, ", "))
			}
		}
	})
	return w, nil
}

// orNoAddresses returns err, or a stand-in for a lookup that returned no
// address without an error.
func orNoAddresses(err error) any {
	if err == nil {
		return "no addresses"
	}
	return err
}

// Close stops the watcher and waits for it.
func (w *dnsWatcher) Close() {
	w.cancel()
	w.wg.Wait()
}
