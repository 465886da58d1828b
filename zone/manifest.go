package zone

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

type manifestObjects struct {
	services []*Service
	slices   []*EndpointSlice
	nodes    []*ClusterNode
}

// checkUnique rejects two objects of one kind with the same namespace and
// name, as the API server would.
func (o *manifestObjects) checkUnique() error {
	seen := make(map[string]bool, len(o.services)+len(o.slices))
	for _, s := range o.services {
		k := "Service " + s.Namespace + "/" + s.Name
		if seen[k] {
			return fmt.Errorf("manifests: %s is defined twice", k)
		}
		seen[k] = true
	}
	for _, s := range o.slices {
		k := "EndpointSlice " + s.Namespace + "/" + s.Name
		if seen[k] {
			return fmt.Errorf("manifests: %s is defined twice", k)
		}
		seen[k] = true
	}
	for _, n := range o.nodes {
		k := "Node " + n.Name
		if seen[k] {
			return fmt.Errorf("manifests: %s is defined twice", k)
		}
		seen[k] = true
	}
	return nil
}

// ParseManifest returns the Services and EndpointSlices of one manifest
// file's contents; file names it in errors.
func ParseManifest(file string, data []byte) ([]*Service, []*EndpointSlice, error) {
	var objs manifestObjects
	err := parseManifest(file, data, &objs)
	if err == nil {
		err = objs.checkUnique()
	}
	return objs.services, objs.slices, err
}

// ParseManifestChanges returns the objects of one manifest file's
// contents as upserts: its Services, EndpointSlices and Nodes.
func ParseManifestChanges(file string, data []byte) ([]Change, error) {
	var objs manifestObjects
	err := parseManifest(file, data, &objs)
	if err == nil {
		err = objs.checkUnique()
	}
	if err != nil {
		return nil, err
	}
	changes := make([]Change, 0, len(objs.services)+len(objs.slices)+len(objs.nodes))
	for _, s := range objs.services {
		changes = append(changes, ServiceChange(OpUpsert, s))
	}
	for _, s := range objs.slices {
		changes = append(changes, SliceChange(OpUpsert, s))
	}
	for _, n := range objs.nodes {
		changes = append(changes, NodeChange(OpUpsert, n))
	}
	return changes, nil
}

// parseManifest adds the Services and EndpointSlices of one file to objs.
func parseManifest(file string, data []byte, objs *manifestObjects) error {
	for _, doc := range splitDocuments(data) {
		where := fmt.Sprintf("%s:%d", file, doc.line)
		js, err := yaml.YAMLToJSON(doc.text)
		if err != nil {
			return fmt.Errorf("manifests: %s: document %d: %w", where, doc.index, err)
		}
		if err := addObject(js, objs); err != nil {
			return fmt.Errorf("manifests: %s: document %d: %w", where, doc.index, err)
		}
	}
	return nil
}

type document struct {
	text  []byte
	line  int // 1-based line of the document's first line in its file
	index int // 1-based
}

// splitDocuments splits a YAML stream at "---" lines, remembering where each
// document starts. Documents with nothing but comments are dropped.
func splitDocuments(data []byte) []document {
	var docs []document
	var cur bytes.Buffer
	start, lineNo, index := 1, 0, 0
	flush := func() {
		index++
		if hasContent(cur.Bytes()) {
			docs = append(docs, document{text: bytes.Clone(cur.Bytes()), line: start, index: index})
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), len(data)+1)
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		if bytes.Equal(bytes.TrimRight(line, " \t\r"), []byte("---")) || bytes.HasPrefix(line, []byte("--- ")) {
			flush()
			start = lineNo + 1
			continue
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' {
			return true
		}
	}
	return false
}

// addObject decodes one JSON object (a document or a List item).
func addObject(js []byte, objs *manifestObjects) error {
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return fmt.Errorf("not a Kubernetes object: %w", err)
	}
	switch {
	case tm.APIVersion == "v1" && tm.Kind == "Service":
		var s corev1.Service
		if err := strictJSON(js, &s); err != nil {
			return fmt.Errorf("Service: %w", err)
		}
		svc, err := manifestService(&s)
		if err != nil {
			return fmt.Errorf("Service %s/%s: %w", s.Namespace, s.Name, err)
		}
		objs.services = append(objs.services, svc)
	case tm.APIVersion == "discovery.k8s.io/v1" && tm.Kind == "EndpointSlice":
		var s discoveryv1.EndpointSlice
		if err := strictJSON(js, &s); err != nil {
			return fmt.Errorf("EndpointSlice: %w", err)
		}
		slice, err := manifestSlice(&s)
		if err != nil {
			return fmt.Errorf("EndpointSlice %s/%s: %w", s.Namespace, s.Name, err)
		}
		objs.slices = append(objs.slices, slice)
	case tm.APIVersion == "v1" && tm.Kind == "Node":
		var n corev1.Node
		if err := strictJSON(js, &n); err != nil {
			return fmt.Errorf("Node: %w", err)
		}
		node, err := manifestNode(&n)
		if err != nil {
			return fmt.Errorf("Node %s: %w", n.Name, err)
		}
		objs.nodes = append(objs.nodes, node)
	case strings.HasSuffix(tm.Kind, "List"):
		var l struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(js, &l); err != nil {
			return fmt.Errorf("%s: %w", tm.Kind, err)
		}
		for i, item := range l.Items {
			if err := addObject(item, objs); err != nil {
				return fmt.Errorf("%s item %d: %w", tm.Kind, i, err)
			}
		}
	case tm.Kind == "":
		return errors.New("object has no kind")
	}
	return nil
}

// strictJSON decodes as the API server does: field names match case
// sensitively, and unknown or duplicate fields are errors.
func strictJSON(js []byte, v any) error {
	strict, err := kjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// manifestService checks what the API server would have checked and
// shrinks the Service.
func manifestService(s *corev1.Service) (*Service, error) {
	if s.Namespace == "" {
		s.Namespace = metav1.NamespaceDefault
	}
	if err := checkName(s.Namespace, s.Name); err != nil {
		return nil, err
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		if _, ok := dns.IsDomainName(s.Spec.ExternalName); !ok {
			return nil, fmt.Errorf("externalName %q is not a domain name", s.Spec.ExternalName)
		}
	}
	for _, ip := range append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...) {
		if ip == "" || ip == corev1.ClusterIPNone {
			continue
		}
		if err := checkIP(ip); err != nil {
			return nil, fmt.Errorf("clusterIP: %w", err)
		}
	}
	for _, p := range s.Spec.Ports {
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("port %q: %d is not in 1-65535", p.Name, p.Port)
		}
	}
	return ServiceFromAPI(s), nil
}

func manifestSlice(s *discoveryv1.EndpointSlice) (*EndpointSlice, error) {
	if s.Namespace == "" {
		s.Namespace = metav1.NamespaceDefault
	}
	if err := checkName(s.Namespace, s.Name); err != nil {
		return nil, err
	}
	if s.Labels[discoveryv1.LabelServiceName] == "" {
		return nil, fmt.Errorf("no %s label: the slice belongs to no Service", discoveryv1.LabelServiceName)
	}
	if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 && s.AddressType != discoveryv1.AddressTypeFQDN {
		return nil, fmt.Errorf("addressType %q is not IPv4, IPv6 or FQDN", s.AddressType)
	}
	for _, p := range s.Ports {
		if p.Port != nil && (*p.Port < 1 || *p.Port > 65535) {
			return nil, fmt.Errorf("port %d is not in 1-65535", *p.Port)
		}
	}
	for i, e := range s.Endpoints {
		if len(e.Addresses) == 0 {
			return nil, fmt.Errorf("endpoint %d has no addresses", i)
		}
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for _, a := range e.Addresses {
			if err := checkIP(a); err != nil {
				return nil, fmt.Errorf("endpoint %d: %w", i, err)
			}
			ip := netip.MustParseAddr(a)
			if ip.Unmap().Is4() != (s.AddressType == discoveryv1.AddressTypeIPv4) {
				return nil, fmt.Errorf("endpoint %d: address %s is not of addressType %s", i, a, s.AddressType)
			}
		}
		if e.Hostname != nil && !isLabel(strings.ToLower(*e.Hostname)) {
			return nil, fmt.Errorf("endpoint %d: hostname %q is not a DNS label", i, *e.Hostname)
		}
	}
	return EndpointSliceFromAPI(s), nil
}

// checkIP accepts an IP address without an IPv6 zone.
func checkIP(s string) error {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return err
	}
	if ip.Zone() != "" {
		return fmt.Errorf("address %q has a zone", s)
	}
	return nil
}

func checkName(namespace, name string) error {
	if name == "" {
		return errors.New("metadata.name is empty")
	}
	if !isLabel(namespace) {
		return fmt.Errorf("namespace %q is not a DNS label", namespace)
	}
	if !isLabel(name) {
		return fmt.Errorf("name %q is not a DNS label", name)
	}
	return nil
}
