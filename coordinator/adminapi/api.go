package adminapi

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
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// The admin API: HTTPS on the node's Config.AdminAddr with the node's certificate.
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
//	                      from the next round on (training.go)
//	GET /debug/pprof/profile?seconds=N
//	                      the node's CPU profile over N seconds (default
//	                      30, at most 300), for `go tool pprof`
//	GET /debug/pprof/heap the node's heap profile
//
// A leader-only call on a follower answers 409 with a wire.ClusterError that
// names the leader.
const (
	// DefaultRoundsLimit and MaxRoundsLimit bound a page of /v1/rounds.
	DefaultRoundsLimit = 100
	MaxRoundsLimit     = 1000
)

// PathCPUProfile is the admin API's CPU profile; ?seconds=N.
const PathCPUProfile = "/debug/pprof/profile"

// maxProfileSeconds bounds a CPU profile's duration.
const maxProfileSeconds = 300

// cpuProfile serves net/http/pprof's CPU profile after checking its
// duration: one a caller could make run for days would hold the
// profiler, which runs one profile at a time.
func cpuProfile(w http.ResponseWriter, r *http.Request) {
	if v := r.URL.Query().Get("seconds"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > maxProfileSeconds {
			http.Error(w, fmt.Sprintf("seconds=%q: want 1 to %d", v, maxProfileSeconds), http.StatusBadRequest)
			return
		}
	}
	pprof.Profile(w, r)
}

const modelLayout = "item i's factor at [i*(rank+1), i*(rank+1)+rank), its bias at i*(rank+1)+rank, the global mean last"

// Node is what the admin API asks of the coordinator node it serves.
// Leader-only calls return store.ErrNotLeader on a follower (answered 409
// with the leader), store.ErrUnknownNode for a node outside the
// configuration (404) and store.ErrBadCommand for a change the state
// refuses (400).
type Node interface {
	// Ready returns nil when the node is ready, else why not (/readyz).
	Ready() error
	Status() wire.Status
	// View calls fn with the replicated state under its read lock.
	View(fn func(s *store.State))
	// Cluster is the Raft configuration as the node sees it.
	Cluster() wire.Cluster
	IsLeader() bool
	// Join adds a voter and records its client and admin addresses.
	Join(id, raftAddr, clientAddr, adminAddr string) error
	Remove(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
	// Backup writes a backup file of the node's state to w.
	Backup(w io.Writer) (store.BackupHeader, error)
	ChangeTraining(c wire.ChangeTraining) (store.Training, error)
}

// Config configures a Server.
type Config struct {
	// Token is the operator token (required); ReadToken, if set, admits
	// the reads only.
	Token, ReadToken string
	// GetCertificate serves the node's current certificate at each
	// handshake.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Metrics is exposed at /metrics.
	Metrics *prometheus.Registry
	// Logger receives the server's warnings; nil: silent.
	Logger *slog.Logger
}

// Server is a node's admin HTTPS server.
type Server struct {
	n     Node
	token [sha256.Size]byte
	read  *[sha256.Size]byte // the read-only token's hash; nil: none
	reg   *prometheus.Registry
	srv   *http.Server
	ln    net.Listener
	log   *slog.Logger
}

// Listen listens on addr for the admin API of n; Serve serves it.
func Listen(addr string, n Node, cfg Config) (*Server, error) {
	if cfg.Token == "" {
		return nil, errors.New("adminapi: Config.Token is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	a := &Server{n: n, token: sha256.Sum256([]byte(cfg.Token)), reg: cfg.Metrics, log: cfg.Logger}
	if cfg.ReadToken != "" {
		h := sha256.Sum256([]byte(cfg.ReadToken))
		a.read = &h
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	// Operators authenticate with the token; each handshake serves the
	// current certificate.
	tc := &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.NoClientCert, GetCertificate: cfg.GetCertificate}
	a.ln = ln
	a.srv = &http.Server{
		Handler:           a.handler(),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Handshake failures from scanners and probes: debug, not stderr.
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return a, nil
}

// Serve serves the admin API until Close; it then returns nil.
func (a *Server) Serve() error {
	if err := a.srv.ServeTLS(a.ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Addr is the address the server listens on.
func (a *Server) Addr() net.Addr { return a.ln.Addr() }

// Close stops the admin server, letting requests in flight finish for up
// to a second.
func (a *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		return a.srv.Close()
	}
	return nil
}

func (a *Server) handler() http.Handler {
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
	// Profiles name the code's functions and show what the node holds:
	// the operator token only.
	mux.Handle("GET "+PathCPUProfile, a.auth(http.HandlerFunc(cpuProfile)))
	mux.Handle("GET /debug/pprof/heap", a.auth(pprof.Handler("heap")))
	return mux
}

// auth admits requests that carry the operator token; the read-only token
// gets 403.
func (a *Server) auth(h http.Handler) http.Handler { return a.admit(h, false) }

// reads admits requests that carry the operator or the read-only token.
func (a *Server) reads(h http.Handler) http.Handler { return a.admit(h, true) }

func (a *Server) admit(h http.Handler, readOnly bool) http.Handler {
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

func (a *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.n.Status())
}

func (a *Server) rounds(w http.ResponseWriter, r *http.Request) {
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
	a.n.View(func(s *store.State) {
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
func binarySearchRound(rs []store.RoundRecord, after uint64) (int, bool) {
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

func roundJSON(r *store.RoundRecord) wire.RoundJSON {
	o := "committed"
	if r.Outcome != store.Committed {
		o = "abandoned"
	}
	return wire.RoundJSON{Round: r.Round, Outcome: o, Model: r.Model, NewModel: r.NewModel, Cohort: r.Cohort,
		Survivors: r.Survivors, Clipped: r.Clipped, Loss: r.Loss, N: r.N, Reason: r.Reason,
		LossUnknown: r.LossUnknown, Clip: r.Clip, NextClip: r.NextClip}
}

func (a *Server) model(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var v *store.Version
	var want uint64
	if s := q.Get("version"); s != "" {
		x, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			http.Error(w, "version: want a model version", http.StatusBadRequest)
			return
		}
		want = x
	}
	a.n.View(func(s *store.State) {
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
