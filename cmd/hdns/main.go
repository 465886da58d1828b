// Command hdns is a DNS server for Kubernetes headless Services: it serves
// the Kubernetes DNS specification from a live cluster or from manifests on
// disk, and chooses which endpoints each answer names with per-Service
// policies.
//
// This file only wires flags to the zone, policy and server packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/hdns-dev/hdns/internal/buildinfo"
	"github.com/hdns-dev/hdns/loadsource"
	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server"
	"github.com/hdns-dev/hdns/server/admin"
	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/server/forward"
	"github.com/hdns-dev/hdns/source/kube"
	"github.com/hdns-dev/hdns/source/manifests"
	"github.com/hdns-dev/hdns/topology"
	"github.com/hdns-dev/hdns/zone"
)

// main runs hdns until a signal. SIGTERM, what Kubernetes sends a Pod it
// stops, starts the lameduck (the drain context); SIGINT, or a second
// signal of either kind, stops at once (the stop context).
func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	ctx, stopNow := context.WithCancel(context.Background())
	drain, startDrain := context.WithCancel(ctx)
	go func() {
		if <-signals == syscall.SIGTERM {
			startDrain()
			<-signals
		}
		stopNow()
	}()
	os.Exit(run(ctx, drain, os.Args[1:], os.Stdout, os.Stderr))
}

// newLogger returns the process's logger, and routes client-go's klog
// output through the same handler, so that one process writes one format.
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	klog.SetLogger(logr.FromSlogHandler(h))
	return slog.New(h), nil
}

// run starts hdns and blocks until ctx is done, or until the lameduck that
// drain's end starts is over. It returns the exit code:
// 2 for bad flags, 1 for any other failure to start.
func run(ctx, drain context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "corefile" {
		return printCorefile(ctx, args[1:], stdout, stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "hdns:", err)
		return 2
	}
	if cfg.version {
		fmt.Fprintln(stdout, buildinfo.Read())
		return 0
	}
	log, err := newLogger(cfg.logLevel, cfg.logFormat, stderr)
	if err == nil {
		err = cfg.validateSource()
	}
	var opts *zone.Options
	if err == nil {
		opts, err = cfg.zoneOptions()
	}
	var fwd forwarding
	if err == nil {
		fwd.forwarder, fwd.allow, err = cfg.forwarding()
	}
	if err == nil {
		_, _, err = cfg.rrl.config()
	}
	if err != nil {
		fmt.Fprintln(stderr, "hdns:", err)
		return 2
	}
	if err := serve(ctx, drain, cfg, opts, fwd, log); err != nil {
		log.Error("hdns stopped", "err", err)
		return 1
	}
	return 0
}

// forwarding is the validated forwarding configuration.
type forwarding struct {
	forwarder *forward.Forwarder // nil: names outside the zones are refused
	allow     []netip.Prefix
}

func serve(ctx, drain context.Context, cfg *config, opts *zone.Options, fwd forwarding, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readiness := new(admin.Readiness)

	reg := prometheus.NewRegistry()
	build := buildinfo.Read()
	log.Info("hdns starting", "version", build.Version, "commit", build.Commit, "go", build.GoVersion)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfoMetric(build))
	zoneMetrics := zone.NewMetrics(reg)
	opts.Policies.RegisterMetrics(reg, cfg.endpointMetrics)
	pub := zone.NewPublisher(opts, log, zoneMetrics)
	loads, err := cfg.loadSource(opts.Policies, log, reg)
	if err != nil {
		return err
	}
	locator := topology.New(pub)
	runSource, err := cfg.source(ctx, pub, locator, log, zoneMetrics)
	if err != nil {
		return err
	}

	responder := &answer.Responder{
		Snapshot:   pub.Snapshot,
		Zones:      append(append([]string(nil), opts.Zones...), opts.ReverseZones...),
		Metrics:    answer.NewMetrics(reg),
		PodRecords: cfg.pods == "insecure",
		Locator:    locator,
	}
	dnsServer := &server.Server{Addr: cfg.listen, Responder: responder, Log: log, Metrics: server.NewMetrics(reg)}
	if dnsServer.RateLimit, err = cfg.rrl.limiter(reg); err != nil {
		return err
	}
	if fwd.forwarder != nil {
		responder.ForwardAllow = fwd.allow
		dnsServer.Forward = fwd.forwarder
		fwd.forwarder.Metrics = forward.NewMetrics(reg)
		log.Info("forwarding names outside the zones", "upstreams", fwd.forwarder.Upstreams, "allow", fwd.allow)
	}
	if err := dnsServer.Listen(); err != nil {
		return err
	}
	httpServer, err := startHTTP(cfg.httpListen, "--http-listen", admin.HTTPHandler(reg, responder, readiness), log)
	if err != nil {
		return err
	}
	defer httpServer.shutdown()
	serving := []any{"dns", dnsServer.UDPAddr().String(), "http", httpServer.addr}
	if cfg.adminListen != "" {
		debugServer, err := startHTTP(cfg.adminListen, "--admin-listen", admin.DebugHandler(responder, cfg.pprof, locator), log)
		if err != nil {
			return err
		}
		defer debugServer.shutdown()
		serving = append(serving, "admin", debugServer.addr)
	}

	go runSource()
	if loads != nil {
		// Readiness does not wait for it: without values, least-loaded
		// uses the handout ledger.
		go loads.Run(ctx)
	}
	go pub.Run(ctx)
	log.Info("hdns serving", append(serving, "zones", opts.Zones, "source", sourceName(cfg))...)
	return dnsServer.Serve(lameduck(ctx, drain, cfg.lameduck, readiness, log))
}

// lameduck returns the context DNS serves under: once drain ends,
// readiness fails at once (kube-proxy and EndpointSlice consumers take
// seconds to stop sending), DNS keeps answering for period, and then the
// returned context ends. It ends at once with ctx.
func lameduck(ctx, drain context.Context, period time.Duration, readiness *admin.Readiness, log *slog.Logger) context.Context {
	serving, stop := context.WithCancel(ctx)
	go func() {
		defer stop()
		select {
		case <-drain.Done():
		case <-serving.Done():
			return
		}
		readiness.Drain()
		log.Info("lameduck: /readyz fails, DNS answers until it ends", "lameduck", period)
		t := time.NewTimer(period)
		defer t.Stop()
		select {
		case <-t.C:
		case <-serving.Done():
		}
	}()
	return serving
}

// httpServer is an HTTP server started by startHTTP.
type httpServer struct {
	srv  *http.Server
	addr string // the address it listens on
}

// startHTTP listens on addr (named by flag in errors) and serves h there
// on its own goroutine until shutdown.
func startHTTP(addr, flag string, h http.Handler, log *slog.Logger) (*httpServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s: %w", flag, addr, err)
	}
	s := &httpServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, addr: l.Addr().String()}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "listen", flag, "err", err)
		}
	}()
	return s, nil
}

// shutdown stops the server, waiting up to 5 s for requests in flight.
func (s *httpServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
}

// buildInfoMetric is hdns_build_info: 1, labelled with what the binary is.
func buildInfoMetric(b buildinfo.Info) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "hdns_build_info",
		Help:        "Always 1; labelled with the version, commit and Go version of the running hdns.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}

// loadSource makes the Prometheus load source; nil without
// --prometheus-url.
func (c *config) loadSource(policies *policy.Compiler, log *slog.Logger, reg prometheus.Registerer) (*loadsource.Prometheus, error) {
	if c.prometheusURL == "" {
		return nil, nil
	}
	auth := c.prometheusAuth
	loads, err := loadsource.New(loadsource.Config{
		URL: c.prometheusURL, Query: c.loadQuery,
		NamespaceLabel: c.loadNamespaceLabel, PodLabel: c.loadPodLabel,
		Interval: c.loadInterval, MaxAge: c.loadMaxAge,
		BearerTokenFile: auth.bearerTokenFile, CAFile: auth.caFile, CertFile: auth.certFile, KeyFile: auth.keyFile,
	}, policies, log.With("component", "loadsource"), loadsource.NewMetrics(reg))
	if err != nil {
		return nil, fmt.Errorf("--prometheus-url: %w", err)
	}
	return loads, nil
}

// source makes the zone's source of Services, EndpointSlices and Nodes,
// manifests or a cluster, which hands them to locator, in front of pub;
// run watches them until ctx is done. The manifests are loaded and built
// before it returns.
func (c *config) source(ctx context.Context, pub *zone.Publisher, locator *topology.Locator, log *slog.Logger, metrics *zone.Metrics) (run func(), err error) {
	if c.manifests != "" {
		src := &manifests.Source{Path: c.manifests, Log: log, Metrics: metrics}
		if err := src.Load(locator); err != nil {
			return nil, err
		}
		pub.Rebuild()
		return func() { src.Run(ctx, locator) }, nil
	}
	client, err := kubeClient(c.kubeconfig)
	if err != nil {
		return nil, err
	}
	if err := kube.CheckReachable(ctx, client, 10*time.Second); err != nil {
		return nil, err
	}
	nodes, err := kube.NodesReadable(ctx, client)
	if err != nil {
		return nil, err
	}
	if !nodes {
		log.Warn("listing nodes is forbidden: clients' nodes and zones stay unknown; apply deploy/rbac.yaml's nodes rule to locate them")
	}
	src := &kube.Source{Client: client, Namespace: c.namespace, LabelSelector: c.selector, Log: log, Metrics: metrics, Nodes: nodes}
	sink, keeper, err := c.coredns.adopter(client, locator, log)
	if err != nil {
		return nil, err
	}
	return func() {
		go runKeeper(ctx, keeper)
		if err := src.Run(ctx, sink); err != nil && ctx.Err() == nil {
			log.Error("kubernetes source stopped", "err", err)
		}
	}, nil
}

func sourceName(cfg *config) string {
	switch {
	case cfg.manifests != "":
		return "manifests " + cfg.manifests
	case cfg.kubeconfig != "":
		return "kubeconfig " + cfg.kubeconfig
	default:
		return "in-cluster"
	}
}

func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	var rc *rest.Config
	var err error
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
	} else {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no in-cluster configuration (%w); pass --kubeconfig, or --manifests to serve files", err)
		}
	}
	rc.UserAgent = "hdns"
	// Protobuf, as CoreDNS's kubernetes plugin asks for: decoding an
	// EndpointSlice update costs a fraction of its JSON, and a large
	// cluster's rollouts send hundreds per second.
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}
