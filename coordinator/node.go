package coordinator

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/fedrec/fedrec/coordinator/adminapi"
	"github.com/fedrec/fedrec/coordinator/deviceapi"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// ErrNotLeader is returned by leader-only operations on a follower.
var ErrNotLeader = store.ErrNotLeader

// ErrDataDirInUse is returned by New when another process holds the data
// directory's log.
var ErrDataDirInUse = errors.New("data directory in use")

// logCacheEntries is how many recent log entries a node keeps in memory
// besides raft.db (a round commits two or three, one a whole model; each
// cached entry pins its memory until four more are stored).
const logCacheEntries = 4

// nodeIDFile, in the data directory, names the node whose state it holds.
const nodeIDFile = "node-id"

// claimDataDir refuses a data directory that holds another node's state
// (started with another Config.ID, it would join Raft under the wrong
// name), and records id in one that names none yet.
func claimDataDir(dir, id string) error {
	path := filepath.Join(dir, nodeIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil && strings.TrimSpace(string(b)) != id:
		return fmt.Errorf("coordinator: data directory %s holds the state of node %q, not %q: start it with --id %s, or give node %s an empty data directory",
			dir, strings.TrimSpace(string(b)), id, strings.TrimSpace(string(b)), id)
	case err == nil:
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	return os.WriteFile(path, []byte(id+"\n"), 0o600)
}

// Config configures a node. Zero fields mean the documented defaults.
type Config struct {
	// ID names the node in the cluster; required and stable across
	// restarts.
	ID string
	// DataDir holds the Raft log (raft.db) and snapshots. Required unless
	// InMemory.
	DataDir string
	// RaftAddr is the TCP address Raft listens on (mutual TLS). Ignored
	// when Transport is set.
	RaftAddr string
	// AdvertiseRaftAddr is the Raft address other nodes dial, such as a
	// DNS name that outlives the IP address behind it (a Kubernetes pod's);
	// default: the address RaftAddr listens on.
	AdvertiseRaftAddr string
	// ClientAddr is the UDP address of the QUIC client protocol; empty
	// means no QUIC server (tests call Handle directly).
	ClientAddr string
	// AdvertiseClientAddr is the client address other nodes hand out in
	// leader hints; default: the address ClientAddr listens on.
	AdvertiseClientAddr string
	// WebTransportAddr is the UDP address of the client protocol over
	// HTTP/3 and WebTransport, for browsers; empty means none. Devices
	// authenticate there with a device token (TLS.TokenKeys verify it)
	// rather than a certificate.
	WebTransportAddr string
	// WebTransportCert, if set, is the certificate the WebTransport
	// listener presents instead of the node's: one of a public CA for
	// browsers, or (development) a self-signed ECDSA certificate valid
	// for less than 14 days that pages pin by its hash
	// (serverCertificateHashes).
	WebTransportCert *tls.Certificate
	// TLS holds the node's certificate and the cluster CA. Required for
	// the Raft TLS transport and the QUIC server. A bundle that pki.Load
	// read from files is reloaded when they change (CertReloadInterval)
	// and on Node.ReloadCerts.
	TLS *pki.Bundle
	// CertReloadInterval is how often the node compares its certificate
	// files' contents with those it loaded (default
	// DefaultCertReloadInterval; negative: never, only ReloadCerts). A
	// change is loaded once it has stayed the same for one interval.
	CertReloadInterval time.Duration
	// AdminAddr is the TCP address of the admin API (HTTPS with the
	// node's certificate: health, readiness, metrics, status, rounds,
	// models); empty means off.
	AdminAddr string
	// AdminToken is the operator token every admin call but /healthz and
	// /readyz requires (Authorization: Bearer); required with AdminAddr.
	AdminToken string
	// ReadToken, if set, is a second token that admits only the admin
	// API's reads (metrics, status, rounds, model, cluster): for
	// monitoring, which should not be able to change membership or take
	// a backup of the privacy ledger. It must differ from AdminToken.
	ReadToken string
	// Bootstrap makes this node found a new cluster (a no-op if it has
	// Raft state already). Training is replicated from the founder.
	Bootstrap bool
	// Training is the configuration the founding node commits; zero
	// fields take the defaults (Items is required).
	Training Training
	// Join lists client addresses of existing nodes to ask for membership
	// when the node has no Raft state.
	Join []string

	// ReadyLag is how many entries the leader committed a ready node may
	// not have applied yet (Node.Ready); 0: none.
	ReadyLag uint64

	// Raft timing; zero means hashicorp/raft's defaults (1 s heartbeat and
	// election timeouts, 500 ms leader lease).
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// Transport replaces the TLS transport (tests use raft.InmemTransport).
	Transport raft.Transport
	// InMemory keeps the log, stable store and snapshots in memory (tests).
	InMemory bool
	// WrapLogStore, a test and operations hook, wraps the Raft log store
	// (raft.db, or the in-memory store): fault tests put a disk that
	// fails or fills between Raft and its log.
	WrapLogStore func(raft.LogStore) raft.LogStore
	// SnapshotThreshold is how many new log entries trigger a snapshot
	// (default 32); TrailingLogs is how many entries a snapshot leaves in
	// the log (default 64). A follower further behind than TrailingLogs
	// catches up by installing the leader's snapshot.
	SnapshotThreshold, TrailingLogs uint64
	// SnapshotInterval is how often the node checks SnapshotThreshold
	// (default 10 s, jittered up to twice that by Raft); a test whose
	// rounds take milliseconds shortens it so that its in-memory log
	// does not hold hundreds of models between checks.
	SnapshotInterval time.Duration
	// MaxUploads bounds the uploads read and decoded at once (each holds
	// about three times the model's size); default 32.
	MaxUploads int
	// MemoryBudget bounds the bytes of device traffic the node holds at
	// once, over all connections: every request reserves, from its
	// header and before its body is read, what its body and decoded
	// message may take (4 bytes a body byte for uploads, 14 for the
	// others, and 4 KiB), and waits (at most wire.ReadTimeout, then
	// CodeUnavailable) while the budget is spent. A request that alone
	// needs more is refused (CodeTooLarge). Default DefaultMemoryBudget
	// (1 GiB); docs/security.md has the worst case.
	MemoryBudget int64
	// MaxUploadsPerDevice bounds the uploads (and masked inputs) one
	// device certificate has read at once; one more is refused
	// (CodeUnavailable). Default DefaultMaxUploadsPerDevice (2).
	MaxUploadsPerDevice int
	// MaxDeviceMemory bounds the bytes of MemoryBudget one device
	// certificate reserves at once; a request that would take it over
	// is refused at once (CodeUnavailable). It is raised to one upload
	// of the model and 1 MiB when that is more. Default
	// DefaultMaxDeviceMemory (32 MiB).
	MaxDeviceMemory int64
	// MinUploadRate, in bytes per second, and RateGrace bound how long a
	// request's bytes may take: its header must arrive within RateGrace
	// of its stream, its n-byte body within RateGrace + n/MinUploadRate,
	// each byte in time for that pace; a slower sender is cut off
	// (CodeTooSlow). Defaults DefaultMinUploadRate (16 KiB/s) and
	// DefaultRateGrace (10 s).
	MinUploadRate int64
	RateGrace     time.Duration
	// DeviceRequestRate (requests a second) and DeviceRequestBurst bound
	// the requests one device certificate sends: a token bucket of
	// DeviceRequestBurst refilled at DeviceRequestRate; a request beyond
	// it is refused from its header (CodeUnavailable, with RetryAfterMs
	// the time until its next token). Defaults DefaultDeviceRequestRate
	// (20) and DefaultDeviceRequestBurst (100).
	DeviceRequestRate  float64
	DeviceRequestBurst int
	// MaxConns bounds the client protocol's connections and handshakes
	// in flight (default wire.DefaultMaxConns); an eighth of it may be
	// peers without a valid certificate when devices must authenticate.
	MaxConns int
	// PaceMin and PaceMax bound the retry time the leader gives a device
	// it did not select (pace steering, pace.go): about the time the
	// cluster takes to select every device once, the estimated population
	// times the round period over the cohort size, jittered by ±50 %.
	// Defaults 0 and DefaultPaceMax (10 min).
	PaceMin, PaceMax time.Duration
	// Seed seeds the leader's cohort sampling and retry times; 0 draws a
	// random seed.
	Seed uint64
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger

	// call, set by in-package tests of in-memory clusters (no QUIC),
	// replaces the channel between nodes.
	call func(ctx context.Context, addr string, req wire.Message) (wire.Message, error)

	// onPhase, set by in-package fault tests, is called on the leader's
	// round goroutine, outside every lock, as a round enters a phase; it
	// may block to hold the round there.
	onPhase func(round uint64, p phase)
}

func (c *Config) validate() error {
	switch {
	case c.ID == "" || len(c.ID) > wire.MaxIDLen:
		return fmt.Errorf("coordinator: Config.ID = %q, want 1..%d bytes", c.ID, wire.MaxIDLen)
	case !c.InMemory && c.DataDir == "":
		return errors.New("coordinator: Config.DataDir is required")
	case c.Transport == nil && c.RaftAddr == "":
		return errors.New("coordinator: Config.RaftAddr is required")
	case (c.Transport == nil || c.ClientAddr != "" || c.WebTransportAddr != "") && c.TLS == nil:
		return errors.New("coordinator: Config.TLS is required for the network transports")
	case c.AdminAddr != "" && (c.TLS == nil || c.AdminToken == ""):
		return errors.New("coordinator: Config.AdminAddr needs Config.TLS and Config.AdminToken")
	case c.ReadToken != "" && c.ReadToken == c.AdminToken:
		return errors.New("coordinator: Config.ReadToken must differ from Config.AdminToken")
	case c.Bootstrap && len(c.Join) > 0:
		return errors.New("coordinator: Config.Bootstrap and Config.Join exclude each other")
	case c.MemoryBudget < 0:
		return fmt.Errorf("coordinator: Config.MemoryBudget = %d, want >= 0 (0: default)", c.MemoryBudget)
	case c.MaxDeviceMemory < 0:
		return fmt.Errorf("coordinator: Config.MaxDeviceMemory = %d, want >= 0 (0: default)", c.MaxDeviceMemory)
	case c.MaxUploadsPerDevice < 0:
		return fmt.Errorf("coordinator: Config.MaxUploadsPerDevice = %d, want >= 0 (0: default)", c.MaxUploadsPerDevice)
	case c.MinUploadRate < 0:
		return fmt.Errorf("coordinator: Config.MinUploadRate = %d, want >= 0 (0: default)", c.MinUploadRate)
	case c.RateGrace < 0:
		return fmt.Errorf("coordinator: Config.RateGrace = %v, want >= 0 (0: default)", c.RateGrace)
	case c.DeviceRequestRate < 0 || math.IsNaN(c.DeviceRequestRate) || math.IsInf(c.DeviceRequestRate, 0):
		return fmt.Errorf("coordinator: Config.DeviceRequestRate = %v, want >= 0 requests a second (0: default)", c.DeviceRequestRate)
	case c.DeviceRequestBurst < 0:
		return fmt.Errorf("coordinator: Config.DeviceRequestBurst = %d, want >= 0 (0: default)", c.DeviceRequestBurst)
	case c.PaceMin < 0:
		return fmt.Errorf("coordinator: Config.PaceMin = %v, want >= 0", c.PaceMin)
	case c.PaceMax < 0 || (c.PaceMax > 0 && c.PaceMax < c.PaceMin):
		return fmt.Errorf("coordinator: Config.PaceMax = %v, want >= Config.PaceMin (%v) (0: default)", c.PaceMax, c.PaceMin)
	}
	if c.Bootstrap {
		if err := c.Training.WithDefaults().Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Node is a coordinator node. Create it with New and stop it with Close.
type Node struct {
	cfg   Config
	log   *slog.Logger
	fsm   *store.FSM
	raft  *raft.Raft
	trans raft.Transport
	tap   *commitTap     // trans, noting the leader's commit index
	close []func() error // closed in reverse order by Close

	devices    *deviceapi.Server // the device-facing server; it listens when configured
	wtAddr     string            // the WebTransport listener's address, "" without one
	clientAddr string
	admin      *adminapi.Server // nil when the admin API is off
	metrics    *metrics         // kept up to date by observedFSM

	lead   atomic.Pointer[leader] // non-nil while this node runs rounds
	lobby  *lobby                 // this node's devices waiting for a round
	part   atomic.Pointer[round]  // this node's part of the current round, or the last one
	parts  atomic.Int64           // parts of rounds running (Drain waits for them)
	caller nodeCaller             // the channel to the other nodes
	certs  *certStore             // the current TLS bundle (nil inside when Config.TLS is)

	framesMu sync.Mutex
	frames   map[uint64]encodedModel // encoded model versions, for downloads
	rng      *rand.Rand
	rngMu    sync.Mutex
	ctx      context.Context
	cancel   context.CancelFunc
	// leaderTerm ends when Raft's leader changes (watchLeader): a call to
	// the leader made under it is not left waiting on a dead one.
	leaderMu   sync.Mutex
	leaderTerm context.Context
	leaderEnd  context.CancelFunc
	wg         sync.WaitGroup
	closing    atomic.Bool
	// joinFailures counts failed join attempts (fedrec_join_failures_total).
	joinFailures atomic.Uint64
	crashed      atomic.Bool // tests: Close without a leadership transfer
	// secAggLie, set by tests before the round, lets the leader lie in
	// secure rounds: it may alter each ConsistencyRequest and
	// UnmaskRequest (m) before it is sent to client `to`.
	secAggLie func(to uint32, m any)
}

// New starts a node: opens its stores, starts Raft (bootstrapping or
// joining as configured) and the QUIC server.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Bootstrap {
		cfg.Training = cfg.Training.WithDefaults()
	}
	if cfg.MaxUploads <= 0 {
		cfg.MaxUploads = 32
	}
	if cfg.MemoryBudget == 0 {
		cfg.MemoryBudget = DefaultMemoryBudget
	}
	if cfg.MaxDeviceMemory == 0 {
		cfg.MaxDeviceMemory = DefaultMaxDeviceMemory
	}
	if cfg.MaxUploadsPerDevice == 0 {
		cfg.MaxUploadsPerDevice = DefaultMaxUploadsPerDevice
	}
	if cfg.MinUploadRate == 0 {
		cfg.MinUploadRate = DefaultMinUploadRate
	}
	if cfg.RateGrace == 0 {
		cfg.RateGrace = DefaultRateGrace
	}
	if cfg.DeviceRequestRate == 0 {
		cfg.DeviceRequestRate = DefaultDeviceRequestRate
	}
	if cfg.DeviceRequestBurst == 0 {
		cfg.DeviceRequestBurst = DefaultDeviceRequestBurst
	}
	if cfg.PaceMax == 0 {
		cfg.PaceMax = max(DefaultPaceMax, cfg.PaceMin)
	}
	seed := cfg.Seed
	if seed == 0 {
		var b [8]byte
		crand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), fsm: store.NewFSM(), rng: rand.New(rand.NewPCG(seed, 0x5e1ec7)), ctx: ctx, cancel: cancel}
	n.leaderTerm, n.leaderEnd = context.WithCancel(ctx)
	n.metrics = newMetrics(n)
	n.certs = newCertStore(cfg.TLS, n.log)
	n.devices = deviceapi.New(n, deviceapi.Config{
		MaxConns: cfg.MaxConns, MemoryBudget: cfg.MemoryBudget, MaxUploads: cfg.MaxUploads,
		MaxUploadsPerDevice: cfg.MaxUploadsPerDevice, MaxDeviceMemory: cfg.MaxDeviceMemory,
		DeviceRequestRate: cfg.DeviceRequestRate, DeviceRequestBurst: cfg.DeviceRequestBurst,
		MinUploadRate: cfg.MinUploadRate, RateGrace: cfg.RateGrace, WebTransportCert: cfg.WebTransportCert,
		Certs: n.certs, Logger: n.log,
		Metrics: deviceapi.Metrics{Refused: n.metrics.refused, Delayed: n.metrics.delayed, Slow: n.metrics.slow, Connected: n.metrics.connected},
	})
	n.lobby = newLobby(n)
	started := false
	defer func() {
		if !started {
			n.Close()
		}
	}()

	hlog := newHCLog(n.log, "raft")
	var logs raft.LogStore
	var stable raft.StableStore
	var snaps raft.SnapshotStore
	if cfg.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, err
		}
		db, err := store.OpenBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("coordinator: data directory %s is in use by another process (its raft.db is locked): %w", cfg.DataDir, ErrDataDirInUse)
		}
		if err != nil {
			return nil, fmt.Errorf("coordinator: open log: %w", err)
		}
		n.close = append(n.close, db.Close)
		if err := claimDataDir(cfg.DataDir, cfg.ID); err != nil {
			return nil, err
		}
		// The leader sends each entry to its followers right after storing
		// it: a small cache saves reading whole models back from bbolt.
		cache, err := raft.NewLogCache(logCacheEntries, db)
		if err != nil {
			return nil, err
		}
		logs, stable = cache, db
		if snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog.Named("snapshots")); err != nil {
			return nil, fmt.Errorf("coordinator: open snapshots: %w", err)
		}
	}

	if cfg.WrapLogStore != nil {
		logs = cfg.WrapLogStore(logs)
	}

	n.trans = cfg.Transport
	if n.trans == nil {
		sl, err := newTLSStreamLayer(cfg.RaftAddr, n.certs)
		if err != nil {
			return nil, fmt.Errorf("coordinator: raft listen: %w", err)
		}
		if cfg.AdvertiseRaftAddr != "" {
			sl.advertise = advertiseAddr(cfg.AdvertiseRaftAddr)
		}
		nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: sl, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog.Named("transport")})
		n.close = append(n.close, nt.Close)
		n.trans = nt
	}

	n.tap = newCommitTap(n.trans)
	n.trans = n.tap
	n.close = append(n.close, n.tap.Close)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	// Commits carry whole models: snapshot often and keep a short log.
	rc.SnapshotThreshold = 32
	rc.SnapshotInterval = 10 * time.Second
	rc.TrailingLogs = 64
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	// Followers learn that an entry committed from the leader's next
	// AppendEntries, at the latest after CommitTimeout (raft's default
	// 50 ms, randomized up to twice that): every node starts its part of a
	// round when it applies the manifest, so this lag is in every round.
	rc.CommitTimeout = min(10*time.Millisecond, rc.HeartbeatTimeout/2)
	notify := make(chan bool, 8)
	rc.NotifyCh = notify

	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, err
	}
	if n.raft, err = store.NewRaft(rc, observedFSM{n.fsm, n.metrics}, logs, stable, snaps, n.trans); err != nil {
		return nil, fmt.Errorf("coordinator: start raft: %w", err)
	}
	if cfg.Bootstrap && !existing {
		conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: n.trans.LocalAddr()}}}
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("coordinator: bootstrap: %w", err)
		}
	}

	if cfg.ClientAddr != "" {
		addr, err := n.devices.Listen(cfg.ClientAddr)
		if err != nil {
			return nil, fmt.Errorf("coordinator: client listen: %w", err)
		}
		n.clientAddr = addr.String()
		if cfg.AdvertiseClientAddr != "" {
			n.clientAddr = cfg.AdvertiseClientAddr
		}
	} else {
		n.clientAddr = cfg.AdvertiseClientAddr
	}
	if cfg.WebTransportAddr != "" {
		addr, err := n.devices.ListenWebTransport(cfg.WebTransportAddr)
		if err != nil {
			return nil, fmt.Errorf("coordinator: webtransport listen: %w", err)
		}
		n.wtAddr = addr.String()
	}

	if cfg.AdminAddr != "" {
		if err := n.startAdmin(); err != nil {
			return nil, err
		}
	}

	switch {
	case cfg.call != nil:
		n.caller = funcCaller(cfg.call)
	case n.certs.Bundle() != nil: // dialing other nodes needs a node certificate, not a listener
		qc := &quicCaller{n: n}
		n.caller = qc
		n.close = append(n.close, qc.close)
	}
	// Everything a request reads is set: devices and nodes may connect.
	n.devices.Start()
	n.wg.Add(4)
	go func() {
		defer n.wg.Done()
		n.watchLeadership(notify)
	}()
	leaderChanges := make(chan raft.Observation, 4)
	observer := raft.NewObserver(leaderChanges, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(observer)
	go func() {
		defer n.wg.Done()
		defer n.raft.DeregisterObserver(observer)
		n.watchLeader(leaderChanges)
	}()
	go func() {
		defer n.wg.Done()
		n.followRounds()
	}()
	go func() {
		defer n.wg.Done()
		n.reportLobby()
	}()
	if every := cmp.Or(cfg.CertReloadInterval, DefaultCertReloadInterval); every > 0 && n.certs.fromFiles() {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.watchCerts(every)
		}()
	}
	if len(cfg.Join) > 0 && !existing {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.joinLoop()
		}()
	}
	n.log.Info("node started", "raft_addr", n.trans.LocalAddr(), "client_addr", n.clientAddr, "existing_state", existing)
	started = true
	return n, nil
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// RaftAddr returns the address Raft peers dial.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// ClientAddr returns the node's advertised client (QUIC) address.
func (n *Node) ClientAddr() string { return n.clientAddr }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's node id and client address, empty when
// unknown.
func (n *Node) Leader() (id, clientAddr string) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	n.fsm.Read(func(s *State) { clientAddr = s.NodeAddr(string(lid)) })
	return string(lid), clientAddr
}

// WaitForLeader waits until the cluster has a leader and returns its id.
func (n *Node) WaitForLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if _, id := n.raft.LeaderWithID(); id != "" {
			return string(id), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

// View calls fn with the node's replicated state, read-locked. fn must not
// keep or modify anything it reaches.
func (n *Node) View(fn func(s *State)) { n.fsm.Read(fn) }

// StateDigest returns the digest of the node's replicated state (see
// State.Digest) and the Raft index last applied to it.
func (n *Node) StateDigest() (d [sha256.Size]byte, applied uint64) {
	n.fsm.Read(func(s *State) {
		d = s.Digest()
		applied = n.raft.AppliedIndex()
	})
	return d, applied
}

// WaitFor waits until cond holds on the node's state.
func (n *Node) WaitFor(ctx context.Context, cond func(s *State) bool) error {
	for {
		ch := n.fsm.Watch()
		var ok bool
		n.fsm.Read(func(s *State) { ok = cond(s) })
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Join adds a node to the cluster as a voter and records its client
// address and its admin API address ("" keeps the one recorded, if any).
// It must run on the leader (else ErrNotLeader) and is idempotent: joining
// again with the same addresses changes nothing, and joining with a new
// Raft address replaces the old one.
func (n *Node) Join(id, raftAddr, clientAddr, adminAddr string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	member := false
	for _, s := range cf.Configuration().Servers {
		if s.ID == raft.ServerID(id) && s.Address == raft.ServerAddress(raftAddr) {
			member = true
		} else if s.ID == raft.ServerID(id) || s.Address == raft.ServerAddress(raftAddr) {
			if err := n.raft.RemoveServer(s.ID, 0, 10*time.Second).Error(); err != nil {
				return fmt.Errorf("remove stale %s: %w", s.ID, err)
			}
		}
	}
	if !member {
		if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, 10*time.Second).Error(); err != nil {
			return fmt.Errorf("add voter %s: %w", id, err)
		}
	}
	var have, haveAdmin string
	n.fsm.Read(func(s *State) { have, haveAdmin = s.NodeAddr(id), s.AdminAddr(id) })
	if have != clientAddr || (adminAddr != "" && haveAdmin != adminAddr) {
		if _, err := n.apply(&wire.RegisterNode{ID: id, ClientAddr: clientAddr, AdminAddr: adminAddr}); err != nil {
			return err
		}
	}
	n.log.Info("node joined", "peer", id, "raft_addr", raftAddr, "client_addr", clientAddr, "admin_addr", adminAddr)
	return nil
}

// apply commits a command and returns its result; a business rejection is
// returned as the error.
func (n *Node) apply(c wire.Command) (any, error) {
	b, err := wire.EncodeCommand(c)
	if err != nil {
		return nil, err
	}
	f := n.raft.Apply(b, 10*time.Second)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, err
	}
	if err, ok := f.Response().(error); ok {
		return nil, err
	}
	return f.Response(), nil
}

// Close stops the node: it hands leadership to another voter if it leads,
// stops serving, shuts Raft down and closes its stores. It waits for every
// goroutine the node started.
func (n *Node) Close() error {
	if !n.closing.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	if n.raft != nil && n.IsLeader() && !n.crashed.Load() {
		if len(n.raft.GetConfiguration().Configuration().Servers) > 1 {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer failed", "err", err)
			} else {
				n.log.Info("leadership transferred")
			}
		}
	}
	n.cancel()
	n.lobby.close()
	if n.admin != nil {
		errs = append(errs, n.admin.Close())
	}
	errs = append(errs, n.devices.Close())
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	n.wg.Wait()
	n.devices.Wait()
	for i := len(n.close) - 1; i >= 0; i-- {
		errs = append(errs, n.close[i]())
	}
	if c, ok := n.cfg.Transport.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// watchLeadership runs the leader's loop while this node leads. Raft blocks
// on NotifyCh, so this never waits for a loop to end: each new loop waits
// for its predecessor instead.
func (n *Node) watchLeadership(notify <-chan bool) {
	var cancel context.CancelFunc = func() {}
	prev := make(chan struct{})
	close(prev)
	for {
		select {
		case <-n.ctx.Done():
			cancel()
			<-prev
			return
		case isLeader := <-notify:
			cancel()
			if !isLeader {
				continue
			}
			var ctx context.Context
			ctx, cancel = context.WithCancel(n.ctx)
			done := make(chan struct{})
			wait := prev
			prev = done
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				defer close(done)
				<-wait
				n.lead1(ctx)
			}()
		}
	}
}

// lead1 runs one term of leadership.
func (n *Node) lead1(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	n.log.Info("leading")
	l := newLeader(n)
	n.lead.Store(l)
	defer func() {
		n.lead.Store(nil)
		l.stop()
		n.log.Info("no longer leading")
	}()
	// A leader that stops trying here would stay Raft's leader without
	// running rounds until the next election, which may never come: retry
	// for as long as this term lasts.
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		err := n.raft.Barrier(10 * time.Second).Error()
		if err == nil {
			err = n.prepare()
		}
		if err == nil {
			break
		}
		n.log.Warn("cannot run rounds yet, retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	l.run(ctx)
}

// advertisedAdmin is the admin API address this node registers for the
// others (operators' commands given one node find the rest with it): the
// address it listens on, with the advertised client address's host when
// it listens on all interfaces; "" without an admin API.
func (n *Node) advertisedAdmin() string {
	a := n.AdminAddr()
	if a == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(a)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsUnspecified() {
		if chost, _, err := net.SplitHostPort(n.clientAddr); err == nil && chost != "" {
			return net.JoinHostPort(chost, port)
		}
	}
	return a
}

// prepare registers this node's client address, founds the training
// configuration and initial model if this node bootstraps, and abandons a
// round a previous leader left open.
func (n *Node) prepare() error {
	var have, haveAdmin string
	var cfgSet, hasModel bool
	var open *OpenRound
	admin := n.advertisedAdmin()
	n.fsm.Read(func(s *State) {
		have, haveAdmin = s.NodeAddr(n.cfg.ID), s.AdminAddr(n.cfg.ID)
		_, cfgSet = s.Config()
		hasModel = s.Current() != nil
		open = s.Open()
	})
	if (have != n.clientAddr || haveAdmin != admin) && n.clientAddr != "" {
		if _, err := n.apply(&wire.RegisterNode{ID: n.cfg.ID, ClientAddr: n.clientAddr, AdminAddr: admin}); err != nil {
			return err
		}
	}
	if !cfgSet {
		if !n.cfg.Bootstrap {
			return errors.New("no training configuration (only the bootstrapping node sets it)")
		}
		if _, err := n.apply(&wire.SetConfig{Config: n.cfg.Training.ToWire()}); err != nil {
			return err
		}
	}
	if !hasModel {
		var t Training
		n.fsm.Read(func(s *State) { t, _ = s.Config() })
		m, err := model.New(t.Kind, t.Items, t.Rank, t.Mean, t.InitStd, rand.New(rand.NewPCG(t.Seed, 0x30de1)))
		if err != nil {
			return err
		}
		d := wire.Digest(m)
		if _, err := n.apply(&wire.InitModel{Kind: wire.KindOf(m.Kind), Items: m.Items, Rank: m.Rank, Params: m.Params, Digest: d[:]}); err != nil {
			return err
		}
	}
	if open != nil {
		n.log.Info("abandoning the previous leader's round", "round", open.Round)
		if _, err := n.apply(&wire.AbandonRound{Round: open.Round, Reason: "leader change"}); err != nil {
			return err
		}
	}
	return nil
}

// joinLoop asks the configured nodes for membership until one answers.
// The first failures are normal while the cluster elects its first leader
// (INFO); from the third round of attempts on the node says so at WARN,
// every tenth round, and fedrec_join_failures_total counts every failure:
// a node that cannot join (another cluster CA, a wrong address) retries
// for ever and serves nothing.
func (n *Node) joinLoop() {
	req := &wire.Join{Version: wire.Version, ID: n.cfg.ID, RaftAddr: n.RaftAddr(), ClientAddr: n.clientAddr, AdminAddr: n.advertisedAdmin()}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		for _, addr := range n.cfg.Join {
			target := addr
			for hop := 0; hop < 3 && target != ""; hop++ {
				err := n.sendJoin(target, req)
				if err == nil {
					n.log.Info("joined the cluster", "via", target)
					return
				}
				n.joinFailures.Add(1)
				target = ""
				if we := (*wire.Error)(nil); errors.As(err, &we) && we.Code == wire.CodeNotLeader {
					target = we.Leader
				}
				switch {
				case attempt < 2:
					n.log.Info("join attempt failed", "via", addr, "attempt", attempt+1, "err", err)
				case attempt == 2 || attempt%10 == 0:
					n.log.Warn("join failing", "via", addr, "attempt", attempt+1, "failures", n.joinFailures.Load(), "err", err)
				}
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (n *Node) sendJoin(addr string, req *wire.Join) error {
	ctx, cancel := context.WithTimeout(n.ctx, 15*time.Second)
	defer cancel()
	m, err := n.callNode(ctx, addr, req)
	if err != nil {
		return err
	}
	if _, ok := m.(*wire.JoinAck); !ok {
		return fmt.Errorf("unexpected %s", m.Type())
	}
	return nil
}

// enter records that the leader's round entered phase p: a debug log line
// (fault tests watch for it) and the in-package test hook.
func (n *Node) enter(round uint64, p phase) {
	n.log.Debug("round phase", "round", round, "phase", p.String())
	if n.cfg.onPhase != nil {
		n.cfg.onPhase(round, p)
	}
}

// newRand returns a source seeded from the node's (stream tells uses
// apart).
func (n *Node) newRand(stream uint64) *rand.Rand {
	n.rngMu.Lock()
	defer n.rngMu.Unlock()
	return rand.New(rand.NewPCG(n.rng.Uint64(), stream))
}

// shuffle permutes with the node's seeded source (cohort sampling).
func (n *Node) shuffle(k int, swap func(i, j int)) {
	n.rngMu.Lock()
	defer n.rngMu.Unlock()
	n.rng.Shuffle(k, swap)
}
