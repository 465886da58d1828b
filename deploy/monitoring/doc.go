// Package monitoring holds hdns's monitoring bundle (the ServiceMonitor,
// PodMonitor, PrometheusRule, plain rule file and Grafana dashboard in this
// directory) and the tests that check it; it has no code of its own.
//
// The tests own the bundle's consistency with hdns: every rule and
// dashboard expression parses (promtool), names only metrics hdns exports
// (found by reading the Go sources of the module, so that a vector without
// series yet still counts), and every alert has its promtool unit tests.
// They must not import hdns's own packages (they read its sources as text,
// so that they neither depend on nor constrain its APIs), and import from
// the module only internal/promtest. Without promtool they skip, or fail
// under HDNS_REQUIRE_PROMETHEUS (scripts/test).
package monitoring
