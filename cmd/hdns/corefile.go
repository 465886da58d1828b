package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hdns-dev/hdns/adopt"
	"github.com/hdns-dev/hdns/source/kube"
	"github.com/hdns-dev/hdns/source/manifests"
	"github.com/hdns-dev/hdns/zone"
)

// printCorefile is `hdns corefile [flags]`: it prints the server blocks
// that --coredns-configmap would keep, from the Services of the cluster or
// of --manifests as they are now, and returns the exit code (2 for bad
// flags, 1 when the Services cannot be read).
func printCorefile(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		err = cfg.validateSource()
	}
	if err == nil {
		_, err = cfg.zoneOptions()
	}
	var cf adopt.Corefile
	var ref adopt.ServiceRef
	if err == nil {
		cf, ref, err = cfg.coredns.corefile(cfg.coredns.zones)
	}
	if err != nil {
		fmt.Fprintln(stderr, "hdns corefile:", err)
		return 2
	}
	view := adopt.NewView(discardSink{}, ref)
	if err := cfg.loadOnce(ctx, view); err != nil {
		fmt.Fprintln(stderr, "hdns corefile:", err)
		return 1
	}
	opted, upstream, _ := view.State()
	if len(cf.Upstreams) == 0 {
		if len(upstream) == 0 {
			fmt.Fprintf(stderr, "hdns corefile: Service %s/%s (--coredns-forward) not found or without a cluster IP; name hdns's addresses instead\n", ref.Namespace, ref.Name)
			return 1
		}
		cf.Upstreams = upstream
	}
	fmt.Fprint(stdout, cf.Render(opted))
	return 0
}

// loadOnce hands sink the Services and EndpointSlices of the source the
// flags name, once: the manifests as they are, or the cluster's first list.
func (c *config) loadOnce(ctx context.Context, sink *adopt.View) error {
	if c.manifests != "" {
		return (&manifests.Source{Path: c.manifests}).Load(sink)
	}
	client, err := kubeClient(c.kubeconfig)
	if err != nil {
		return err
	}
	if err := kube.CheckReachable(ctx, client, 10*time.Second); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	src := &kube.Source{Client: client, Namespace: c.namespace, LabelSelector: c.selector, Log: slog.New(slog.DiscardHandler)}
	go src.Run(ctx, sink)
	select {
	case <-sink.Changed(): // the first Replace: the informers synced
		return nil
	case <-ctx.Done():
		return fmt.Errorf("Services not listed: %w", context.Cause(ctx))
	}
}

// discardSink is the zone.Sink of `hdns corefile`, which builds no zone.
type discardSink struct{}

func (discardSink) Apply(...zone.Change)                           {}
func (discardSink) Replace([]*zone.Service, []*zone.EndpointSlice) {}
