// Package charts holds hdns's Helm chart (charts/hdns) and the tests that
// check it; it has no code of its own.
//
// The tests own the chart's agreement with the rest of the repository:
// `helm lint --strict` passes (with default values and with ci/'s), the
// default values render exactly the objects of the kustomize base deploy/,
// its toggles render deploy/egress's and deploy/monitoring's objects,
// values.schema.json refuses misspelt values,
// the chart's version and image are the repository's VERSION and IMAGE,
// and files/ holds deploy/monitoring's rules and dashboard byte for byte.
// They use the helm pinned in tools/helm (internal/helmtest) and must not
// import hdns's own packages but internal/helmtest and internal/kubeyaml.
package charts
