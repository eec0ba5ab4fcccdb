package coordinator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// opsMetrics are the node's operational metrics that are not about
// training: how it was built, whether it authenticates devices, how its
// join goes. Read at scrape time.
type opsMetrics struct {
	n                              *Node
	build                          wire.Build
	buildInfo, insecure, joinFails *prometheus.Desc
	certExpiry, reloads, reloadErr *prometheus.Desc
}

func newOpsMetrics(n *Node) *opsMetrics {
	return &opsMetrics{
		n:         n,
		build:     BuildInfo(),
		buildInfo: prometheus.NewDesc("fedrec_build_info", "Always 1; the labels say which build of fedrec this node runs.", []string{"version", "revision", "goversion"}, nil),
		insecure:  prometheus.NewDesc("fedrec_devices_unauthenticated", "1 if this node serves devices without authenticating them (started with --insecure-devices and no device CA), else 0.", nil, nil),
		joinFails: prometheus.NewDesc("fedrec_join_failures_total", "Attempts of this node to join a cluster (--join) that failed.", nil, nil),
		certExpiry: prometheus.NewDesc("fedrec_cert_expiry_timestamp_seconds",
			"When a certificate the node uses expires, in Unix seconds: cert=node (its own), ca (the cluster CA), device-ca (the device CA); the earliest of a file holding several.", []string{"cert"}, nil),
		reloads:   prometheus.NewDesc("fedrec_cert_reloads_total", "Reloads of the node's certificates (changed files or SIGHUP) that took effect.", nil, nil),
		reloadErr: prometheus.NewDesc("fedrec_cert_reload_failures_total", "Reloads of the node's certificates that failed: the node kept the previous ones.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *opsMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.buildInfo
	ch <- m.insecure
	ch <- m.joinFails
	ch <- m.certExpiry
	ch <- m.reloads
	ch <- m.reloadErr
}

// insecureDevices reports whether the node serves devices without
// authenticating them: it has a client server and no device CA.
func (n *Node) insecureDevices() bool { return n.devices.Insecure() }

// Collect implements prometheus.Collector.
func (m *opsMetrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(m.buildInfo, prometheus.GaugeValue, 1, m.build.Version, m.build.Revision, m.build.GoVersion)
	insecure := 0.0
	if m.n.insecureDevices() {
		insecure = 1
	}
	ch <- prometheus.MustNewConstMetric(m.insecure, prometheus.GaugeValue, insecure)
	ch <- prometheus.MustNewConstMetric(m.joinFails, prometheus.CounterValue, float64(m.n.joinFailures.Load()))
	node, ca, dev := m.n.certs.expiry()
	for _, c := range []struct {
		label string
		t     time.Time
	}{{"node", node}, {"ca", ca}, {"device-ca", dev}} {
		if !c.t.IsZero() {
			ch <- prometheus.MustNewConstMetric(m.certExpiry, prometheus.GaugeValue, float64(c.t.Unix()), c.label)
		}
	}
	ch <- prometheus.MustNewConstMetric(m.reloads, prometheus.CounterValue, float64(m.n.certs.reloads.Load()))
	ch <- prometheus.MustNewConstMetric(m.reloadErr, prometheus.CounterValue, float64(m.n.certs.fails.Load()))
}
