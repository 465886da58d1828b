package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server/forward"
	"github.com/hdns-dev/hdns/server/rrl"
	"github.com/hdns-dev/hdns/zone"
)

// listFlag is a repeatable string flag whose first use replaces its default.
type listFlag struct {
	values []string
	set    bool
}

func (l *listFlag) String() string { return strings.Join(l.values, ",") }
func (l *listFlag) Type() string   { return "strings" }
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
	adminListen                  string
	kubeconfig, manifests        string
	namespace, selector          string
	ttl, lameduck                time.Duration
	logLevel, logFormat          string
	version                      bool
	defaultPolicy                string
	endpointPodNames             bool
	endpointMetrics              bool
	pprof                        bool
	prometheusURL, loadQuery     string
	prometheusAuth               prometheusAuth
	loadNamespaceLabel           string
	loadPodLabel                 string
	loadInterval, loadMaxAge     time.Duration
	forward, forwardAllow        listFlag
	forwardTimeout               time.Duration
	cacheSize                    int
	cacheMaxTTL                  time.Duration
	pods                         string
	coredns                      corednsFlags
	rrl                          rrlFlags
}

// corednsFlags are the flags of adoption through CoreDNS (package adopt).
type corednsFlags struct {
	configMap string
	forward   listFlag
	port      uint16
	// zones are the validated --zone values, set by zoneOptions: the
	// blocks name the Services in each.
	zones []string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{
		zones:        listFlag{values: []string{"cluster.local."}},
		reverseZones: listFlag{values: []string{"in-addr.arpa.", "ip6.arpa."}},
		// Loopback and the private ranges clusters use for pods and nodes.
		forwardAllow: listFlag{values: []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"}},
		coredns:      corednsFlags{forward: listFlag{values: []string{"hdns/hdns"}}},
	}
	fs := pflag.NewFlagSet("hdns", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Var(&c.zones, "zone", "zone to serve Services in, repeatable or comma-separated")
	fs.Var(&c.reverseZones, "reverse-zone", `reverse zone to serve PTR records in, repeatable; "none" serves none`)
	fs.StringVar(&c.listen, "listen", ":53", "UDP and TCP address for DNS")
	fs.StringVar(&c.httpListen, "http-listen", ":8080", "HTTP address for /metrics, /healthz and /readyz, for monitoring and probes")
	fs.StringVar(&c.adminListen, "admin-listen", "127.0.0.1:8081", `HTTP address for /debug/explain and --pprof, which show every Service's Pods, nodes and zones: keep it on loopback (reach it with kubectl port-forward); "" disables it`)
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	fs.StringVar(&c.manifests, "manifests", "", "serve Kubernetes YAML manifests from this file or directory instead of a cluster; edits are picked up")
	fs.StringVar(&c.namespace, "namespace", "", "watch only this namespace (default: all)")
	fs.StringVar(&c.selector, "selector", "", "serve only Services matching this label selector")
	fs.DurationVar(&c.ttl, "ttl", 5*time.Second, "TTL of answers, whole seconds")
	fs.DurationVar(&c.lameduck, "lameduck", 5*time.Second, "on SIGTERM, fail /readyz at once and keep answering DNS this long before stopping (SIGINT, or a second signal, stops at once)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json; client-go's messages are written in it too")
	fs.BoolVar(&c.version, "version", false, "print the version, commit and Go version, and exit")
	fs.StringVar(&c.defaultPolicy, "default-policy", "ordered", "policy for Services without a valid hdns.dev/policy annotation; steps: "+strings.Join(policy.Names(), ", "))
	fs.BoolVar(&c.endpointPodNames, "endpoint-pod-names", false, "name endpoints without a hostname after their Pod instead of their dashed address")
	fs.BoolVar(&c.pprof, "pprof", false, "serve Go's runtime profiles under /debug/pprof/ on --admin-listen")
	fs.BoolVar(&c.endpointMetrics, "endpoint-metrics", false, "count handouts per endpoint in hdns_policy_endpoint_handouts_total (one series per endpoint)")
	fs.StringVar(&c.prometheusURL, "prometheus-url", "", "Prometheus server to poll for live per-Pod load (least-loaded blends it with the handout ledger); needs --load-query")
	fs.StringVar(&c.loadQuery, "load-query", "", "PromQL instant vector of per-Pod load, labelled by namespace and pod (a Service's hdns.dev/load-query annotation overrides it)")
	fs.StringVar(&c.prometheusAuth.bearerTokenFile, "prometheus-bearer-token-file", "", "file whose content is sent to --prometheus-url as a bearer token; read for every request, so a rotated (projected) token is picked up")
	fs.StringVar(&c.prometheusAuth.caFile, "prometheus-ca-file", "", "PEM CA bundle that verifies --prometheus-url's certificate (default: the system's roots, which the image lacks)")
	fs.StringVar(&c.prometheusAuth.certFile, "prometheus-cert-file", "", "client certificate presented to --prometheus-url, with --prometheus-key-file; re-read when it changes")
	fs.StringVar(&c.prometheusAuth.keyFile, "prometheus-key-file", "", "key of --prometheus-cert-file")
	fs.StringVar(&c.loadNamespaceLabel, "load-namespace-label", "namespace", "label of --load-query results that holds the Pod's namespace")
	fs.StringVar(&c.loadPodLabel, "load-pod-label", "pod", "label of --load-query results that holds the Pod's name")
	fs.DurationVar(&c.loadInterval, "load-interval", 5*time.Second, "time between two polls of the load queries; each query times out after half of it")
	fs.DurationVar(&c.loadMaxAge, "load-max-age", 0, "staleness bound of a polled load value, after which the handout ledger alone ranks the Pod (default 3 × --load-interval)")
	fs.Var(&c.forward, "forward", `upstream resolvers (host:port, or "resolv.conf" for the nameservers of /etc/resolv.conf) for names outside the zones; repeatable; default: none, such names get REFUSED`)
	fs.Var(&c.forwardAllow, "forward-allow", "client CIDRs whose out-of-zone queries are forwarded; repeatable. The default trusts every private range: a LoadBalancer or NodePort that source-NATs outside clients to node addresses makes hdns an open resolver unless this is narrowed to the pod CIDR")
	fs.DurationVar(&c.forwardTimeout, "forward-timeout", 2*time.Second, "timeout of one exchange with one upstream")
	fs.IntVar(&c.cacheSize, "cache-size", 10000, "forwarded answers kept; 0 disables the cache")
	fs.DurationVar(&c.cacheMaxTTL, "cache-max-ttl", 5*time.Minute, "longest time a forwarded answer is kept")
	fs.StringVar(&c.pods, "pods", "disabled", `"insecure" answers <dashed-ip>.<namespace>.pod.<zone> like CoreDNS; "disabled" does not`)
	fs.Var(&c.nsAddrs, "ns-address", "address answered for ns.dns.<zone>, the apex NS target, repeatable")
	c.coredns.register(fs)
	c.rrl.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			// run, which main.go owns, knows the standard library's.
			return nil, flag.ErrHelp
		}
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
	c.coredns.zones = opts.Zones
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

func (c *config) validateSource() error {
	if c.manifests != "" && c.kubeconfig != "" {
		return errors.New("--manifests and --kubeconfig are exclusive: serve files or a cluster, not both")
	}
	if c.manifests != "" && (c.namespace != "" || c.selector != "") {
		return errors.New("--namespace and --selector limit what is watched in a cluster; they do not apply to --manifests")
	}
	if c.pprof && c.adminListen == "" {
		return errors.New("--pprof serves on --admin-listen, which is disabled")
	}
	if c.selector != "" {
		if _, err := labels.Parse(c.selector); err != nil {
			return fmt.Errorf("--selector: %w", err)
		}
	}
	if err := c.coredns.validate(c.manifests == ""); err != nil {
		return err
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
		if c.prometheusAuth != (prometheusAuth{}) {
			return errors.New("--prometheus-bearer-token-file, --prometheus-ca-file, --prometheus-cert-file and --prometheus-key-file need --prometheus-url")
		}
		return nil
	}
	if (c.prometheusAuth.certFile == "") != (c.prometheusAuth.keyFile == "") {
		return errors.New("--prometheus-cert-file and --prometheus-key-file go together")
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

// prometheusAuth names the files that authenticate hdns to Prometheus and
// verify Prometheus; loadsource reads them.
type prometheusAuth struct {
	bearerTokenFile           string
	caFile, certFile, keyFile string
}

// rrlFlags are the --rrl-* flags: response rate limiting of UDP replies,
// off unless --rrl-responses-per-second is set.
type rrlFlags struct {
	responses, errors, slip int
	window                  time.Duration
	ipv4Prefix, ipv6Prefix  int
}

func (r *rrlFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&r.responses, "rrl-responses-per-second", 0, "response rate limiting: UDP answers per second one client prefix gets for one name and type; over it, replies are dropped or slipped (TCP is never limited); 0 disables it")
	fs.IntVar(&r.errors, "rrl-errors-per-second", 0, "rate of UDP error replies (NXDOMAIN, REFUSED, ...) one client prefix gets, for all names together (default --rrl-responses-per-second)")
	fs.DurationVar(&r.window, "rrl-window", 15*time.Second, "longest a limited client prefix waits after its flood stops (the debt an account may run up: window × rate)")
	fs.IntVar(&r.slip, "rrl-slip", 2, "every Nth limited reply goes out as its question alone with TC set, so that real clients retry over TCP; 0 drops them all")
	fs.IntVar(&r.ipv4Prefix, "rrl-ipv4-prefix-length", 24, "IPv4 clients in one prefix of this length share their rates")
	fs.IntVar(&r.ipv6Prefix, "rrl-ipv6-prefix-length", 56, "IPv6 clients in one prefix of this length share their rates")
}

// config is the limiter's configuration; ok is false when rate limiting is off.
func (r *rrlFlags) config() (c rrl.Config, ok bool, err error) {
	c = rrl.Config{ResponsesPerSecond: r.responses, ErrorsPerSecond: r.errors, Window: r.window, Slip: r.slip,
		IPv4PrefixLen: r.ipv4Prefix, IPv6PrefixLen: r.ipv6Prefix}
	if r.responses == 0 {
		if r.errors != 0 {
			return c, false, errors.New("--rrl-errors-per-second needs --rrl-responses-per-second")
		}
		return c, false, nil
	}
	if r.ipv4Prefix == 0 || r.ipv6Prefix == 0 {
		return c, false, errors.New("--rrl-ipv4-prefix-length and --rrl-ipv6-prefix-length must not be 0")
	}
	if err := c.Check(); err != nil {
		return c, false, fmt.Errorf("--rrl-*: %w", err)
	}
	return c, true, nil
}

// limiter is the rate limiter the flags ask for, its metrics registered
// with reg, or nil when rate limiting is off.
func (r *rrlFlags) limiter(reg prometheus.Registerer) (*rrl.Limiter, error) {
	c, ok, err := r.config()
	if !ok || err != nil {
		return nil, err
	}
	c.Metrics = rrl.NewMetrics(reg)
	return rrl.New(c)
}
