// Package harness runs a real Kubernetes control plane (etcd,
// kube-apiserver and kube-controller-manager, no kubelet) on 127.0.0.1 for
// hdns end-to-end tests.
//
// The binaries are built by test/e2e/tools/build.sh; the directory it prints
// must be exported as HDNS_E2E_BIN (test/e2e/run.sh does both). Pods are made
// "ready" by writing their status subresource, so tests choose pod IPs freely
// and the EndpointSlice controller publishes them as it would in a cluster.
package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// BinEnv names the environment variable holding the directory with the
	// etcd, kube-apiserver and kube-controller-manager binaries.
	BinEnv = "HDNS_E2E_BIN"
	// KeepEnv, when set to a non-empty value, keeps the control plane's
	// directory (logs, certificates, etcd data) even when the test passed.
	KeepEnv = "HDNS_E2E_KEEP"

	// ServiceCIDRs is the dual-stack service cluster IP range of the API server.
	ServiceCIDRs = "10.96.0.0/16,fd00:10:96::/112"
	// ServiceAccountIssuer is the API server's --service-account-issuer.
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// Controllers lists the kube-controller-manager controllers that run.
	// Node lifecycle, taint eviction and pod GC are left out on purpose:
	// without a kubelet they would evict or delete the tests' pods.
	Controllers = "endpointslice-controller,endpointslice-mirroring-controller," +
		"serviceaccount-controller,namespace-controller,garbage-collector-controller"

	adminUser = "hdns-e2e-admin"
	logTail   = 50
)

// Options tunes Start. The zero value is ready to use.
type Options struct {
	// StartTimeout bounds the start of each component (etcd, the API server
	// up to /readyz, the controller manager up to /healthz). Zero means 2m.
	StartTimeout time.Duration
	// ExtraAPIServerArgs are appended to the kube-apiserver command line.
	ExtraAPIServerArgs []string
	// ExtraControllerManagerArgs are appended to the kube-controller-manager
	// command line.
	ExtraControllerManagerArgs []string
}

func (o Options) startTimeout() time.Duration {
	if o.StartTimeout <= 0 {
		return 2 * time.Minute
	}
	return o.StartTimeout
}

// ControlPlane is a running etcd + kube-apiserver + kube-controller-manager.
// All exported fields are read-only. Methods are safe for concurrent use
// except StopAPIServer and StartAPIServer, which must not race each other.
type ControlPlane struct {
	// Dir holds certificates, etcd data, the kubeconfig and the logs/
	// directory. It is removed at cleanup unless the test failed or
	// HDNS_E2E_KEEP is set.
	Dir string
	// KubeconfigPath is an admin kubeconfig (static token, system:masters).
	KubeconfigPath string
	// Config is the admin client configuration. Copy it before mutating.
	Config *rest.Config
	// Client is an admin clientset built from Config.
	Client kubernetes.Interface
	// APIServerURL is the API server's https URL on 127.0.0.1.
	APIServerURL string
	// EtcdURL is etcd's client URL on 127.0.0.1.
	EtcdURL string
	// StartDuration is how long Start took until every component was ready.
	StartDuration time.Duration

	opts      Options
	binDir    string
	creds     *credentials
	apiPort   int
	etcd      *process
	apiserver *process
	kcm       *process
	procs     []*process // in start order

	nodeMu    sync.Mutex
	nodeReady bool
}

// Start runs a fresh control plane for t and registers its teardown with
// t.Cleanup. It fails t (never skips) when HDNS_E2E_BIN is unset or lacks a
// binary, or when a component does not become ready within
// Options.StartTimeout.
func Start(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	begin := time.Now()
	binDir, err := findBinaries()
	if err != nil {
		t.Fatalf("hdns e2e harness: %v", err)
	}
	dir, err := os.MkdirTemp("", "hdns-e2e-")
	if err != nil {
		t.Fatalf("hdns e2e harness: %v", err)
	}
	cp := &ControlPlane{Dir: dir, opts: opts, binDir: binDir}
	t.Cleanup(func() { cp.teardown(t) })

	if err := cp.start(); err != nil {
		t.Fatalf("hdns e2e harness: start control plane: %v", err)
	}
	cp.StartDuration = time.Since(begin)
	t.Logf("hdns e2e harness: control plane ready in %v (api %s, dir %s)",
		cp.StartDuration.Round(time.Millisecond), cp.APIServerURL, cp.Dir)
	return cp
}

// findBinaries returns the directory named by HDNS_E2E_BIN after checking
// that it contains every binary.
func findBinaries() (string, error) {
	dir := os.Getenv(BinEnv)
	if dir == "" {
		return "", fmt.Errorf("%s is not set: run test/e2e/run.sh, or export %s=$(test/e2e/tools/build.sh)", BinEnv, BinEnv)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("%s=%s: %w (rebuild with test/e2e/tools/build.sh)", BinEnv, dir, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s=%s: %s is not an executable file", BinEnv, dir, p)
		}
	}
	return dir, nil
}

func (cp *ControlPlane) start() error {
	for _, sub := range []string{"logs", "etcd", "apiserver-certs", "kcm-certs"} {
		if err := os.MkdirAll(filepath.Join(cp.Dir, sub), 0o700); err != nil {
			return fmt.Errorf("create %s: %w", sub, err)
		}
	}
	creds, err := generateCredentials(cp.Dir)
	if err != nil {
		return err
	}
	cp.creds = creds

	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort, kcmPort := ports[0], ports[1], ports[2], ports[3]
	cp.apiPort = apiPort
	cp.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	cp.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)

	cp.Config = &rest.Config{
		Host:            cp.APIServerURL,
		BearerToken:     creds.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: creds.caPEM},
		QPS:             200,
		Burst:           400,
		Timeout:         30 * time.Second,
	}
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return fmt.Errorf("build clientset: %w", err)
	}
	cp.KubeconfigPath = filepath.Join(cp.Dir, "admin.kubeconfig")
	if err := cp.writeKubeconfig(); err != nil {
		return err
	}

	cp.etcd = cp.newProcess("etcd",
		"--name=hdns-e2e",
		"--data-dir="+filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls="+cp.EtcdURL,
		"--advertise-client-urls="+cp.EtcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=hdns-e2e="+peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	cp.apiserver = cp.newProcess("kube-apiserver", append([]string{
		"--etcd-servers=" + cp.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + filepath.Join(cp.Dir, "apiserver-certs"),
		"--tls-cert-file=" + creds.certFile,
		"--tls-private-key-file=" + creds.keyFile,
		"--token-auth-file=" + creds.tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + creds.saPubFile,
		"--service-account-signing-key-file=" + creds.saKeyFile,
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-cluster-ip-range=" + ServiceCIDRs,
		"--endpoint-reconciler-type=none",
		// Without it, SIGTERM leaves the controller manager's watches open
		// and the API server waits out its 60s request timeout before it
		// exits; with it, it closes them and exits in about a second.
		"--shutdown-watch-termination-grace-period=2s",
		"--allow-privileged=true",
		"--profiling=false",
	}, cp.opts.ExtraAPIServerArgs...)...)
	cp.kcm = cp.newProcess("kube-controller-manager", append([]string{
		"--kubeconfig=" + cp.KubeconfigPath,
		"--leader-elect=false",
		"--controllers=" + Controllers,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(kcmPort),
		"--cert-dir=" + filepath.Join(cp.Dir, "kcm-certs"),
		"--endpointslice-updates-batch-period=0s",
		"--service-account-private-key-file=" + creds.saKeyFile,
		"--profiling=false",
	}, cp.opts.ExtraControllerManagerArgs...)...)

	timeout := cp.opts.startTimeout()
	ctx := context.Background()

	if err := cp.etcd.start(); err != nil {
		return err
	}
	if err := waitHTTP(ctx, cp.etcd, timeout, http.DefaultClient, cp.EtcdURL+"/health", ""); err != nil {
		return err
	}
	if err := cp.startAPIServer(ctx); err != nil {
		return err
	}
	if err := cp.kcm.start(); err != nil {
		return err
	}
	// The controller manager serves /healthz over HTTPS with a self-signed
	// certificate generated at start-up: skip verification (loopback only).
	kcmClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe
	}}
	return waitHTTP(ctx, cp.kcm, timeout, kcmClient, "https://127.0.0.1:"+strconv.Itoa(kcmPort)+"/healthz", "")
}

func (cp *ControlPlane) newProcess(name string, args ...string) *process {
	p := &process{
		name:    name,
		path:    filepath.Join(cp.binDir, name),
		args:    args,
		logPath: filepath.Join(cp.Dir, "logs", name+".log"),
	}
	cp.procs = append(cp.procs, p)
	return p
}

// writeKubeconfig writes the admin kubeconfig to KubeconfigPath.
func (cp *ControlPlane) writeKubeconfig() error {
	const name = "hdns-e2e"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: cp.APIServerURL, CertificateAuthorityData: cp.creds.caPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: cp.creds.token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	if err := clientcmd.WriteToFile(*cfg, cp.KubeconfigPath); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL) and returns once
// the process is gone and its port is free. etcd and the controller manager
// keep running. Stopping a stopped API server is a no-op.
func (cp *ControlPlane) StopAPIServer() error {
	if err := cp.apiserver.stop(); err != nil {
		return fmt.Errorf("stop API server: %w", err)
	}
	if err := waitPortFree(cp.apiPort, killWait); err != nil {
		return fmt.Errorf("stop API server: %w", err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver again with the same flags, port and
// etcd after StopAPIServer, and waits for /readyz (bounded by ctx and
// Options.StartTimeout). Existing clients (Client, Config) keep working.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	if err := cp.startAPIServer(ctx); err != nil {
		return fmt.Errorf("restart API server: %w", err)
	}
	return nil
}

func (cp *ControlPlane) startAPIServer(ctx context.Context) error {
	if err := cp.apiserver.start(); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.creds.caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return waitHTTP(ctx, cp.apiserver, cp.opts.startTimeout(), client, cp.APIServerURL+"/readyz", cp.creds.token)
}

// waitHTTP polls url until it answers 200, p exits, ctx ends or timeout
// passes. A non-empty token is sent as a bearer token.
func waitHTTP(ctx context.Context, p *process, timeout time.Duration, client *http.Client, url, token string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	exited := p.exited()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	begin := time.Now()
	var last error
	for {
		last = probe(ctx, client, url, token)
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%w before %s was ready; last lines of %s:\n%s",
				p.exitErr(), url, p.logPath, tail(p.logPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %w (last probe: %v); see %s",
				p.name, time.Since(begin).Round(time.Millisecond), ctx.Err(), last, p.logPath)
		case <-tick.C:
		}
	}
}

// probe performs one bounded GET and returns nil on HTTP 200.
func probe(ctx context.Context, client *http.Client, url, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// teardown stops every process (newest first), reports logs if t failed and
// removes Dir unless it must be kept.
func (cp *ControlPlane) teardown(t testing.TB) {
	var errs []error
	for i := len(cp.procs) - 1; i >= 0; i-- {
		if err := cp.procs[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("hdns e2e harness: teardown: %v", err)
	}
	if t.Failed() {
		for _, p := range cp.procs {
			t.Logf("hdns e2e harness: last %d lines of %s:\n%s", logTail, p.logPath, tail(p.logPath, logTail))
		}
	}
	if t.Failed() || os.Getenv(KeepEnv) != "" {
		t.Logf("hdns e2e harness: kept control plane directory %s", cp.Dir)
		return
	}
	if err := os.RemoveAll(cp.Dir); err != nil {
		t.Errorf("hdns e2e harness: remove %s: %v", cp.Dir, err)
	}
}
