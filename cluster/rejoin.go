package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"
)

const (
	// minJoinBackoff is the first wait between failed joins of the seeds;
	// it doubles up to RejoinInterval.
	minJoinBackoff = 100 * time.Millisecond
	// maxRejoinTargets bounds the addresses one rejoin round contacts; a
	// round's joins run at once, so it lasts at most one TCPTimeout.
	maxRejoinTargets = 8
	// recentFor is how long a member that failed or left is tried every
	// recentEvery, on top of the rounds every RejoinInterval: long enough
	// for a process restarted by a supervisor or a rolling deploy to come
	// back, short enough that a member gone for good costs little.
	recentFor   = time.Minute
	recentEvery = time.Second
)

// run is the join loop: it joins the seeds, retrying until one answers, then
// re-joins every RejoinInterval until ctx ends. It checks the claims of
// names that joins and gossip bring (see conflict), and ends if the node
// gives its name up.
func (n *Node) run(ctx context.Context) {
	defer close(n.done)
	defer n.settle()
	if len(n.cfg.Join) == 0 {
		// No seeds to wait for: try the members from before the restart at
		// once. (With seeds, a peer address that is gone would hold the
		// seeds back for a TCPTimeout.)
		n.joinAll(ctx, n.peers[:min(len(n.peers), maxRejoinTargets)])
		if !n.checkClaims(ctx) {
			return
		}
		n.settle()
	}
	if !n.joined.Load() && !n.joinSeeds(ctx) {
		return
	}
	t := time.NewTicker(n.cfg.RejoinInterval)
	defer t.Stop()
	recent := time.NewTicker(min(recentEvery, n.cfg.RejoinInterval))
	defer recent.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.rejoin(ctx)
		case now := <-recent.C:
			// A member that went a moment ago may be back already, at its
			// address, unable to find us: one that left, or a seed with no
			// seeds of its own.
			n.mu.Lock()
			back := n.view.gone(now.Add(-recentFor))
			alive := n.view.addrs(StateAlive)
			n.mu.Unlock()
			if len(alive) == 1 && now.Sub(n.started) < recentFor {
				// Alone since the start: the members from before it.
				back = append(back, n.peers...)
			}
			n.joinAll(ctx, rejoinTargets(nil, back, alive, maxRejoinTargets))
			n.followAll(ctx)
		case addr := <-n.syncs:
			// A push/pull with the restarted member: it gets every member
			// and the health state at once.
			if _, err := n.join([]string{addr}); err != nil {
				n.log.Debug("sync with restarted peer failed", "addr", addr, "err", err)
			}
		case <-n.claimed:
			if !n.checkClaims(ctx) {
				return
			}
		}
	}
}

// MaxBootLen bounds a boot id: Config.Boot, and one read from a peer.
const MaxBootLen = 32

// NewBootID returns a random boot id, 16 hexadecimal digits: one for each
// start of a process, so that its peers can tell a new process behind a
// known name.
func NewBootID() string {
	const digits = "0123456789abcdef"
	b := make([]byte, 16)
	for i := range b {
		b[i] = digits[rand.IntN(len(digits))]
	}
	return string(b)
}

// joinSeeds joins the seeds, retrying with backoff until at least one
// answers; it reports whether one did before ctx ended and the node kept
// its name. Each join's push/pull brings every member a seed knows, so a
// live process under this node's name is heard of then, through whichever
// seed.
func (n *Node) joinSeeds(ctx context.Context) bool {
	backoff := min(minJoinBackoff, n.cfg.RejoinInterval)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
		}
		contacted, err := n.join(n.cfg.Join)
		if !n.checkClaims(ctx) {
			return false
		}
		joined := err == nil && contacted > 0
		if joined {
			n.joined.Store(true) // before New returns
		}
		n.settle()
		if joined {
			n.log.Info("joined cluster", "seeds", n.cfg.Join, "contacted", contacted, "attempts", attempt)
			return true
		}
		n.log.Info("join failed; retrying", "seeds", n.cfg.Join, "attempt", attempt, "retry_in", backoff.String(), "err", err)
		timer.Reset(backoff)
		backoff = min(2*backoff, n.cfg.RejoinInterval)
	}
}

// rejoin forgets long-gone members, then joins the seeds that are not alive
// members and, picked at random, failed members, at most maxRejoinTargets
// at once. Joining an address that is already in the cluster costs one
// push/pull; joining one on the far side of a healed partition merges the
// two sides.
func (n *Node) rejoin(ctx context.Context) {
	n.mu.Lock()
	for _, name := range n.view.forget(time.Now().Add(-n.cfg.ReconnectTimeout)) {
		delete(n.warned, name)
	}
	alive := n.view.addrs(StateAlive)
	dead := n.view.addrs(StateDead)
	n.mu.Unlock()

	rand.Shuffle(len(dead), func(i, j int) { dead[i], dead[j] = dead[j], dead[i] })
	n.joinAll(ctx, rejoinTargets(resolveSeeds(ctx, n.cfg.Join), dead, alive, maxRejoinTargets))
}

// joinAll joins each of targets at once and waits for them.
func (n *Node) joinAll(ctx context.Context, targets []string) {
	n.joinEach(ctx, targets, func(addr string, err error) {
		if err != nil {
			n.log.Debug("rejoin failed", "addr", addr, "err", err)
			return
		}
		n.log.Debug("rejoined", "addr", addr)
	})
}

// joinEach joins each of targets at once, calls done with each outcome from
// the join's goroutine, and waits for them. Once ctx has ended it joins
// nothing more and reports nothing.
func (n *Node) joinEach(ctx context.Context, targets []string, done func(addr string, err error)) {
	var wg sync.WaitGroup
	for _, addr := range targets {
		wg.Go(func() {
			if ctx.Err() != nil {
				return
			}
			_, err := n.join([]string{addr})
			done(addr, err)
		})
	}
	wg.Wait()
}

// rejoinTargets returns seeds, then dead, without duplicates, without
// anything in alive, and at most limit of them.
func rejoinTargets(seeds, dead, alive []string, limit int) []string {
	skip := make(map[string]bool, len(alive)+len(seeds)+len(dead))
	for _, a := range alive {
		skip[a] = true
	}
	var out []string
	for _, list := range [][]string{seeds, dead} {
		for _, a := range list {
			if len(out) == limit {
				return out
			}
			if !skip[a] {
				skip[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// resolveSeeds turns each "host:port" seed into "ip:port" addresses, as
// member addresses are written, so seeds that are already members can be
// skipped. A seed it cannot resolve is kept as written, for memberlist to
// try in its own way.
func resolveSeeds(ctx context.Context, seeds []string) []string {
	var out []string
	for _, seed := range seeds {
		host, port, err := net.SplitHostPort(seed)
		if err != nil || strings.Contains(seed, "/") {
			out = append(out, seed)
			continue
		}
		if ip := net.ParseIP(host); ip != nil {
			out = append(out, net.JoinHostPort(ip.String(), port))
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		addrs, err := net.DefaultResolver.LookupIPAddr(lctx, host)
		cancel()
		if err != nil || len(addrs) == 0 {
			out = append(out, seed)
			continue
		}
		for _, a := range addrs {
			out = append(out, net.JoinHostPort(a.IP.String(), port))
		}
	}
	return out
}

// join is memberlist's Join with its error on one line: memberlist gathers
// one error per address into a multi-line list, which would split a log
// line.
func (n *Node) join(addrs []string) (int, error) {
	contacted, err := n.ml.Join(addrs)
	if err != nil {
		err = errors.New(oneLine(err.Error()))
	}
	return contacted, err
}

// oneLine folds a multi-line error message, such as a list of errors one per
// line ("2 errors occurred:\n\t* a\n\t* b"), onto one line: "2 errors
// occurred: a; b".
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "* ")); l != "" {
			parts = append(parts, l)
		}
	}
	if len(parts) > 1 && strings.HasSuffix(parts[0], ":") {
		return parts[0] + " " + strings.Join(parts[1:], "; ")
	}
	return strings.Join(parts, "; ")
}
