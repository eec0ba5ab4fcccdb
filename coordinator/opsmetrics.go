package coordinator

import (
	"github.com/prometheus/client_golang/prometheus"
)

// opsMetrics are the node's operational metrics that are not about
// training: how it was built, whether it authenticates devices, how its
// join goes. Read at scrape time.
type opsMetrics struct {
	n                              *Node
	build                          Build
	buildInfo, insecure, joinFails *prometheus.Desc
}

func newOpsMetrics(n *Node) *opsMetrics {
	return &opsMetrics{
		n:         n,
		build:     BuildInfo(),
		buildInfo: prometheus.NewDesc("fedrec_build_info", "Always 1; the labels say which build of fedrec this node runs.", []string{"version", "revision", "goversion"}, nil),
		insecure:  prometheus.NewDesc("fedrec_devices_unauthenticated", "1 if this node serves devices without authenticating them (started with --insecure-devices and no device CA), else 0.", nil, nil),
		joinFails: prometheus.NewDesc("fedrec_join_failures_total", "Attempts of this node to join a cluster (--join) that failed.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *opsMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.buildInfo
	ch <- m.insecure
	ch <- m.joinFails
}

// insecureDevices reports whether the node serves devices without
// authenticating them: it has a client server and no device CA.
func (n *Node) insecureDevices() bool { return n.auth != nil && !n.auth.required() }

// Collect implements prometheus.Collector.
func (m *opsMetrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(m.buildInfo, prometheus.GaugeValue, 1, m.build.Version, m.build.Revision, m.build.GoVersion)
	insecure := 0.0
	if m.n.insecureDevices() {
		insecure = 1
	}
	ch <- prometheus.MustNewConstMetric(m.insecure, prometheus.GaugeValue, insecure)
	ch <- prometheus.MustNewConstMetric(m.joinFails, prometheus.CounterValue, float64(m.n.joinFailures.Load()))
}
