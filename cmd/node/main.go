// Command node runs one instance of the rate limiter: the HTTP API with its
// middleware, the admin endpoints and probes, and (with -join or peers
// joining it) its place in the cluster.
//
// Every flag can also be set by an environment variable named after it in
// upper case with underscores: -http-addr is HTTP_ADDR. A flag given on the
// command line wins over its variable.
//
// `node healthcheck` probes the local node's /readyz and exits 0 only if it
// answers 200; container images use it as their health check.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
}

// run starts a node from args and the environment and serves until ctx ends,
// then shuts it down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], getenv, stderr)
	}
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	n, err := start(ctx, o, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down", "grace", o.shutdownGrace.String())
	return n.stop(o.shutdownGrace)
}
