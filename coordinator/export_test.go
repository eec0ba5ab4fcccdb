package coordinator

import (
	"testing"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// AdmissionStats are a node's admission figures, for coordinator_test.
type AdmissionStats struct {
	InUse, Budget                 int64 // bytes of the memory budget reserved, and its size
	Delayed, Slow                 int   // requests that waited; cut off below the minimum rate
	Busy, DeviceUploads, TooLarge int   // requests refused, by reason
	DeviceMemory                  int   // ... over the device's share of the budget
	DeviceRate                    int   // ... over the device's request rate
	Uploading                     int   // upload slots taken (of MaxUploads)
}

// AdmissionStats returns n's admission figures.
func (n *Node) AdmissionStats() AdmissionStats {
	m := n.metrics
	inUse, size := n.devices.Budget()
	v := func(c prometheus.Collector) int { return int(testutil.ToFloat64(c)) }
	return AdmissionStats{
		InUse: inUse, Budget: size,
		Delayed: v(m.delayed), Slow: v(m.slow),
		Busy: v(m.refused.WithLabelValues("busy")), DeviceUploads: v(m.refused.WithLabelValues("device_uploads")),
		TooLarge:     v(m.refused.WithLabelValues("too_large")),
		DeviceMemory: v(m.refused.WithLabelValues("device_memory")),
		DeviceRate:   v(m.refused.WithLabelValues("device_rate")),
		Uploading:    n.devices.Uploading(),
	}
}

// DeviceMax returns the most bytes of the memory budget one device may
// reserve on n.
func (n *Node) DeviceMax() int64 { return n.devices.DeviceMax() }

// NewInmemCluster starts, for coordinator_test, the package's in-memory
// cluster (newTestClusterWith): size nodes over raft.InmemTransport, all
// voters and holding the initial model; opt adjusts each node's Config.
// It returns the nodes and their transports, in order.
func NewInmemCluster(t *testing.T, size int, tr Training, opt func(i int, cfg *Config)) ([]*Node, []*raft.InmemTransport) {
	t.Helper()
	c := newTestClusterWith(t, size, tr, opt)
	return c.nodes, c.trans
}
