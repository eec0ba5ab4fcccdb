package secagg

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// Round benchmarks. They are slow at the larger sizes; run them once:
//
//	go test -run '^$' -bench 'Round' -benchtime 1x ./aggregation/secagg/
//
// Each iteration of BenchmarkRound plays a whole round in process, the
// clients one after another, with Bits = 32, a SecAgg+ graph of degree
// k = 2*ceil(log2 n) and t = k/4 + 1, and then times a plaintext round of
// the same size (plaintextServer) under the same conditions. ns/op is the
// whole simulation, not a latency. With one worker on Linux (clock=cpu
// in the name) the times are the CPU time of the benchmark's thread, which
// runs all the work, so that other processes on a shared machine do not
// inflate them; otherwise (clock=wall) they are wall-clock times. It
// reports, per round:
//
//   - client-ns: mean time one client spends in its four methods;
//   - server-ns: time in all server methods, of which input-ns is adding
//     the masked inputs (HandleMaskedInput) and unmask-ns is closing the
//     unmask phase (reconstructing secrets and removing the masks);
//   - plain-ns: the plaintext server checking and adding the same number
//     of vectors (BenchmarkPlaintextRound alone);
//   - ratio: server-ns / plain-ns, the cost of secure aggregation to the
//     server (the goal is 2 at n = 500, d = 118,592).
//
// The 30% dropouts happen after ShareKeys, the costly case for the server:
// it reconstructs each dropped client's mask key and regenerates its
// pairwise masks with every surviving neighbour.

var benchSizes = []struct{ n, d int }{
	{100, 118_592}, {500, 118_592}, {1000, 118_592},
	{100, 1_000_000}, {500, 1_000_000}, {1000, 1_000_000},
}

func benchDegree(n int) (k, t int) {
	k = 2 * bits.Len(uint(n-1))
	return k, k/4 + 1
}

func BenchmarkRound(b *testing.B) {
	type bcase struct {
		n, d, workers int
		drop          float64
	}
	var cases []bcase
	for _, s := range benchSizes {
		for _, drop := range []float64{0, 0.3} {
			cases = append(cases, bcase{s.n, s.d, 1, drop})
		}
	}
	if p := runtime.GOMAXPROCS(0); p > 1 {
		cases = append(cases, bcase{500, 118_592, p, 0}, bcase{500, 118_592, p, 0.3})
	}
	for _, c := range cases {
		k, t := benchDegree(c.n)
		clock, clockName := wallClock, "wall"
		if c.workers == 1 && haveThreadCPU {
			clock, clockName = threadCPU, "cpu"
		}
		name := fmt.Sprintf("n=%d/d=%d/drop=%d%%/k=%d/workers=%d/clock=%s", c.n, c.d, int(c.drop*100), k, c.workers, clockName)
		b.Run(name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cfg := testConfig(c.n, c.d, 32, k, t)
			sim := simulation{cfg: cfg, seed: 1, workers: c.workers, clock: clock}
			sim.drop[dropAfterShare] = c.drop
			sum, x := make([]uint64, c.d), make([]uint64, c.d)
			b.ReportAllocs()
			var ct, st, it, ut, pt time.Duration
			for b.Loop() {
				out, err := sim.run()
				if err != nil {
					b.Fatal(err)
				}
				ct += out.clientTime / time.Duration(c.n)
				st += out.serverTime
				it += out.inputTime
				ut += out.unmaskTime
				pt += plaintextServer(out.res.Count, 32, sum, x, clock)
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
			b.ReportMetric(per(ct), "client-ns")
			b.ReportMetric(per(st), "server-ns")
			b.ReportMetric(per(it), "input-ns")
			b.ReportMetric(per(ut), "unmask-ns")
			b.ReportMetric(per(pt), "plain-ns")
			b.ReportMetric(float64(st)/float64(pt), "ratio")
		})
	}
}

// plaintextServer is the baseline for a round: the server checks and adds
// n plaintext vectors of len(x) values below 2^bits, as it would without
// secure aggregation and exactly as HandleMaskedInput does (addInput), and
// reduces the sum. Each vector is written into x first, as a client's
// message would be just before it is handled; that is not timed. It
// returns the time spent checking, adding and reducing, measured with
// clock.
func plaintextServer(n, bits int, sum, x []uint64, clock func() time.Duration) time.Duration {
	clear(sum)
	var st time.Duration
	for c := range n {
		h := uint64(c+1) * 0x9e3779b97f4a7c15
		for i := range x { // the client's input, not timed
			x[i] = (h + uint64(i)*0xbf58476d1ce4e5b9) >> (64 - bits)
		}
		start := clock()
		if err := addInput(sum, x, bits); err != nil {
			panic(err)
		}
		st += clock() - start
	}
	start := clock()
	reduce(sum, bits)
	return st + clock() - start
}

// BenchmarkPlaintextRound is the baseline alone: plaintextServer for n
// clients, reporting its time (wall clock) as server-ns.
func BenchmarkPlaintextRound(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(fmt.Sprintf("n=%d/d=%d", s.n, s.d), func(b *testing.B) {
			sum, x := make([]uint64, s.d), make([]uint64, s.d)
			b.SetBytes(int64(8 * s.n * s.d))
			b.ReportAllocs()
			var st time.Duration
			for b.Loop() {
				st += plaintextServer(s.n, 32, sum, x, wallClock)
			}
			b.ReportMetric(float64(st.Nanoseconds())/float64(b.N), "server-ns")
		})
	}
}

func BenchmarkShamir(b *testing.B) {
	for _, c := range []struct{ holders, t int }{{20, 6}, {100, 51}} {
		xs := make([]uint64, c.holders)
		for i := range xs {
			xs[i] = uint64(i + 1)
		}
		shares := make([][ShareLen]uint64, c.holders)
		secret := [secretLen]byte{1, 2, 3}
		r := rand.NewChaCha8([32]byte{})
		b.Run(fmt.Sprintf("deal/holders=%d/t=%d", c.holders, c.t), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := shamirDeal(&secret, c.t, xs, r, shares); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("combine/t=%d", c.t), func(b *testing.B) {
			ys := make([][]uint64, c.t)
			for i := range ys {
				ys[i] = shares[i][:]
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := shamirCombine(xs[:c.t], ys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignedRound compares a signed round (Config.Signed: identities
// as the device certificates give, signed adverts verified by every
// neighbour, the consistency check) with the same round unsigned, at the
// same threshold (a majority, as a signed round needs), with Ed25519 keys
// (key=ed25519, the device certificates' default) and ECDSA P-256 keys
// (key=p256) for the device CA and the devices. Client and server CPU as
// in BenchmarkRound; creating the identities is not timed.
//
// signed=cold is a device's first round with its neighbours: it checks
// each neighbour's credential (the CA's signature) before its advert.
// signed=roster is the same first round with credentials from a device
// roster (the model of coordinator/wire's): each device checks the CA's
// signature of the roster's root once, as in its first round with a new
// roster, and each neighbour's path to the root with SHA-256.
// signed=roster-known is a first round with these neighbours under a
// roster the devices checked in an earlier round, as most rounds are (a
// roster serves a day of rounds): paths only.
// signed=warm is a later round of the same cohort: the credentials are
// remembered, as client.Identity's certificate cache remembers device
// certificates, and only the round's own signatures are verified (the
// first, cold, iteration is a warm-up and not counted). The signed
// rounds also report what each client did: signatures made (signs),
// credentials checked (cred-checks) and signatures checked (sig-checks),
// counts that do not depend on the machine (for the cost of one:
// go test -run '^$' -bench 'Sign/P256|Verify/P256' -cpu 1 crypto/ecdsa,
// go test -run '^$' -bench 'Signing|Verification' -cpu 1 crypto/ed25519).
// Each iteration of a signed mode also runs the unsigned round, just
// before, and reports the ratios of the two (client-x, server-x): the
// speed of a shared machine drifts between sub-benchmarks by more than
// the differences measured, far less between two rounds in a row.
func BenchmarkSignedRound(b *testing.B) {
	for _, c := range []struct{ n, d int }{{100, 118_592}, {500, 118_592}} {
		k, _ := benchDegree(c.n)
		for _, v := range []struct{ kt, mode string }{{"", "false"}, {keyEd25519, "cold"}, {keyEd25519, "roster"}, {keyEd25519, "roster-known"}, {keyEd25519, "warm"}, {keyP256, "cold"}, {keyP256, "roster"}, {keyP256, "roster-known"}, {keyP256, "warm"}} {
			mode := v.mode
			clock, clockName := wallClock, "wall"
			if haveThreadCPU {
				clock, clockName = threadCPU, "cpu"
			}
			key := ""
			if v.kt != "" {
				key = "key=" + v.kt + "/"
			}
			b.Run(fmt.Sprintf("n=%d/d=%d/k=%d/%ssigned=%s/clock=%s", c.n, c.d, k, key, mode, clockName), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cfg := testConfig(c.n, c.d, 32, k, 0)
				cfg.Signed = mode != "false"
				sim := simulation{cfg: cfg, seed: 1, workers: 1, clock: clock}
				plain := simulation{cfg: testConfig(c.n, c.d, 32, k, 0), seed: 1, workers: 1, clock: clock}
				if mode == "warm" {
					sim.idents = &simIdentities{ca: newTestCAKey(v.kt)}
					if _, err := sim.run(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				var ct, st, pct, pst time.Duration // pct, pst: the paired unsigned rounds'
				var ops [3]int                     // per client: signatures made, credentials and signatures checked
				for b.Loop() {
					if cfg.Signed {
						out, err := plain.run()
						if err != nil {
							b.Fatal(err)
						}
						pct += out.clientTime / time.Duration(c.n)
						pst += out.serverTime
					}
					switch mode {
					case "cold":
						sim.idents = &simIdentities{ca: newTestCAKey(v.kt)}
					case "roster", "roster-known":
						ca := newTestCAKey(v.kt)
						ca.roster, ca.rosterKnown = true, mode == "roster-known"
						sim.idents = &simIdentities{ca: ca}
					}
					var before [3]int
					if sim.idents != nil {
						before = sim.idents.ops()
					}
					out, err := sim.run()
					if err != nil {
						b.Fatal(err)
					}
					ct += out.clientTime / time.Duration(c.n)
					st += out.serverTime
					if sim.idents != nil {
						after := sim.idents.ops()
						for i := range ops {
							ops[i] += after[i] - before[i]
						}
					}
				}
				per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
				b.ReportMetric(per(ct), "client-ns")
				b.ReportMetric(per(st), "server-ns")
				if cfg.Signed {
					b.ReportMetric(float64(ct)/float64(pct), "client-x")
					b.ReportMetric(float64(st)/float64(pst), "server-x")
				}
				if sim.idents != nil {
					perClient := func(k int) float64 { return float64(k) / float64(b.N*c.n) }
					b.ReportMetric(perClient(ops[0]), "signs/client")
					b.ReportMetric(perClient(ops[1]), "cred-checks/client")
					b.ReportMetric(perClient(ops[2]), "sig-checks/client")
				}
			})
		}
	}
}
