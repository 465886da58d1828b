package loadsource_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hdns-dev/hdns/internal/promtest"
	"github.com/hdns-dev/hdns/loadsource"
)

// constantLoad is a load query a Prometheus answers without scraping
// anything: one sample, 7, for Pod ns/p-0.
const constantLoad = `label_replace(label_replace(vector(7), "namespace", "ns", "", ""), "pod", "p-0", "", "")`

// recordingSink keeps the values of the last successful poll.
type recordingSink struct {
	mu  sync.Mutex
	got map[string]float64
}

func (s *recordingSink) LiveQueries() []string { return nil }
func (s *recordingSink) UpdateLive(_ string, v map[string]float64, _, _ time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = v
}

// pollOnce makes a source of cfg (with constantLoad) and polls it once;
// it returns the poll's error, or an error when the poll succeeded
// without the constant value.
func pollOnce(t *testing.T, cfg loadsource.Config) error {
	t.Helper()
	cfg.Query, cfg.Interval = constantLoad, 2*time.Second
	sink := &recordingSink{}
	src, err := loadsource.New(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Poll(context.Background()); err != nil {
		return err
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if v := sink.got["ns/p-0"]; v != 7 {
		return fmt.Errorf("values %v, want ns/p-0 = 7", sink.got)
	}
	return nil
}

// TestRealPrometheusOverTLSWithClientCertificate: a real Prometheus that
// serves TLS and requires a client certificate signed by its CA answers
// the load source given the CA and a client certificate, and refuses it
// without either.
func TestRealPrometheusOverTLSWithClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	caFile := writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.der)
	serverCert, serverKey := ca.issue(t, dir, "server", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := ca.issue(t, dir, "client", x509.ExtKeyUsageClientAuth)

	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	ready := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.pool(), Certificates: []tls.Certificate{pair}}}}
	prom := promtest.StartWith(t, promtest.Options{Scheme: "https", Client: ready, WebConfig: fmt.Sprintf(`tls_server_config:
  cert_file: %s
  key_file: %s
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: %s
`, serverCert, serverKey, caFile)}, time.Second, "127.0.0.1:1")

	if err := pollOnce(t, loadsource.Config{URL: prom.URL, CAFile: caFile, CertFile: clientCert, KeyFile: clientKey}); err != nil {
		t.Errorf("with the CA and a client certificate: %v", err)
	}
	if err := pollOnce(t, loadsource.Config{URL: prom.URL, CAFile: caFile}); err == nil {
		t.Error("without a client certificate: the poll succeeded")
	}
	if err := pollOnce(t, loadsource.Config{URL: prom.URL, CertFile: clientCert, KeyFile: clientKey}); err == nil {
		t.Error("without the CA (the system's roots): the poll succeeded")
	}
	if _, err := loadsource.New(loadsource.Config{URL: prom.URL, Query: "up", Interval: time.Second, CertFile: clientCert}, &recordingSink{}, nil, nil); err == nil {
		t.Error("a certificate without its key was accepted")
	}
}

// TestRealPrometheusBehindBearerTokenProxy: behind a proxy that requires
// "Authorization: Bearer <token>" (Prometheus itself checks no bearer
// tokens), the load source sends the token file's content, and sends the
// new content once the file is rotated.
func TestRealPrometheusBehindBearerTokenProxy(t *testing.T) {
	prom := promtest.Start(t, time.Second, "127.0.0.1:1")
	var want atomic.Value // the token the proxy accepts
	want.Store("first-token")
	proxy := prom.RequireBearer(t, func() string { return want.Load().(string) })

	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, "first-token\n")
	cfg := loadsource.Config{URL: proxy, BearerTokenFile: tokenFile}
	if err := pollOnce(t, cfg); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	if err := pollOnce(t, loadsource.Config{URL: proxy}); err == nil {
		t.Error("without a token: the poll succeeded")
	}

	// Rotation: one source, kept across the change of the file.
	sink := &recordingSink{}
	src, err := loadsource.New(loadsource.Config{URL: proxy, BearerTokenFile: tokenFile, Query: constantLoad, Interval: 2 * time.Second}, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Poll(context.Background()); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	want.Store("second-token")
	if err := src.Poll(context.Background()); err == nil {
		t.Error("the proxy accepts only the new token, the file holds the old one: the poll succeeded")
	}
	writeFile(t, tokenFile, "second-token\n")
	if err := src.Poll(context.Background()); err != nil {
		t.Errorf("after the file was rotated: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})))
	return path
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hdns test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, der: der, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue writes a certificate for loopback (127.0.0.1, ::1, localhost)
// with usage, and its key, as PEM files name.pem and name-key.pem in dir.
func (ca *testCA) issue(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "hdns test " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "PRIVATE KEY", keyDER)
}
