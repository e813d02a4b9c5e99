// Command delayproxy forwards TCP connections to a target and holds every
// chunk of bytes for a fixed time in each direction: the one-way latency of
// a network between two processes on one host, for benchmarks on machines
// whose kernels have no netem. It delays without throttling: chunks queue
// and go out in order, each at its own time.
//
//	delayproxy -listen 127.0.0.11:9090 -target 127.0.1.11:9090 -delay 1ms
//
// It runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "delayproxy:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("delayproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to accept connections on (host:port)")
	target := fs.String("target", "", "address to forward them to (host:port)")
	delay := fs.Duration("delay", time.Millisecond, "how long each chunk is held, in each direction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *target == "" {
		return errors.New("-listen and -target are required")
	}
	if *delay < 0 {
		return fmt.Errorf("-delay %v is negative", *delay)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("delaying", "listen", lis.Addr().String(), "target", *target, "delay", delay.String())
	p := &proxy{target: *target, delay: *delay, log: log}
	return p.serve(ctx, lis)
}

// proxy forwards each connection it accepts to target, delayed.
type proxy struct {
	target string
	delay  time.Duration
	log    *slog.Logger
}

// serve accepts connections on lis until ctx ends, then closes lis and
// every connection and waits for them.
func (p *proxy) serve(ctx context.Context, lis net.Listener) error {
	var wg sync.WaitGroup
	go func() {
		<-ctx.Done()
		_ = lis.Close()
	}()
	for {
		c, err := lis.Accept()
		if err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() { p.forward(ctx, c) })
	}
}

// forward connects to the target and pipes c to it and back, each way
// delayed, until either side closes or ctx ends.
func (p *proxy) forward(ctx context.Context, c net.Conn) {
	defer c.Close()
	var d net.Dialer
	t, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		p.log.Warn("dial target", "err", err)
		return
	}
	defer t.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		_ = c.Close()
		_ = t.Close()
	}()
	var wg sync.WaitGroup
	wg.Go(func() { pipe(t, c, p.delay); cancel() })
	wg.Go(func() { pipe(c, t, p.delay); cancel() })
	wg.Wait()
}

// chunk is bytes read at one time, to be written at due.
type chunk struct {
	b   []byte
	due time.Time
}

// maxQueued bounds the chunks held in one direction; a reader that gets
// that far ahead waits.
const maxQueued = 1024

// pipe copies src to dst, each chunk written delay after it was read, in
// order, until src or dst fails.
func pipe(dst io.Writer, src io.Reader, delay time.Duration) {
	q := make(chan chunk, maxQueued)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{b: buf[:n], due: time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for ch := range q {
		if wait := time.Until(ch.due); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := dst.Write(ch.b); err != nil {
			for range q { // let the reader finish
			}
			return
		}
	}
}
