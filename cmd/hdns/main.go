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
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/labels"
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
	"github.com/hdns-dev/hdns/zone"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// listFlag is a repeatable string flag whose first use replaces its default.
type listFlag struct {
	values []string
	set    bool
}

func (l *listFlag) String() string { return strings.Join(l.values, ",") }
func (l *listFlag) Set(v string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			l.values = append(l.values, part)
		}
	}
	return nil
}

type config struct {
	zones, reverseZones, nsAddrs listFlag
	listen, httpListen           string
	kubeconfig, manifests        string
	namespace, selector          string
	ttl                          time.Duration
	logLevel, logFormat          string
	version                      bool
	defaultPolicy                string
	endpointPodNames             bool
	endpointMetrics              bool
	pprof                        bool
	prometheusURL, loadQuery     string
	loadNamespaceLabel           string
	loadPodLabel                 string
	loadInterval, loadMaxAge     time.Duration
	forward, forwardAllow        listFlag
	forwardTimeout               time.Duration
	cacheSize                    int
	cacheMaxTTL                  time.Duration
	pods                         string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{
		zones:        listFlag{values: []string{"cluster.local."}},
		reverseZones: listFlag{values: []string{"in-addr.arpa.", "ip6.arpa."}},
		// Loopback and the private ranges clusters use for pods and nodes.
		forwardAllow: listFlag{values: []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"}},
	}
	fs := flag.NewFlagSet("hdns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&c.zones, "zone", "zone to serve Services in, repeatable or comma-separated")
	fs.Var(&c.reverseZones, "reverse-zone", `reverse zone to serve PTR records in, repeatable; "none" serves none`)
	fs.StringVar(&c.listen, "listen", ":53", "UDP and TCP address for DNS")
	fs.StringVar(&c.httpListen, "http-listen", ":8080", "HTTP address for /metrics, /healthz and /readyz")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	fs.StringVar(&c.manifests, "manifests", "", "serve Kubernetes YAML manifests from this file or directory instead of a cluster; edits are picked up")
	fs.StringVar(&c.namespace, "namespace", "", "watch only this namespace (default: all)")
	fs.StringVar(&c.selector, "selector", "", "serve only Services matching this label selector")
	fs.DurationVar(&c.ttl, "ttl", 5*time.Second, "TTL of answers, whole seconds")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json; client-go's messages are written in it too")
	fs.BoolVar(&c.version, "version", false, "print the version, commit and Go version, and exit")
	fs.StringVar(&c.defaultPolicy, "default-policy", "ordered", "policy for Services without a valid hdns.dev/policy annotation; steps: "+strings.Join(policy.Names(), ", "))
	fs.BoolVar(&c.endpointPodNames, "endpoint-pod-names", false, "name endpoints without a hostname after their Pod instead of their dashed address")
	fs.BoolVar(&c.pprof, "pprof", false, "serve Go's runtime profiles under /debug/pprof/ on --http-listen")
	fs.BoolVar(&c.endpointMetrics, "endpoint-metrics", false, "count handouts per endpoint in hdns_policy_endpoint_handouts_total (one series per endpoint)")
	fs.StringVar(&c.prometheusURL, "prometheus-url", "", "Prometheus server to poll for live per-Pod load (least-loaded blends it with the handout ledger); needs --load-query")
	fs.StringVar(&c.loadQuery, "load-query", "", "PromQL instant vector of per-Pod load, labelled by namespace and pod (a Service's hdns.dev/load-query annotation overrides it)")
	fs.StringVar(&c.loadNamespaceLabel, "load-namespace-label", "namespace", "label of --load-query results that holds the Pod's namespace")
	fs.StringVar(&c.loadPodLabel, "load-pod-label", "pod", "label of --load-query results that holds the Pod's name")
	fs.DurationVar(&c.loadInterval, "load-interval", 5*time.Second, "time between two polls of the load queries; each query times out after half of it")
	fs.DurationVar(&c.loadMaxAge, "load-max-age", 0, "staleness bound of a polled load value, after which the handout ledger alone ranks the Pod (default 3 × --load-interval)")
	fs.Var(&c.forward, "forward", `upstream resolvers (host:port, or "resolv.conf" for the nameservers of /etc/resolv.conf) for names outside the zones; repeatable; default: none, such names get REFUSED`)
	fs.Var(&c.forwardAllow, "forward-allow", "client CIDRs whose out-of-zone queries are forwarded; repeatable")
	fs.DurationVar(&c.forwardTimeout, "forward-timeout", 2*time.Second, "timeout of one exchange with one upstream")
	fs.IntVar(&c.cacheSize, "cache-size", 10000, "forwarded answers kept; 0 disables the cache")
	fs.DurationVar(&c.cacheMaxTTL, "cache-max-ttl", 5*time.Minute, "longest time a forwarded answer is kept")
	fs.StringVar(&c.pods, "pods", "disabled", `"insecure" answers <dashed-ip>.<namespace>.pod.<zone> like CoreDNS; "disabled" does not`)
	fs.Var(&c.nsAddrs, "ns-address", "address answered for ns.dns.<zone>, the apex NS target, repeatable")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return c, nil
}

// zoneOptions validates the flags that shape the zone.
func (c *config) zoneOptions() (*zone.Options, error) {
	opts := &zone.Options{EndpointPodNames: c.endpointPodNames}
	if c.ttl < time.Second || c.ttl > 24*time.Hour || c.ttl%time.Second != 0 {
		return nil, fmt.Errorf("--ttl %v: want whole seconds from 1s to 24h", c.ttl)
	}
	opts.TTL = uint32(c.ttl / time.Second)
	for _, z := range c.zones.values {
		cz, err := zone.CanonicalZone(z)
		if err != nil {
			return nil, fmt.Errorf("--zone: %w", err)
		}
		if !slices.Contains(opts.Zones, cz) {
			opts.Zones = append(opts.Zones, cz)
		}
	}
	if len(opts.Zones) == 0 {
		return nil, errors.New("--zone: at least one zone is needed")
	}
	for _, z := range c.reverseZones.values {
		if z == "none" {
			continue
		}
		cz, err := zone.CanonicalZone(z)
		if err != nil {
			return nil, fmt.Errorf("--reverse-zone: %w", err)
		}
		if !zone.InZone(cz, "in-addr.arpa.") && !zone.InZone(cz, "ip6.arpa.") {
			return nil, fmt.Errorf("--reverse-zone %s: not under in-addr.arpa. or ip6.arpa.", cz)
		}
		if !slices.Contains(opts.ReverseZones, cz) {
			opts.ReverseZones = append(opts.ReverseZones, cz)
		}
	}
	for _, a := range c.nsAddrs.values {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("--ns-address: %w", err)
		}
		opts.NSAddrs = append(opts.NSAddrs, ip.Unmap())
	}
	policies, err := policy.NewCompiler(c.defaultPolicy)
	if err != nil {
		return nil, fmt.Errorf("--default-policy: %w", err)
	}
	policies.SetDefaultLoadQuery(c.loadQuery)
	opts.Policies = policies
	return opts, nil
}

// forwarding validates the forwarding flags; nil Forwarder when off.
func (c *config) forwarding() (*forward.Forwarder, []netip.Prefix, error) {
	if c.pods != "disabled" && c.pods != "insecure" {
		return nil, nil, fmt.Errorf("--pods %q: want insecure or disabled", c.pods)
	}
	var allow []netip.Prefix
	for _, a := range c.forwardAllow.values {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return nil, nil, fmt.Errorf("--forward-allow: %w", err)
		}
		allow = append(allow, p.Masked())
	}
	if len(c.forward.values) == 0 {
		return nil, allow, nil
	}
	f := &forward.Forwarder{Timeout: c.forwardTimeout}
	for _, u := range c.forward.values {
		if u == "resolv.conf" {
			rc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
			if err != nil {
				return nil, nil, fmt.Errorf("--forward resolv.conf: %w", err)
			}
			for _, s := range rc.Servers {
				u = net.JoinHostPort(s, rc.Port)
				ap, err := netip.ParseAddrPort(u)
				if err != nil {
					return nil, nil, fmt.Errorf("--forward resolv.conf: nameserver %q: %w", s, err)
				}
				f.Upstreams = append(f.Upstreams, ap)
			}
			continue
		}
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(u, "53")
		}
		ap, err := netip.ParseAddrPort(u)
		if err != nil {
			return nil, nil, fmt.Errorf("--forward %q: want an address with an optional port: %w", u, err)
		}
		f.Upstreams = append(f.Upstreams, ap)
	}
	if len(f.Upstreams) == 0 {
		return nil, nil, errors.New("--forward resolv.conf: /etc/resolv.conf names no nameserver")
	}
	if c.forwardTimeout <= 0 {
		return nil, nil, fmt.Errorf("--forward-timeout %v: want a positive duration", c.forwardTimeout)
	}
	if c.cacheSize > 0 {
		f.Cache = forward.NewCache(c.cacheSize, c.cacheMaxTTL)
	}
	return f, allow, nil
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

// run starts hdns and blocks until ctx is done. It returns the exit code:
// 2 for bad flags, 1 for any other failure to start.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
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
	if err != nil {
		fmt.Fprintln(stderr, "hdns:", err)
		return 2
	}
	if err := serve(ctx, cfg, opts, fwd, log); err != nil {
		log.Error("hdns stopped", "err", err)
		return 1
	}
	return 0
}

func (c *config) validateSource() error {
	if c.manifests != "" && c.kubeconfig != "" {
		return errors.New("--manifests and --kubeconfig are exclusive: serve files or a cluster, not both")
	}
	if c.manifests != "" && (c.namespace != "" || c.selector != "") {
		return errors.New("--namespace and --selector limit what is watched in a cluster; they do not apply to --manifests")
	}
	if c.selector != "" {
		if _, err := labels.Parse(c.selector); err != nil {
			return fmt.Errorf("--selector: %w", err)
		}
	}
	return c.validateLoad()
}

// validateLoad checks the load source flags; the source itself starts in
// serve and never stops hdns from starting (Prometheus may be down).
func (c *config) validateLoad() error {
	if (c.prometheusURL == "") != (c.loadQuery == "") {
		return errors.New("--prometheus-url and --load-query go together: name the server and the PromQL query of per-Pod load")
	}
	if c.prometheusURL == "" {
		return nil
	}
	if u, err := url.Parse(c.prometheusURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--prometheus-url %q: want http(s)://host:port", c.prometheusURL)
	}
	if c.loadInterval < 100*time.Millisecond {
		return fmt.Errorf("--load-interval %v: want at least 100ms", c.loadInterval)
	}
	if c.loadMaxAge != 0 && c.loadMaxAge < c.loadInterval {
		return fmt.Errorf("--load-max-age %v: want at least --load-interval (%v)", c.loadMaxAge, c.loadInterval)
	}
	if c.loadNamespaceLabel == "" || c.loadPodLabel == "" {
		return errors.New("--load-namespace-label and --load-pod-label must not be empty")
	}
	return nil
}

// forwarding is the validated forwarding configuration.
type forwarding struct {
	forwarder *forward.Forwarder // nil: names outside the zones are refused
	allow     []netip.Prefix
}

func serve(ctx context.Context, cfg *config, opts *zone.Options, fwd forwarding, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

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
	runSource, err := cfg.source(ctx, pub, log, zoneMetrics)
	if err != nil {
		return err
	}

	responder := &answer.Responder{
		Snapshot:   pub.Snapshot,
		Zones:      append(append([]string(nil), opts.Zones...), opts.ReverseZones...),
		Metrics:    answer.NewMetrics(reg),
		PodRecords: cfg.pods == "insecure",
	}
	dnsServer := &server.Server{Addr: cfg.listen, Responder: responder, Log: log, Metrics: server.NewMetrics(reg)}
	if fwd.forwarder != nil {
		responder.ForwardAllow = fwd.allow
		dnsServer.Forward = fwd.forwarder
		fwd.forwarder.Metrics = forward.NewMetrics(reg)
		log.Info("forwarding names outside the zones", "upstreams", fwd.forwarder.Upstreams, "allow", fwd.allow)
	}
	if err := dnsServer.Listen(); err != nil {
		return err
	}
	httpListener, err := net.Listen("tcp", cfg.httpListen)
	if err != nil {
		return fmt.Errorf("listen on --http-listen %s: %w", cfg.httpListen, err)
	}
	httpServer := &http.Server{Handler: admin.HTTPHandler(reg, responder, cfg.pprof), ReadHeaderTimeout: 5 * time.Second}

	go runSource()
	if loads != nil {
		// Readiness does not wait for it: without values, least-loaded
		// uses the handout ledger.
		go loads.Run(ctx)
	}
	go pub.Run(ctx)
	go func() {
		if err := httpServer.Serve(httpListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("hdns serving", "dns", dnsServer.UDPAddr().String(), "http", httpListener.Addr().String(),
		"zones", opts.Zones, "source", sourceName(cfg))
	err = dnsServer.Serve(ctx)
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	httpServer.Shutdown(shutdownCtx)
	return err
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
	loads, err := loadsource.New(loadsource.Config{
		URL: c.prometheusURL, Query: c.loadQuery,
		NamespaceLabel: c.loadNamespaceLabel, PodLabel: c.loadPodLabel,
		Interval: c.loadInterval, MaxAge: c.loadMaxAge,
	}, policies, log.With("component", "loadsource"), loadsource.NewMetrics(reg))
	if err != nil {
		return nil, fmt.Errorf("--prometheus-url: %w", err)
	}
	return loads, nil
}

// source makes the zone's source of Services and EndpointSlices, manifests
// or a cluster, which hands them to pub; run watches them until ctx is
// done. The manifests are loaded and built before it returns.
func (c *config) source(ctx context.Context, pub *zone.Publisher, log *slog.Logger, metrics *zone.Metrics) (run func(), err error) {
	if c.manifests != "" {
		src := &manifests.Source{Path: c.manifests, Log: log, Metrics: metrics}
		if err := src.Load(pub); err != nil {
			return nil, err
		}
		pub.Rebuild()
		return func() { src.Run(ctx, pub) }, nil
	}
	client, err := kubeClient(c.kubeconfig)
	if err != nil {
		return nil, err
	}
	if err := kube.CheckReachable(ctx, client, 10*time.Second); err != nil {
		return nil, err
	}
	src := &kube.Source{Client: client, Namespace: c.namespace, LabelSelector: c.selector, Log: log, Metrics: metrics}
	return func() {
		if err := src.Run(ctx, pub); err != nil && ctx.Err() == nil {
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
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}
