package coordinator

import (
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/coordinator/store"
)

// DefaultDelta is the δ at which the admin API and the metrics report the
// privacy spent, ε(δ), until the training configuration carries its own.
const DefaultDelta = 1e-5

// metrics are a node's Prometheus metrics. The round figures are derived
// from the replicated state as this node applies it (observedFSM), so every
// node reports the cluster's history and a restarted node starts from the
// history it restores; round durations use the leader's append times of
// the entries. Raft, model and privacy figures are read at scrape time.
type metrics struct {
	n *Node

	started, committed, abandoned prometheus.Counter
	cohort, survivors             prometheus.Counter
	lastCohort, lastSurvivors     prometheus.Gauge
	duration                      *prometheus.HistogramVec
	// phases times the leader's round phases (round.advance).
	phases *prometheus.HistogramVec

	snapSize, snapPersist      prometheus.Histogram
	snapLast                   prometheus.Gauge
	snapFailures, snapRestores prometheus.Counter
	// Admission of device traffic (deviceapi/admission.go).
	memory, memoryBudget prometheus.GaugeFunc
	delayed, slow        prometheus.Counter
	refused              *prometheus.CounterVec
	snapRestoreFailures  prometheus.Counter
	// Pace steering (pace.go), set by each node at each selection.
	paceRetry prometheus.Histogram
	// uploads counts the device updates this node counted in its parts of
	// rounds: its share of the cluster's device traffic.
	uploads                    prometheus.Counter
	pacePopulation, pacePeriod prometheus.Gauge

	raftState, raftTerm, raftCommit, raftApplied, raftLastContact, raftPeers *prometheus.Desc
	modelVersion, roundOpen, epsilon, delta                                  *prometheus.Desc
	conns, bytesIn, bytesOut, waiting                                        *prometheus.Desc

	// cmu guards the client connections: the live ones, whose byte counts
	// are read at scrape time, and the totals of those that closed.
	cmu                 sync.Mutex
	live                map[*quic.Conn]struct{}
	closedIn, closedOut uint64

	// pmu guards the accountant, apart from mu so that an apply never
	// waits for ε to be computed.
	pmu     sync.Mutex
	acct    *privacy.Accountant
	acctN   int     // ledger entries in acct
	acctEnd uint64  // round of the last of them
	eps     float64 // ε spent at DefaultDelta; NaN if the ledger cannot be accounted

	mu     sync.Mutex // guards the fields below (update)
	rounds int        // records of the history counted
	last   uint64     // LastRound counted
	open   uint64     // the open round, 0 if none
	openAt time.Time  // when the leader appended its OpenRound; zero if unknown
}

func newMetrics(n *Node) *metrics {
	m := defineMetrics(n)
	// Every series exists from the start, so that dashboards and alerts
	// see zeros rather than nothing.
	for _, o := range []string{"committed", "abandoned"} {
		m.duration.WithLabelValues(o)
	}
	for _, r := range []string{"busy", "device_uploads", "device_memory", "device_rate", "too_large"} {
		m.refused.WithLabelValues(r)
	}
	for _, p := range []phase{phaseGathering, phaseSelected, phaseCollecting, phaseAdvertising, phaseSharing, phaseMasking, phaseChecking, phaseUnmasking, phaseAggregating, phaseCommitting} {
		m.phases.WithLabelValues(phaseLabel(p))
	}
	return m
}

// defineMetrics creates the metrics of n.
func defineMetrics(n *Node) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "fedrec", Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "fedrec", Name: name, Help: help})
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("fedrec_"+name, help, labels, nil)
	}
	return &metrics{
		n:             n,
		started:       counter("rounds_started_total", "Rounds opened (an OpenRound committed), cluster-wide, as applied by this node."),
		committed:     counter("rounds_committed_total", "Rounds that committed a new model version."),
		abandoned:     counter("rounds_abandoned_total", "Rounds abandoned (too few survivors, deadline, leader change)."),
		cohort:        counter("round_cohort_clients_total", "Clients selected into the cohorts of finished rounds."),
		survivors:     counter("round_survivor_clients_total", "Clients whose updates counted in finished rounds."),
		lastCohort:    gauge("last_round_cohort_clients", "Clients selected into the most recently finished round."),
		lastSurvivors: gauge("last_round_survivor_clients", "Clients whose updates counted in the most recently finished round."),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "fedrec", Name: "round_duration_seconds",
			Help: "Time from a round's opening (its manifest appended to the log) to its commit or abandonment, on the leader's clock, by outcome.",
			// From a round on loopback to one that waits out a long
			// upload deadline: 0.25 s … 512 s.
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 12),
		}, []string{"outcome"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "fedrec", Name: "round_phase_duration_seconds",
			Help: "Time the leader's rounds spent in each phase (gathering, selected, collecting, the secure-aggregation phases, aggregating, committing), observed by the leader as a round leaves the phase.",
			// From a commit on loopback to a long upload deadline: 5 ms … 328 s.
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 9),
		}, []string{"phase"}),
		snapSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "fedrec", Name: "snapshot_size_bytes",
			Help:    "Sizes of the Raft snapshots this node wrote.",
			Buckets: prometheus.ExponentialBuckets(4<<10, 4, 10), // 4 KiB … 1 GiB
		}),
		snapPersist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "fedrec", Name: "snapshot_persist_duration_seconds",
			Help:    "Time to write a Raft snapshot of the state.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1 ms … 65 s
		}),
		snapLast:     gauge("snapshot_last_size_bytes", "Size of the last Raft snapshot this node wrote (0 before the first)."),
		snapFailures: counter("snapshot_persist_failures_total", "Raft snapshots that could not be written."),
		snapRestores: counter("snapshot_restores_total", "Raft snapshots restored into this node's state (at start, or sent by the leader)."),
		memory: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "fedrec", Name: "device_memory_bytes",
			Help: "Bytes of the memory budget reserved by device requests being read, decoded or answered (Config.MemoryBudget)."},
			func() float64 { inUse, _ := n.devices.Budget(); return float64(inUse) }),
		memoryBudget: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "fedrec", Name: "device_memory_budget_bytes",
			Help: "The memory budget for device traffic (Config.MemoryBudget)."},
			func() float64 { _, size := n.devices.Budget(); return float64(size) }),
		delayed: counter("admission_delayed_total", "Requests that waited for an upload slot or for the memory budget before their body was read."),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "fedrec", Name: "admission_refused_total",
			Help: "Requests refused before their body was read, by reason: busy (waited too long for an upload slot or the memory budget), device_uploads (the device has MaxUploadsPerDevice uploads in flight), device_memory (the device would hold more than MaxDeviceMemory of the budget), device_rate (the device sent more than DeviceRequestRate requests a second, after DeviceRequestBurst), too_large (needs more than the whole budget)."},
			[]string{"reason"}),
		slow:                counter("slow_senders_total", "Requests cut off because their bytes arrived below the minimum transfer rate (CodeTooSlow)."),
		snapRestoreFailures: counter("snapshot_restore_failures_total", "Raft snapshots that could not be restored."),
		paceRetry: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "fedrec", Name: "pace_retry_seconds",
			Help:    "Retry times the leader gave devices it did not select (pace steering): about the estimated population times the round period over the cohort size, ±50 %, within --pace-min and --pace-max.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 14), // 0.1 s … 819 s
		}),
		uploads:         counter("device_updates_total", "Device updates this node accepted in its parts of rounds (plaintext uploads and secure rounds' masked inputs); every node collects its own devices'."),
		pacePopulation:  gauge("pace_population_devices", "Devices this node counts in the population for pace steering: its devices seen checking in that are not overdue."),
		pacePeriod:      gauge("pace_round_period_seconds", "Moving average of the time between this node's selections of its share of a cohort (0 before the second)."),
		conns:           desc("client_connections", "QUIC connections of the client protocol open on this node (clients, and nodes asking to join)."),
		bytesIn:         desc("client_received_bytes_total", "Bytes received on the client protocol's QUIC connections (QUIC packets, without UDP and IP headers)."),
		bytesOut:        desc("client_sent_bytes_total", "Bytes sent on the client protocol's QUIC connections, retransmissions included (QUIC packets, without UDP and IP headers)."),
		waiting:         desc("round_waiting_clients", "Check-ins this node holds for the next selection (every node holds its own devices')."),
		live:            map[*quic.Conn]struct{}{},
		raftState:       desc("raft_state", "Raft state of this node: 1 for the current state, 0 for the others.", "state"),
		raftTerm:        desc("raft_term", "Current Raft term."),
		raftCommit:      desc("raft_commit_index", "Raft commit index as known to this node."),
		raftApplied:     desc("raft_applied_index", "Raft index last applied to this node's state."),
		raftLastContact: desc("raft_last_contact_seconds", "Seconds since this follower last heard from the leader; 0 on the leader, +Inf if never."),
		raftPeers:       desc("raft_voters", "Voters in the Raft configuration."),
		modelVersion:    desc("model_version", "Version of the newest committed model (1 is the initial model)."),
		roundOpen:       desc("round_open", "1 while a round is open, else 0."),
		epsilon:         desc("privacy_epsilon", "Differential-privacy ε spent by the committed rounds at δ = fedrec_privacy_delta (+Inf after a round without noise)."),
		delta:           desc("privacy_delta", "The δ at which fedrec_privacy_epsilon is reported."),
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.owned() {
		c.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{m.raftState, m.raftTerm, m.raftCommit, m.raftApplied, m.raftLastContact, m.raftPeers, m.modelVersion, m.roundOpen, m.epsilon, m.delta, m.conns, m.bytesIn, m.bytesOut, m.waiting} {
		ch <- d
	}
}

func (m *metrics) owned() []prometheus.Collector {
	return []prometheus.Collector{m.started, m.committed, m.abandoned, m.cohort, m.survivors, m.lastCohort, m.lastSurvivors, m.duration,
		m.phases, m.snapSize, m.snapPersist, m.snapLast, m.snapFailures, m.snapRestores, m.snapRestoreFailures,
		m.memory, m.memoryBudget, m.delayed, m.refused, m.slow, m.paceRetry, m.pacePopulation, m.pacePeriod, m.uploads}
}

var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.owned() {
		c.Collect(ch)
	}
	r := m.n.raft
	st := r.State()
	for _, s := range raftStates {
		v := 0.0
		if s == st {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.raftState, prometheus.GaugeValue, v, lowerState(s))
	}
	ch <- prometheus.MustNewConstMetric(m.raftTerm, prometheus.GaugeValue, float64(r.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(m.raftCommit, prometheus.GaugeValue, float64(r.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(m.raftApplied, prometheus.GaugeValue, float64(r.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(m.raftLastContact, prometheus.GaugeValue, m.n.lastContact().Seconds())
	ch <- prometheus.MustNewConstMetric(m.raftPeers, prometheus.GaugeValue, float64(m.n.voters()))
	var version uint64
	var open float64
	m.n.View(func(s *State) {
		if v := s.Current(); v != nil {
			version = v.Version
		}
		if s.Open() != nil {
			open = 1
		}
	})
	ch <- prometheus.MustNewConstMetric(m.modelVersion, prometheus.GaugeValue, float64(version))
	ch <- prometheus.MustNewConstMetric(m.roundOpen, prometheus.GaugeValue, open)
	eps, delta := m.privacySpent()
	ch <- prometheus.MustNewConstMetric(m.epsilon, prometheus.GaugeValue, eps)
	ch <- prometheus.MustNewConstMetric(m.delta, prometheus.GaugeValue, delta)
	conns, in, out := m.traffic()
	ch <- prometheus.MustNewConstMetric(m.conns, prometheus.GaugeValue, float64(conns))
	ch <- prometheus.MustNewConstMetric(m.bytesIn, prometheus.CounterValue, float64(in))
	ch <- prometheus.MustNewConstMetric(m.bytesOut, prometheus.CounterValue, float64(out))
	waiting, _ := m.n.lobby.count()
	ch <- prometheus.MustNewConstMetric(m.waiting, prometheus.GaugeValue, float64(waiting))
}

// connected counts conn as an open client connection until the function
// it returns is called, when conn's bytes move to the closed totals.
func (m *metrics) connected(conn *quic.Conn) (closed func()) {
	m.cmu.Lock()
	m.live[conn] = struct{}{}
	m.cmu.Unlock()
	return func() {
		s := conn.ConnectionStats()
		m.cmu.Lock()
		defer m.cmu.Unlock()
		delete(m.live, conn)
		m.closedIn += s.BytesReceived
		m.closedOut += s.BytesSent
	}
}

// traffic returns the open connections and the bytes received and sent
// on all connections so far.
func (m *metrics) traffic() (conns int, in, out uint64) {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	in, out = m.closedIn, m.closedOut
	for c := range m.live {
		s := c.ConnectionStats()
		in += s.BytesReceived
		out += s.BytesSent
	}
	return len(m.live), in, out
}

// phaseLabel names a phase as a label value: its name in snake_case.
func phaseLabel(p phase) string { return strings.ReplaceAll(p.String(), " ", "_") }

// observe records the time r spent in its phase as it moves on to another;
// r.mu is held. A round without metrics (tests) records nothing.
func (r *round) observe() {
	now := time.Now()
	if r.m != nil && !r.since.IsZero() {
		r.m.phases.WithLabelValues(phaseLabel(r.phase)).Observe(now.Sub(r.since).Seconds())
	}
	r.since = now
}

// lowerState names a Raft state as a label value.
func lowerState(s raft.RaftState) string {
	switch s {
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Leader:
		return "leader"
	}
	return "shutdown"
}

// privacySpent returns ε at δ for the ledger as applied: the accountant
// takes in the entries added since the last call.
func (m *metrics) privacySpent() (eps, delta float64) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	var ledger []LedgerEntry
	m.n.View(func(s *State) {
		l := s.Ledger()
		if m.acct != nil && m.acctN <= len(l) && (m.acctN == 0 || l[m.acctN-1].Round == m.acctEnd) {
			ledger = slices.Clone(l[m.acctN:])
		} else { // first call, or restored from another state
			m.acct, m.acctN = nil, 0
			ledger = slices.Clone(l)
		}
	})
	if m.acct != nil && len(ledger) == 0 {
		return m.eps, DefaultDelta
	}
	if m.acct == nil {
		a, err := privacy.NewAccountant(privacy.Config{})
		if err != nil {
			panic(err) // the zero Config is valid
		}
		m.acct = a
	}
	for _, e := range ledger {
		// Rounds sample their cohorts at rate q and add Gaussian (central)
		// or Skellam (distributed) noise: see LedgerEntry.Entry.
		if err := m.acct.Add(e.Entry()); err != nil {
			m.n.log.Warn("privacy ledger entry cannot be accounted", "round", e.Round, "err", err)
			m.eps = math.NaN()
			return m.eps, DefaultDelta
		}
		m.acctN++
		m.acctEnd = e.Round
	}
	m.eps, _, _ = m.acct.Epsilon(DefaultDelta) // DefaultDelta is valid
	return m.eps, DefaultDelta
}

// observedFSM is the raft.FSM the node gives Raft: the fsm, with the
// metrics told of every change as it is applied.
type observedFSM struct {
	*store.FSM
	m *metrics
}

func (o observedFSM) Apply(l *raft.Log) any {
	res := o.FSM.Apply(l)
	o.m.update(l.AppendedAt)
	return res
}

func (o observedFSM) Restore(rc io.ReadCloser) error {
	err := o.FSM.Restore(rc)
	if err != nil {
		o.m.snapRestoreFailures.Inc()
	} else {
		o.m.snapRestores.Inc()
	}
	o.m.update(time.Time{})
	return err
}

// Snapshot wraps the fsm's snapshot so that its size, its time to write
// and its failures are counted.
func (o observedFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := o.FSM.Snapshot()
	if err != nil {
		o.m.snapFailures.Inc()
		return nil, err
	}
	return observedSnapshot{s, o.m}, nil
}

type observedSnapshot struct {
	raft.FSMSnapshot
	m *metrics
}

func (o observedSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	cs := &countingSink{SnapshotSink: sink}
	if err := o.FSMSnapshot.Persist(cs); err != nil {
		o.m.snapFailures.Inc()
		return err
	}
	o.m.snapPersist.Observe(time.Since(start).Seconds())
	o.m.snapSize.Observe(float64(cs.n))
	o.m.snapLast.Set(float64(cs.n))
	return nil
}

// countingSink counts the bytes written to a snapshot sink.
type countingSink struct {
	raft.SnapshotSink
	n int64
}

func (c *countingSink) Write(p []byte) (int, error) {
	k, err := c.SnapshotSink.Write(p)
	c.n += int64(k)
	return k, err
}

// update counts what the state gained since the last call. at is when the
// leader appended the entry just applied (raft.Log.AppendedAt, replicated
// with the entry), zero if unknown: a round is timed from its OpenRound's
// to its CommitRound's or AbandonRound's, on the leader's clock, so every
// node observes the same durations.
func (m *metrics) update(at time.Time) {
	var recs []RoundRecord
	var last, open uint64
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n.View(func(s *State) {
		rs := s.Rounds()
		if len(rs) < m.rounds { // restored from an older state: count on from there
			m.rounds = len(rs)
		}
		recs = slices.Clone(rs[m.rounds:])
		m.rounds = len(rs)
		last = s.LastRound()
		if o := s.Open(); o != nil {
			open = o.Round
		}
	})
	if last > m.last {
		m.started.Add(float64(last - m.last))
		m.last = last
	}
	for _, r := range recs {
		outcome := "committed"
		if r.Outcome == Committed {
			m.committed.Inc()
		} else {
			outcome = "abandoned"
			m.abandoned.Inc()
		}
		m.cohort.Add(float64(r.Cohort))
		m.survivors.Add(float64(r.Survivors))
		m.lastCohort.Set(float64(r.Cohort))
		m.lastSurvivors.Set(float64(r.Survivors))
		if r.Round == m.open && !m.openAt.IsZero() && !at.IsZero() {
			m.duration.WithLabelValues(outcome).Observe(max(0, at.Sub(m.openAt).Seconds()))
		}
	}
	if open != m.open {
		m.open, m.openAt = open, at
	}
}
