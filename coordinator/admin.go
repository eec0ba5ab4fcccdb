package coordinator

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// The admin API: HTTPS on Config.AdminAddr with the node's certificate.
// Every path but /healthz and /readyz needs the operator token as
// "Authorization: Bearer TOKEN"; the GETs marked (read) also accept the
// read-only token (Config.ReadToken), which gets 403 elsewhere. The JSON
// bodies are wire's (coordinator/wire/admin.go).
//
//	GET /healthz          200 while the process serves
//	GET /readyz           200 when ready (see Node.Ready), else 503 and why
//	GET /metrics          (read) Prometheus text exposition
//	GET /v1/status        (read) wire.Status
//	GET /v1/rounds        (read) wire.RoundsPage; ?after=ROUND&limit=N
//	GET /v1/model         (read) wire.ModelManifest; ?version=V for a
//	                      retained version, ?format=raw for the parameters
//	GET /v1/cluster       (read) wire.Cluster: the Raft configuration
//	POST /v1/cluster/join?id=NODE&raft_addr=HOST:PORT[&client_addr=HOST:PORT][&admin_addr=HOST:PORT]
//	                      leader only: add NODE as a voter (idempotent)
//	POST /v1/cluster/remove?id=NODE
//	                      leader only: remove NODE (absent is success)
//	POST /v1/cluster/transfer-leadership[?id=NODE]
//	                      leader only: hand leadership to NODE or any voter
//	GET /v1/backup        a backup file of this node's state (backup.go)
//	GET /v1/training      (read) wire.TrainingDoc: the settings and their changes
//	POST /v1/training?KEY=VALUE…&reason=…[&operator=…]
//	                      leader only: change the settings that may change
//	                      from the next round on (training_change.go)
//
// A leader-only call on a follower answers 409 with a wire.ClusterError that
// names the leader.
const (
	// DefaultRoundsLimit and MaxRoundsLimit bound a page of /v1/rounds.
	DefaultRoundsLimit = 100
	MaxRoundsLimit     = 1000
)

const modelLayout = "item i's factor at [i*(rank+1), i*(rank+1)+rank), its bias at i*(rank+1)+rank, the global mean last"

// admin is a node's admin HTTPS server.
type admin struct {
	n       *Node
	token   [sha256.Size]byte
	read    *[sha256.Size]byte // the read-only token's hash; nil: none
	metrics *metrics
	reg     *prometheus.Registry
	srv     *http.Server
	ln      net.Listener
}

// startAdmin listens on Config.AdminAddr and serves the admin API; its
// goroutine belongs to n.wg and ends with admin.close.
func (n *Node) startAdmin() error {
	a := &admin{n: n, token: sha256.Sum256([]byte(n.cfg.AdminToken)), metrics: n.metrics, reg: prometheus.NewRegistry()}
	if n.cfg.ReadToken != "" {
		h := sha256.Sum256([]byte(n.cfg.ReadToken))
		a.read = &h
	}
	a.reg.MustRegister(a.metrics, newOpsMetrics(n), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", n.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("coordinator: admin listen: %w", err)
	}
	// Operators authenticate with the token; each handshake serves the
	// current certificate.
	tc := &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.NoClientCert, GetCertificate: n.certs.getCertificate}
	a.ln = ln
	a.srv = &http.Server{
		Handler:           a.handler(),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Handshake failures from scanners and probes: debug, not stderr.
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.admin = a
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := a.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin server", "err", err)
		}
	}()
	n.log.Info("admin API", "addr", ln.Addr().String())
	return nil
}

// close stops the admin server, letting requests in flight finish for up
// to a second.
func (a *admin) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		return a.srv.Close()
	}
	return nil
}

// AdminAddr returns the address the admin API listens on, or "" if it is
// off.
func (n *Node) AdminAddr() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.ln.Addr().String()
}

func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := a.n.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", a.reads(promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg})))
	mux.Handle("GET "+wire.PathStatus, a.reads(http.HandlerFunc(a.status)))
	mux.Handle("GET "+wire.PathRounds, a.reads(http.HandlerFunc(a.rounds)))
	mux.Handle("GET "+wire.PathModel, a.reads(http.HandlerFunc(a.model)))
	mux.Handle("GET "+wire.PathCluster, a.reads(http.HandlerFunc(a.cluster)))
	mux.Handle("POST "+wire.PathJoin, a.auth(http.HandlerFunc(a.join)))
	mux.Handle("POST "+wire.PathRemove, a.auth(http.HandlerFunc(a.remove)))
	mux.Handle("POST "+wire.PathTransfer, a.auth(http.HandlerFunc(a.transfer)))
	mux.Handle("GET "+wire.PathBackup, a.auth(http.HandlerFunc(a.backup)))
	mux.Handle("GET "+wire.PathTraining, a.reads(http.HandlerFunc(a.training)))
	mux.Handle("POST "+wire.PathTraining, a.auth(http.HandlerFunc(a.changeTraining)))
	return mux
}

// auth admits requests that carry the operator token; the read-only token
// gets 403.
func (a *admin) auth(h http.Handler) http.Handler { return a.admit(h, false) }

// reads admits requests that carry the operator or the read-only token.
func (a *admin) reads(h http.Handler) http.Handler { return a.admit(h, true) }

func (a *admin) admit(h http.Handler, readOnly bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const prefix = "Bearer "
		got := r.Header.Get("Authorization")
		scheme := len(got) > len(prefix) && got[:len(prefix)] == prefix
		sum := sha256.Sum256([]byte(got[min(len(prefix), len(got)):]))
		isAdmin := subtle.ConstantTimeCompare(sum[:], a.token[:]) == 1
		isRead := a.read != nil && subtle.ConstantTimeCompare(sum[:], a.read[:]) == 1
		switch {
		case scheme && (isAdmin || readOnly && isRead):
			h.ServeHTTP(w, r)
		case scheme && isRead:
			http.Error(w, "the read-only token cannot do this: use the operator token", http.StatusForbidden)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="fedrec"`)
			http.Error(w, "operator token required", http.StatusUnauthorized)
		}
	})
}

var errNotMember = errors.New("not a member of a cluster")

// Ready returns nil when the node is a member of a cluster that has a
// known leader and it has applied all but at most Config.ReadyLag of the
// entries the leader committed (a follower learns the leader's commit
// index from its AppendEntries: a restarted node is not ready until it
// has caught up); otherwise an error that says which condition fails.
func (n *Node) Ready() error {
	if n.raft.State() == raft.Shutdown {
		return errors.New("raft is shut down")
	}
	if !n.member() {
		return errNotMember
	}
	if _, id := n.raft.LeaderWithID(); id == "" {
		return errors.New("no known leader")
	}
	tapTerm, tapCommit := n.leaderCommit()
	return readiness(n.raft.State() == raft.Leader, n.raft.CurrentTerm(), n.raft.CommitIndex(), n.raft.AppliedIndex(), tapTerm, tapCommit, n.cfg.ReadyLag)
}

// leaderCommit returns the newest commit index this node heard from a
// leader, and that leader's term; the leader's own on the leader.
func (n *Node) leaderCommit() (term, commit uint64) {
	if n.raft.State() == raft.Leader {
		return n.raft.CurrentTerm(), n.raft.CommitIndex()
	}
	return n.tap.leaderCommit()
}

// member reports whether this node is in the latest Raft configuration.
func (n *Node) member() bool {
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.ID) {
			return true
		}
	}
	return false
}

// voters counts the voters of the latest Raft configuration.
func (n *Node) voters() int {
	k := 0
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		if s.Suffrage == raft.Voter {
			k++
		}
	}
	return k
}

// lastContact is the time since this node last heard from the leader: 0
// on the leader, +Inf if never.
func (n *Node) lastContact() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	t := n.raft.LastContact()
	if t.IsZero() {
		return time.Duration(math.MaxInt64)
	}
	return time.Since(t)
}

// Status returns the node's view of the cluster.
func (n *Node) Status() wire.Status {
	r := n.raft
	st := wire.Status{
		Node: n.cfg.ID, State: lowerState(r.State()), Term: r.CurrentTerm(),
		Commit: r.CommitIndex(), Applied: r.AppliedIndex(), Nodes: []wire.StatusNode{},
		InsecureDevices: n.insecureDevices(), Build: BuildInfo(),
	}
	_, st.LeaderCommit = n.leaderCommit()
	if b := n.certs.bundle(); b != nil && b.Cert.Leaf != nil {
		node, ca, dev := n.certs.expiry()
		st.Certs = &wire.StatusCerts{Node: node.UTC(), NodeSerial: b.Cert.Leaf.SerialNumber.Text(16), CA: ca.UTC()}
		if !dev.IsZero() {
			dev = dev.UTC()
			st.Certs.DeviceCA = &dev
		}
	}
	if d := n.lastContact(); d == time.Duration(math.MaxInt64) {
		st.LastContact = -1
	} else {
		st.LastContact = d.Seconds()
	}
	if err := n.Ready(); err != nil {
		st.NotReady = err.Error()
	} else {
		st.Ready = true
	}
	_, lid := r.LeaderWithID()
	servers := r.GetConfiguration().Configuration().Servers
	n.fsm.Read(func(s *State) {
		st.Nodes, st.Leader = members(s, servers, lid)
		if v := s.Current(); v != nil {
			st.Model = &wire.StatusModel{Version: v.Version, Round: v.Round, Digest: hex.EncodeToString(v.Digest[:])}
		}
		if o := s.Open(); o != nil {
			st.Round = &wire.StatusRound{Round: o.Round, Model: o.Model, Cohort: len(o.Cohort), Leader: o.Leader}
		}
		st.LastRound = s.LastRound()
		st.Privacy.Rounds = len(s.Ledger())
	})
	eps, delta := n.metrics.privacySpent()
	st.Privacy.Delta = delta
	if !math.IsNaN(eps) && !math.IsInf(eps, 0) {
		st.Privacy.Epsilon = &eps
	}
	return st
}

// members describes the servers of a Raft configuration, by id, with the
// client addresses s holds, and the leader lid; the leader is nil when
// unknown.
func members(s *State, servers []raft.Server, lid raft.ServerID) (nodes []wire.StatusNode, leader *wire.StatusNode) {
	servers = slices.Clone(servers)
	slices.SortFunc(servers, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	nodes = []wire.StatusNode{}
	for _, srv := range servers {
		sn := wire.StatusNode{ID: string(srv.ID), RaftAddr: string(srv.Address), ClientAddr: s.NodeAddr(string(srv.ID)), AdminAddr: s.AdminAddr(string(srv.ID)),
			Suffrage: suffrage(srv.Suffrage), Leader: srv.ID == lid}
		nodes = append(nodes, sn)
		if sn.Leader {
			leader = &sn
		}
	}
	if leader == nil && lid != "" {
		leader = &wire.StatusNode{ID: string(lid), ClientAddr: s.NodeAddr(string(lid)), AdminAddr: s.AdminAddr(string(lid)), Leader: true}
	}
	return nodes, leader
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	}
	return "staging"
}

func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.n.Status())
}

func (a *admin) rounds(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	limit := DefaultRoundsLimit
	if s := q.Get("after"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			http.Error(w, "after: want a round number", http.StatusBadRequest)
			return
		}
		after = v
	}
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxRoundsLimit {
			http.Error(w, fmt.Sprintf("limit: want 1..%d", MaxRoundsLimit), http.StatusBadRequest)
			return
		}
		limit = v
	}
	page := wire.RoundsPage{Rounds: []wire.RoundJSON{}}
	a.n.fsm.Read(func(s *State) {
		rs := s.Rounds()
		// The history is in round order: find the first round after.
		i, _ := binarySearchRound(rs, after)
		for ; i < len(rs) && len(page.Rounds) < limit; i++ {
			page.Rounds = append(page.Rounds, roundJSON(&rs[i]))
		}
		if i < len(rs) {
			next := rs[i-1].Round
			page.Next = &next
		}
	})
	writeJSON(w, page)
}

// binarySearchRound returns the index of the first record with a round
// above after.
func binarySearchRound(rs []RoundRecord, after uint64) (int, bool) {
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].Round <= after {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(rs)
}

func roundJSON(r *RoundRecord) wire.RoundJSON {
	o := "committed"
	if r.Outcome != Committed {
		o = "abandoned"
	}
	return wire.RoundJSON{Round: r.Round, Outcome: o, Model: r.Model, NewModel: r.NewModel, Cohort: r.Cohort,
		Survivors: r.Survivors, Clipped: r.Clipped, Loss: r.Loss, N: r.N, Reason: r.Reason,
		LossUnknown: r.LossUnknown, Clip: r.Clip, NextClip: r.NextClip}
}

func (a *admin) model(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var v *Version
	var want uint64
	if s := q.Get("version"); s != "" {
		x, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			http.Error(w, "version: want a model version", http.StatusBadRequest)
			return
		}
		want = x
	}
	a.n.fsm.Read(func(s *State) {
		if want == 0 {
			v = s.Current()
		} else {
			v = s.Model(want)
		}
	})
	if v == nil {
		http.Error(w, "no such model version on this node", http.StatusNotFound)
		return
	}
	m := v.Model
	man := wire.ModelManifest{Version: v.Version, Round: v.Round, Kind: m.Kind.String(), KindCode: wire.KindOf(m.Kind),
		Items: m.Items, Rank: m.Rank, Params: len(m.Params), Digest: hex.EncodeToString(v.Digest[:]), Layout: modelLayout}
	switch q.Get("format") {
	case "", "json":
		writeJSON(w, man)
	case "raw":
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(8*len(m.Params)))
		h.Set("Fedrec-Model-Version", strconv.FormatUint(v.Version, 10))
		h.Set("Fedrec-Model-Kind", man.Kind)
		h.Set("Fedrec-Model-Items", strconv.Itoa(m.Items))
		h.Set("Fedrec-Model-Rank", strconv.Itoa(m.Rank))
		h.Set("Fedrec-Model-Digest", man.Digest)
		// Versions are immutable: the parameters are read without the lock.
		buf := make([]byte, 64<<10)
		p := m.Params
		for len(p) > 0 {
			k := min(len(p), len(buf)/8)
			for i, x := range p[:k] {
				binary.LittleEndian.PutUint64(buf[8*i:], math.Float64bits(x))
			}
			if _, err := w.Write(buf[:8*k]); err != nil {
				return
			}
			p = p[k:]
		}
	default:
		http.Error(w, "format: want json or raw", http.StatusBadRequest)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
