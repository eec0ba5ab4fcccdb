package coordinator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func signedTraining(cohort, colluders int) Training {
	tr := secureTraining(cohort)
	tr.SecAggSigned, tr.SecAggColluders = true, colluders
	tr.MinClients = max(tr.MinClients, colluders+3)
	return tr
}

// SignedDevice runs one device's side of a signed secure round after its
// plan, with the device's certificate and the device CA, input x, and
// dropping out after phase last (secagg.PhaseUnmask: never): it checks
// that the round is signed, that its graph seed binds cohort (the
// manifest's, index i is protocol id i) and that its threshold resists
// colluders, then runs the phases through exchange, which sends one
// request and returns the reply. It returns the last reply, or the
// error with which the device refused to go on. The SDK runs the same
// steps (client/internal/round.Secure with a client.Identity).
func SignedDevice(plan *wire.Plan, cohort []string, cert tls.Certificate, deviceCA *x509.CertPool, colluders int, x []float64, last secagg.Phase, exchange func(wire.Message) (wire.Message, error)) (wire.Message, error) {
	// Phase values are append-only: compare them in protocol order.
	order := []secagg.Phase{secagg.PhaseAdvertiseKeys, secagg.PhaseShareKeys, secagg.PhaseMaskedInput, secagg.PhaseConsistencyCheck, secagg.PhaseUnmask}
	stop := func(p secagg.Phase) bool { return slices.Index(order, last) < slices.Index(order, p) }
	sp := plan.SecAgg
	if sp == nil || !sp.Signed {
		return nil, errors.New("the round is not signed")
	}
	if seed, _ := sp.WantSeeds(plan.Round, plan.Digest, cohort); !bytes.Equal(sp.Seed, seed[:]) {
		return nil, errors.New("the round's graph seed does not bind its cohort")
	}
	var rot [32]byte
	copy(rot[:], sp.RotationSeed)
	enc, err := fixedpoint.NewEncoder(fixedpoint.Params{Dim: len(x), Clip: sp.Clip, Bits: uint(sp.Bits), MaxClients: sp.SumClients(), Seed: rot})
	if err != nil {
		return nil, err
	}
	xi := make([]int64, enc.PaddedDim())
	if _, err := enc.Encode(xi, x, rand.New(rand.NewPCG(uint64(plan.SecAggID), 7))); err != nil {
		return nil, err
	}
	in := make([]uint64, sp.InputLen(len(xi)))
	if err := enc.Wrap(in[:len(xi)], xi); err != nil {
		return nil, err
	}
	cfg := sp.Config(plan.Round, len(in))
	if err := cfg.CheckActive(colluders); err != nil {
		return nil, err
	}
	ident, err := client.NewIdentity(cert, deviceCA, cohort)
	if err != nil {
		return nil, err
	}
	if sp.Roster {
		ident.RequireRoster()
	}
	sc, err := secagg.NewSignedClient(cfg, plan.SecAggID, ident, nil)
	if err != nil {
		return nil, err
	}
	hdr := wire.SecAggHeader{Version: wire.Version, Round: plan.Round, ClientID: cohort[plan.SecAggID], Ticket: plan.Ticket}
	adv, err := sc.AdvertiseKeys()
	if err != nil {
		return nil, err
	}
	rep, err := exchange(&wire.SecAggAdvert{SecAggHeader: hdr, Keys: wire.SecAggKeysOf(adv)})
	pk, ok := rep.(*wire.SecAggPeerKeys)
	if err != nil || !ok || stop(secagg.PhaseShareKeys) {
		return rep, err
	}
	up, err := sc.ShareKeys(pk.PeerKeys())
	if err != nil {
		return nil, err
	}
	rep, err = exchange(&wire.SecAggShares{SecAggHeader: hdr, Shares: wire.SealedOf(up.Shares)})
	dl, ok := rep.(*wire.SecAggDelivery)
	if err != nil || !ok || stop(secagg.PhaseMaskedInput) {
		return rep, err
	}
	mi, err := sc.MaskedInput(secagg.ShareDelivery{Round: dl.Round, To: dl.To, Shares: wire.Sealed(dl.Shares)}, in)
	if err != nil {
		return nil, err
	}
	w, vals := wire.PackWords(mi.Values, sp.Bits)
	rep, err = exchange(&wire.SecAggMasked{SecAggHeader: hdr, Width: w, Values: vals})
	cr, ok := rep.(*wire.SecAggCheckRequest)
	if err != nil || !ok || stop(secagg.PhaseConsistencyCheck) {
		return rep, err
	}
	cs, err := sc.ConsistencyCheck(cr.ConsistencyRequest())
	if err != nil {
		return nil, err
	}
	rep, err = exchange(&wire.SecAggCheck{SecAggHeader: hdr, Tags: wire.TagsOf(cs.Tags)})
	ur, ok := rep.(*wire.SecAggUnmaskRequest)
	if err != nil || !ok || stop(secagg.PhaseUnmask) {
		return rep, err
	}
	um, err := sc.Unmask(secagg.UnmaskRequest{Round: ur.Round, To: ur.To, Survivors: ur.Survivors, Dropped: ur.Dropped, Tags: wire.ConsistencyTags(ur.Tags)})
	if err != nil {
		return nil, err
	}
	return exchange(&wire.SecAggUnmask{SecAggHeader: hdr, SelfMaskShares: wire.SharesOf(um.SelfMaskShares), MaskKeyShares: wire.SharesOf(um.MaskKeyShares)})
}

// devices issues device certificates of a fresh device CA.
type devices struct {
	ca       *pki.CA
	certs    map[string]tls.Certificate
	revealed atomic.Int32 // SecAggUnmask messages sent: shares revealed
}

func newDevices(t *testing.T, ids ...string) *devices {
	t.Helper()
	ca, err := pki.NewCA("device CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := &devices{ca: ca, certs: map[string]tls.Certificate{}}
	for _, id := range ids {
		if d.certs[id], err = ca.IssueDevice(id, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// peer is what the node's TLS layer makes of a device's connection.
func (d *devices) peer(id string) Peer {
	c := d.certs[id]
	return Peer{Device: id, Cert: c.Leaf}
}

// signedParticipate checks in as device id and, once selected for a signed
// secure round, runs it through Handle with the device's certificate on
// the connection (SignedDevice).
func (c *testCluster) signedParticipate(ctx context.Context, d *devices, id string, colluders int, x []float64, last secagg.Phase) (wire.Message, error) {
	return signedParticipateAt(ctx, c.leader(ctx), d, id, colluders, x, last)
}

// signedParticipateAt is signedParticipate at node l.
func signedParticipateAt(ctx context.Context, l *Node, d *devices, id string, colluders int, x []float64, last secagg.Phase) (wire.Message, error) {
	peer := d.peer(id)
	exchange := func(req wire.Message) (wire.Message, error) {
		if _, ok := req.(*wire.SecAggUnmask); ok {
			d.revealed.Add(1)
		}
		var out []wire.Message
		l.Handle(ctx, req, peer, func(m wire.Message) error { out = append(out, m); return nil })
		if e, ok := out[0].(*wire.Error); ok {
			return e, e
		}
		return out[0], nil
	}
	var plan *wire.Plan
	for plan == nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		rep, _ := exchange(&wire.CheckIn{Version: wire.Version, ClientID: id})
		plan, _ = rep.(*wire.Plan)
	}
	// The plan carries the cohort of the device's group in the manifest.
	var manifest []string
	l.View(func(s *State) {
		if o := s.Open(); o != nil && o.Round == plan.Round && plan.SecAgg != nil {
			manifest, _, _ = o.Group(plan.SecAgg.Group)
		}
	})
	if !slices.Equal(plan.Cohort, manifest) {
		return nil, fmt.Errorf("round %d: the plan's cohort %q, the manifest's %q", plan.Round, plan.Cohort, manifest)
	}
	return SignedDevice(plan, plan.Cohort, d.certs[id], d.ca.Pool(), colluders, x, last, exchange)
}

// runSigned runs a cohort of n devices s0..s{n-1} through a signed round,
// device i dropping out after last(i), and returns each device's error
// and the round's record.
func runSigned(t *testing.T, c *testCluster, d *devices, n, colluders int, input func(i int) []float64, last func(i int) secagg.Phase) ([]error, RoundRecord) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = c.signedParticipate(ctx, d, fmt.Sprintf("s%d", i), colluders, input(i), last(i))
		})
	}
	wg.Wait()
	l := c.leader(ctx)
	if err := l.WaitFor(ctx, func(s *State) bool { return len(s.Rounds()) == 1 }); err != nil {
		t.Fatal(err)
	}
	var r RoundRecord
	l.View(func(s *State) { r = s.Rounds()[0] })
	return errs, r
}

func deviceIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%d", i)
	}
	return ids
}

// A signed secure round commits the plaintext mean of its survivors with
// devices dropping out before and after their masked input, and its
// manifest commits a threshold that resists the configured colluders.
func TestSignedSecureRound(t *testing.T) {
	const n, colluders = 10, 1
	c := newTestCluster(t, 1, signedTraining(n, colluders))
	d := newDevices(t, deviceIDs(n)...)
	dim := c.dim()
	input := sinInput(dim)
	// s9 drops after sharing keys (its input is not summed), s8 after its
	// masked input (summed: its self mask is removed with its
	// neighbours' shares).
	last := func(i int) secagg.Phase {
		switch i {
		case 9:
			return secagg.PhaseShareKeys
		case 8:
			return secagg.PhaseMaskedInput
		}
		return secagg.PhaseUnmask
	}
	errs, r := runSigned(t, c, d, n, colluders, input, last)
	for i, err := range errs {
		if err != nil {
			t.Errorf("device %d: %v", i, err)
		}
	}
	if r.Outcome != Committed || r.Survivors != n-1 {
		t.Fatalf("round %+v, want committed with %d survivors", r, n-1)
	}
	mean := make([]float64, dim)
	for i := range n - 1 {
		for j, x := range input(i) {
			mean[j] += x / float64(n-1)
		}
	}
	want := expectStep(t, c, mean)
	c.nodes[0].View(func(s *State) {
		got := s.Current().Model.Params
		for j := range want {
			if math.Abs(got[j]-want[j]) > 1e-6*(1+math.Abs(want[j])) {
				t.Fatalf("param %d = %v, want %v (plaintext mean)", j, got[j], want[j])
			}
		}
	})
}

// The manifest of a signed round commits Signed, a threshold of
// secagg.ActiveThreshold for the configured colluders, and a graph seed
// that binds the cohort.
func TestSignedSecAggParams(t *testing.T) {
	digest := bytes.Repeat([]byte{1}, 32)
	for _, tc := range []struct{ n, colluders int }{{5, 0}, {10, 1}, {10, 2}, {100, 0}, {100, 5}, {500, 3}} {
		tr := signedTraining(tc.n, tc.colluders)
		tr.MinClients = max(3, tc.colluders+3)
		if err := tr.WithDefaults().Validate(); err != nil {
			t.Fatalf("n=%d c=%d: %v", tc.n, tc.colluders, err)
		}
		ids := deviceIDs(tc.n)
		p := secAggParams(tr.WithDefaults(), 3, digest, ids, 1)
		if err := p.Validate(); err != nil {
			t.Fatalf("n=%d c=%d: params %+v: %v", tc.n, tc.colluders, p, err)
		}
		cfg := p.Config(3, 8)
		if err := cfg.CheckActive(tc.colluders); err != nil || !p.Signed {
			t.Errorf("n=%d c=%d: params %+v: CheckActive = %v", tc.n, tc.colluders, p, err)
		}
		if got, _ := cfg.ActiveTolerance(); got < tc.colluders {
			t.Errorf("n=%d c=%d: tolerance %d", tc.n, tc.colluders, got)
		}
		if seed := wire.SecAggSignedSeed(3, digest, ids); !bytes.Equal(p.Seed, seed[:]) {
			t.Errorf("n=%d c=%d: seed does not bind the cohort", tc.n, tc.colluders)
		}
		swapped := slices.Clone(ids)
		swapped[0], swapped[1] = swapped[1], swapped[0]
		if seed := wire.SecAggSignedSeed(3, digest, swapped); bytes.Equal(p.Seed, seed[:]) {
			t.Errorf("n=%d c=%d: seed ignores the cohort's order", tc.n, tc.colluders)
		}
	}
	tr := signedTraining(10, 1)
	tr.SecAggSigned = false
	if err := tr.WithDefaults().Validate(); err == nil {
		t.Error("Validate() with SecAggColluders without SecAggSigned = nil")
	}
	tr = signedTraining(10, 1)
	tr.SecAggColluders = tr.MinClients - 2
	if err := tr.WithDefaults().Validate(); err == nil {
		t.Error("Validate() with SecAggColluders > MinClients-3 = nil")
	}
}

// A leader that lies about the survivors: it tells half the cohort that
// s0, which sent its masked input, dropped, and the other half the truth,
// and sends each half the unmask request that matches its story, hoping
// to collect both s0's self-mask seed (from those told it survived) and
// its mask key (from those told it dropped), which would unmask s0's
// input. Every device refuses to reveal any share, and the round is
// abandoned with no share sent.
func TestSignedSecureRoundLyingLeader(t *testing.T) {
	const n = 10
	c := newTestCluster(t, 1, signedTraining(n, 0))
	d := newDevices(t, deviceIDs(n)...)
	const victim = 0                                  // protocol id; the cohort order is the leader's
	told := func(to uint32) bool { return to%2 == 1 } // told the victim dropped
	c.nodes[0].secAggLie = func(to uint32, m any) {
		if !told(to) {
			return
		}
		switch m := m.(type) {
		case *secagg.ConsistencyRequest:
			m.Survivors = slices.DeleteFunc(m.Survivors, func(id uint32) bool { return id == victim })
		case *secagg.UnmaskRequest:
			if i := slices.Index(m.Survivors, victim); i >= 0 {
				m.Survivors = slices.Delete(m.Survivors, i, i+1)
				m.Dropped = append(m.Dropped, victim)
				slices.Sort(m.Dropped)
			}
		}
	}
	dim := c.dim()
	errs, r := runSigned(t, c, d, n, 0, func(int) []float64 { return constDelta(dim, 0.01) }, func(int) secagg.Phase { return secagg.PhaseUnmask })
	if r.Outcome != Abandoned {
		t.Fatalf("round %+v, want abandoned", r)
	}
	if k := d.revealed.Load(); k != 0 {
		t.Errorf("%d devices revealed shares to a lying leader", k)
	}
	for i, err := range errs {
		if !errors.Is(err, secagg.ErrTooFewTags) && !errors.Is(err, secagg.ErrInconsistent) {
			t.Errorf("device s%d: %v, want a refusal (too few tags or inconsistent)", i, err)
		}
	}
}

// A device cannot advertise keys under another device's identity: the
// node relays the certificate of the connection, and a device without one
// is refused in a signed round.
func TestSignedSecureRoundCredentialFromConnection(t *testing.T) {
	const n = 5
	c := newTestCluster(t, 1, signedTraining(n, 0))
	d := newDevices(t, deviceIDs(n)...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	l := c.leader(ctx)
	var wg sync.WaitGroup
	plans := make([]*wire.Plan, n)
	for i := range n {
		wg.Go(func() {
			for plans[i] == nil && ctx.Err() == nil {
				plans[i], _ = call(ctx, l, &wire.CheckIn{Version: wire.Version, ClientID: fmt.Sprintf("s%d", i)})[0].(*wire.Plan)
			}
		})
	}
	wg.Wait()
	p := plans[0]
	if p == nil {
		t.Fatal("no plan")
	}
	adv := &wire.SecAggAdvert{
		SecAggHeader: wire.SecAggHeader{Version: wire.Version, Round: p.Round, ClientID: "s0", Ticket: p.Ticket},
		Keys: wire.SecAggKeys{Client: p.SecAggID, ConfigDigest: make([]byte, 32), CipherKey: make([]byte, 32), MaskKey: bytes.Repeat([]byte{1}, 32),
			Signature: []byte{1}, Credential: d.certs["s1"].Certificate[0]},
	}
	// No certificate on the connection: refused whatever the message says.
	if e, ok := call(ctx, l, adv)[0].(*wire.Error); !ok || e.Code != wire.CodeUnauthenticated {
		t.Errorf("advert without a connection certificate = %v, want CodeUnauthenticated", e)
	}
}
