// Command embed is a small speech-to-text API of its own that embeds the
// clustered rate limiter: POST /v1/transcribe behind the middleware, the
// admin endpoints under /system/, and the probes. It takes cmd/node's
// flags and environment variables, so instances of both join one cluster
// and share one count per key. SIGHUP reloads the tiers file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tierlimit/tierlimit"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg tierlimit.Config
	tierlimit.BindFlags(flag.CommandLine, &cfg) // -config -gossip-addr -grpc-addr -join -cluster-key ...
	httpAddr := flag.String("http-addr", ":8080", "HTTP listen address (env HTTP_ADDR)")
	flag.Parse()
	if err := tierlimit.FlagsFromEnv(flag.CommandLine, os.Getenv); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg.Logger = log

	lim, err := tierlimit.New(cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/transcribe", lim.Middleware(http.HandlerFunc(transcribe)))
	mux.Handle("/system/", lim.AdminHandler())
	mux.Handle("/readyz", lim.ReadyHandler())
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	lis, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		_ = lim.Close(context.Background())
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			_ = lim.Reload() // a bad file is logged and refused; the last good one stays
		}
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("embed started", "http_addr", lis.Addr().String())

	select {
	case err = <-served:
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown) // first finish the requests in flight,
	_ = lim.Close(shutdown)    // then leave the cluster
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// transcribe stands in for the GPU work.
func transcribe(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"text": "hello world", "model": "whisper-demo"})
}
