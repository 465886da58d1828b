package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/hdns-dev/hdns/adopt"
	"github.com/hdns-dev/hdns/zone"
)

func (f *corednsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.configMap, "coredns-configmap", "", "NAMESPACE/NAME of a ConfigMap whose key "+adopt.DataKey+" hdns keeps as one CoreDNS server block per headless Service with the hdns.dev/policy annotation, forwarding to hdns, so that its usual name is balanced (CoreDNS loads it with import and reload; see deploy/coredns); other keys are kept. Default: off")
	fs.Var(&f.forward, "coredns-forward", "where those blocks forward: hdns's addresses (IP or IP:port, repeatable), or NAMESPACE/NAME of hdns's Service, whose cluster IPs are used")
	fs.Uint16Var(&f.port, "coredns-port", 53, "port of CoreDNS's server block for the cluster zone, which the blocks must share (53; 8053 on Gardener)")
}

// corefile validates the adoption flags into the blocks' shape and the
// Service whose addresses they forward to (zero when --coredns-forward
// names addresses).
func (f *corednsFlags) corefile(zones []string) (adopt.Corefile, adopt.ServiceRef, error) {
	cf := adopt.Corefile{Zones: zones, Port: f.port}
	var ref adopt.ServiceRef
	if f.port == 0 {
		return cf, ref, errors.New("--coredns-port: want a port from 1 to 65535")
	}
	if all := strings.Join(f.forward.values, ","); strings.Contains(all, "/") {
		ns, name, _ := strings.Cut(all, "/")
		if len(f.forward.values) != 1 || ns == "" || name == "" || strings.Contains(name, "/") {
			return cf, ref, fmt.Errorf("--coredns-forward %s: want NAMESPACE/NAME of one Service, or addresses", all)
		}
		return cf, adopt.ServiceRef{Namespace: ns, Name: name}, nil
	}
	for _, v := range f.forward.values {
		if _, _, err := net.SplitHostPort(v); err != nil {
			v = net.JoinHostPort(v, "53")
		}
		ap, err := netip.ParseAddrPort(v)
		if err != nil {
			return cf, ref, fmt.Errorf("--coredns-forward: %w", err)
		}
		cf.Upstreams = append(cf.Upstreams, ap)
	}
	if len(cf.Upstreams) == 0 {
		return cf, ref, errors.New("--coredns-forward: name hdns's Service or its addresses")
	}
	return cf, ref, nil
}

// configMapRef splits --coredns-configmap.
func (f *corednsFlags) configMapRef() (namespace, name string, err error) {
	ns, name, ok := strings.Cut(f.configMap, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("--coredns-configmap %q: want NAMESPACE/NAME", f.configMap)
	}
	return ns, name, nil
}

// validate checks the adoption flags; cluster says whether hdns watches a
// cluster, the only place a ConfigMap can be written.
func (f *corednsFlags) validate(cluster bool) error {
	if f.configMap == "" {
		return nil
	}
	if !cluster {
		return errors.New("--coredns-configmap writes to a cluster; with --manifests, print the blocks with `hdns corefile`")
	}
	if _, _, err := f.configMapRef(); err != nil {
		return err
	}
	_, _, err := f.corefile(nil)
	return err
}

// adopter returns the sink the kube source hands its changes to, next
// with the View of package adopt in front when --coredns-configmap is
// set, and the Keeper that writes the ConfigMap (nil when it is not).
func (f *corednsFlags) adopter(client kubernetes.Interface, next zone.Sink, log *slog.Logger) (zone.Sink, *adopt.Keeper, error) {
	if f.configMap == "" {
		return next, nil, nil
	}
	ns, name, err := f.configMapRef()
	if err != nil {
		return nil, nil, err
	}
	cf, ref, err := f.corefile(f.zones)
	if err != nil {
		return nil, nil, err
	}
	view := adopt.NewView(next, ref)
	return view, &adopt.Keeper{
		View: view, Corefile: cf, Log: log.With("component", "adopt"),
		Target: &adopt.ConfigMap{Client: client, Namespace: ns, Name: name},
	}, nil
}

// runKeeper runs k until ctx is done; a nil k does nothing.
func runKeeper(ctx context.Context, k *adopt.Keeper) {
	if k != nil {
		k.Run(ctx)
	}
}
