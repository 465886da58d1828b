//go:build e2e

// Command loadsource_backend is the stand-in for one Pod's application in
// the hdns e2e test TestLoadSource: a real process on a loopback address
// that serves slow requests and exposes how many of them are in flight.
//
// It serves two paths:
//
//   - GET /work holds the request open until the client goes away or, with
//     ms=N, for at most N milliseconds (at most -max-hold), then answers
//     "done". While held the request counts as in flight.
//   - GET /metrics exposes, in the Prometheus text format, the gauge
//     inflight{namespace="<-namespace>",pod="<-pod>"}: the number of /work
//     requests in flight right now. Scrapes are not counted.
//
// Once it listens it prints "listening ADDR" on stdout (ADDR is host:port),
// so that the parent learns the port chosen with -listen HOST:0. It exits
// on SIGTERM or SIGINT after closing its listener; held requests are cut.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	namespace := flag.String("namespace", "", "value of the gauge's namespace label (required)")
	pod := flag.String("pod", "", "value of the gauge's pod label (required)")
	maxHold := flag.Duration("max-hold", 2*time.Minute, "longest time a /work request is held")
	flag.Parse()
	if *namespace == "" || *pod == "" {
		fmt.Fprintln(os.Stderr, "loadsource_backend: -namespace and -pod are required")
		os.Exit(2)
	}
	if err := run(*listen, *namespace, *pod, *maxHold); err != nil {
		fmt.Fprintln(os.Stderr, "loadsource_backend:", err)
		os.Exit(1)
	}
}

func run(listen, namespace, pod string, maxHold time.Duration) error {
	reg := prometheus.NewRegistry()
	inflight := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "inflight",
		Help:        "/work requests in flight.",
		ConstLabels: prometheus.Labels{"namespace": namespace, "pod": pod},
	})
	reg.MustRegister(inflight)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /work", func(w http.ResponseWriter, r *http.Request) {
		hold := maxHold
		if s := r.URL.Query().Get("ms"); s != "" {
			ms, err := strconv.Atoi(s)
			if err != nil || ms < 0 {
				http.Error(w, "ms: want a number of milliseconds ≥ 0", http.StatusBadRequest)
				return
			}
			hold = min(hold, time.Duration(ms)*time.Millisecond)
		}
		inflight.Inc()
		defer inflight.Dec()
		timer := time.NewTimer(hold)
		defer timer.Stop()
		select {
		case <-timer.C:
			fmt.Fprintln(w, "done")
		case <-r.Context().Done(): // the client went away
		}
	})

	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Printf("listening %s\n", l.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}
