// Package secagg implements secure aggregation: the server learns the sum of
// the clients' vectors and nothing else about any one of them, even though
// some clients drop out halfway through.
//
// It follows Bonawitz et al., "Practical Secure Aggregation for
// Privacy-Preserving Machine Learning" (CCS 2017), in its honest-but-curious
// form, with the sparse neighbour graph of Bell et al., "Secure
// Single-Server Aggregation with (Poly)Logarithmic Overhead" (CCS 2020,
// "SecAgg+"). The package is a pure state machine: no networking, no
// goroutines that outlive a call, no clock. A Client and a Server consume
// and produce plain message structs; the simulator passes them in process
// and the coordinator carries them over QUIC (the wire package converts
// them). See docs/threat-model.md for what it does and does not protect.
//
// # The round
//
// A Config fixes the round: its id, the cohort, the vector length d, the
// modulus 2^b, the neighbour degree k and the threshold t. Every input is a
// vector of d values in [0, 2^b), and the result is their sum mod 2^b.
//
// The clients are joined by a graph. With k = 0 (or k >= n-1) it is
// complete: every client shares secrets with, and masks against, every
// other — the original protocol. Otherwise the clients are placed on a ring
// in the order of a permutation derived from the public Config.Seed, and
// each is joined to the k/2 nearest on either side (a Harary graph). A
// client's secrets are shared only among its k neighbours, with threshold
// t, and it masks only against them, so its costs grow with k, not n.
//
// For each round, each client u draws two X25519 key pairs, (c_u, C_u) for
// encrypting shares and (s_u, S_u) for masks, and a 32-byte self-mask seed
// b_u. The four phases are:
//
//  1. Advertise keys. u sends (C_u, S_u) in a KeyAdvert. When the driver
//     closes the phase the responders form U1.
//
//  2. Share keys. The server sends u the keys of its neighbours in U1
//     (PeerKeys). u splits s_u and b_u into Shamir shares with threshold t,
//     one per neighbour v, encrypts each pair of shares under AES-256-GCM
//     with a key derived from ECDH(c_u, C_v), and uploads them
//     (ShareUpload). Responders form U2.
//
//  3. Masked input. The server forwards to u the ciphertexts addressed to
//     it (ShareDelivery); their senders are u's neighbours in U2. u sends
//
//     y_u = x_u + PRG(b_u) + Σ_{v>u} PRG(s_uv) − Σ_{v<u} PRG(s_uv)  (mod 2^b),
//
//     summing over its neighbours v in U2, where s_uv is derived from ECDH(s_u, S_v) = ECDH(s_v, S_u), so the
//     pairwise masks cancel in the sum. Responders form U3; the server has
//     added their y_u into a running sum.
//
//  4. Unmask. The server tells u which of its neighbours in U2 survived
//     (are in U3) and which dropped (UnmaskRequest). u returns its share of
//     b_v for each survivor and its share of s_v for each dropped v, and
//     never both for one peer (ErrConflictingReveal). Responders form U4.
//     The server reconstructs b_v for every v in U3 and s_v for every
//     dropped v, subtracts the self masks, cancels the pairwise masks the
//     survivors still carry towards dropped neighbours, and has
//     Σ_{u in U3} x_u mod 2^b (Result).
//
// Double masking is what makes dropouts safe. If the server learns s_u
// because u seemed to drop, and y_u then arrives late, y_u is still hidden
// by PRG(b_u), whose shares the honest neighbours refuse to give out once
// they have revealed shares of s_u.
//
// # Signed rounds: an actively malicious server
//
// With Config.Signed the round follows the malicious-model variant of
// Bonawitz et al. (section 4). Each client has a long-term Identity (the
// device certificate), supplied to NewSignedClient:
//
//   - Its KeyAdvert carries a signature of (config digest, client id,
//     C_u, S_u) and the credential that verifies it. Every client verifies
//     every neighbour's advert in ShareKeys and refuses the round on a
//     missing or bad one (ErrBadSignature): the server can no longer
//     substitute keys or invent clients.
//   - A consistency check (PhaseConsistencyCheck) runs between the masked
//     inputs and unmasking: the server sends every client in U3 the set
//     U3 (ConsistencyRequest); the client checks it (itself in it, every
//     neighbour in it one that delivered shares, at least t such
//     neighbours) and confirms it to each of those neighbours with a tag,
//     an HMAC of (config digest, U3) under a key that only the two of
//     them hold, derived from their signed cipher keys
//     (ConsistencyResponse). It confirms one set per round. The
//     UnmaskRequest then carries the tags its neighbours addressed to it,
//     and the client reveals nothing unless at least t neighbours in its
//     set validly confirmed exactly that set (ErrTooFewTags) and the
//     request's survivors and dropped neighbours are those of that set
//     (ErrInconsistent). Bonawitz et al. sign U3 instead; a tag convinces
//     the one client that needs convincing for a fraction of the cost
//     of a signature check.
//
// With t > (k + c)/2 (ActiveThreshold), no server colluding with c clients
// per neighbourhood can learn an honest client's input; Config.CheckActive
// and ActiveTolerance let a device's policy check a round against that.
// Phase values are append-only, so PhaseConsistencyCheck (7) is
// numerically after PhaseDone; compare phases by the protocol's order, not
// by value. An unsigned round is unchanged, digest included.
//
// # Driving it
//
// The driver owns the clock. It opens a round with NewServer and, on each
// device, NewClient; it delivers messages; and when a phase's deadline
// passes (or Server.Awaiting is empty) it calls Server.ClosePhase. Late
// messages are rejected with ErrPhaseClosed. Every rejection wraps a
// sentinel error for errors.Is; nothing panics on bad input. A client
// method that fails leaves the client unchanged.
//
// When a phase closes, the server checks that the round can still finish
// and otherwise aborts (ErrAborted with ErrTooFewSurvivors or
// ErrDisconnected) before anyone reveals anything:
//
//   - After phases 1 and 2, a client with fewer than t neighbours left is
//     pruned from U1 or U2 (treated as dropped), repeatedly, since its
//     secrets could not be shared or recovered; the round aborts if fewer
//     than Config.MinSurvivors (default t) remain.
//   - After phase 3, every survivor and every dropped client with a
//     surviving neighbour needs t surviving neighbours, and the survivors
//     must be connected: if the graph fell apart, unmasking would reveal
//     the sum of each part separately.
//   - After phase 4, every needed secret needs t shares.
//
// Clients check the same from their side: at least t neighbours in each
// message, and in phase 4 at least t surviving neighbours.
//
// # Cryptography
//
// Keys come from HKDF-SHA256 with an info string naming the purpose, a
// SHA-256 digest of the whole Config (so nothing carries over between
// rounds or between different views of a round), and the client ids
// involved. Share encryption keys are per direction and used once. The
// PRG is AES-256-CTR with a zero IV (AES-NI on amd64 and arm64), read as
// 4-byte words when b <= 32 and 8-byte words otherwise; the low b bits of
// a uniform word are uniform mod 2^b. Masks are expanded in tiles of 4,096
// elements into a reusable buffer and added straight into the destination;
// the server adds all its masks tile by tile, on Workers goroutines that
// each own a range of the vector.
//
// Shamir sharing is over GF(2^61−1). A 32-byte secret is cut into five
// chunks of at most 7 bytes, each shared with its own polynomial, so a
// share is ShareLen = 5 field elements. Holder v evaluates at v+1, which
// is distinct and non-zero for every uint32 id, dense or not. GF(2^8)
// would cap the holders at 255 (too few for a complete graph of 1,000), and
// a 256-bit prime field in math/big is slow and allocates; the Mersenne
// prime reduces with shifts and adds. A reconstruction from too few or
// corrupted shares almost always produces chunks that do not fit in 7
// bytes and is rejected (ErrReconstruct); a reconstructed mask key must
// also match the advertised public key.
//
// # Choosing k and t
//
// t is the number of a client's neighbours needed to recover its secrets.
// Fewer than t colluding neighbours learn nothing about them, and when t is
// a majority of the neighbours (t > k/2, the default floor(k/2)+1) a server
// that tells different neighbours different stories about one client
// cannot collect both of its secrets (see docs/threat-model.md). Against
// that, every client needs t of its neighbours to survive until the end.
// If a fraction δ of the clients that shared keys drops before unmasking
// completes, the chance that some neighbourhood falls below t is at most
// n·P[Binomial(k, 1−δ) < t]. The smallest even k that keeps that below
// 10⁻⁶ with t = floor(k/2)+1:
//
//	n        δ=5%        δ=10%       δ=20%        δ=30%
//	100      k=22 t=12   k=34 t=18   k=74 t=38    complete
//	1,000    k=24 t=13   k=38 t=20   k=84 t=43    k=212 t=107
//	10,000   k=26 t=14   k=42 t=22   k=94 t=48    k=238 t=120
//	100,000  k=30 t=16   k=46 t=24   k=104 t=53   k=264 t=133
//	10⁶      k=32 t=17   k=52 t=27   k=114 t=58   k=290 t=146
//
// k grows as log n, as Bell et al. show; the constant grows quickly with
// the dropout rate because t must stay a majority. A deployment that
// expects heavy dropout and trusts its server more than its clients may
// lower t (the tests use t ≈ k/4, which survives 30% dropout with k ≈ 20)
// at the price of the protection against a lying server. Clients that drop
// before phase 2 closes are simply left out (their neighbours' counts
// shrink, and pruning removes any client left with fewer than t).
//
// b must leave room for the sum: with inputs below 2^m and at most n
// clients, b >= m + ceil(log2 n) keeps the sum from wrapping. The masks
// hide inputs perfectly mod 2^b whatever b is.
//
// # Costs
//
// A client does 2k+2 X25519 operations, O(k·t) field operations, and k+1
// mask expansions of d elements. The server adds |U3| vectors, expands
// |U3| self masks, and for each dropped client does k X25519 operations
// and regenerates one mask per surviving neighbour: about δ·(1−δ)·n·k
// expansions. Dropouts therefore dominate its cost in SecAgg+. Memory is
// O(d + n·k) on the server and O(d + k) on a client.
//
// # Speed
//
// Measured on a 2-core AMD EPYC (AES-NI; Go's crypto/aes does not use
// VAES), Go 1.26, Bits = 32, while other jobs shared the machine:
//
//	go test -run '^$' -bench MaskExpand -benchtime 20x ./aggregation/secagg/
//	go test -run '^$' -bench 'Round' -benchtime 1x ./aggregation/secagg/
//
// With one worker the benchmarks report the CPU time of their thread,
// which does all the work, so other processes do not inflate the figures
// (clock=cpu in the name). BenchmarkRound times a plaintext round in the
// same iteration: the server checking and adding the same number of
// vectors with the same function as HandleMaskedInput (addInput, one pass)
// and reducing the sum; ratio is the secure server's time over it.
//
// Mask expansion runs at 5.0–5.6 GB/s of keystream with 4-byte words and
// 5.5–6.4 GB/s with 8-byte words, against 8.6–9.0 GB/s for raw
// AES-256-CTR (cipher.NewCTR(...).XORKeyStream) over the same bytes: 1.6–1.7
// and 1.4–1.6 times the raw time, within the goal of 2. The difference is
// adding the words into the vector, about 0.2 ns a word in scalar Go.
// Folding four keystreams into the vector per pass, reading two 4-byte
// words as one uint64, saved 5–7% with many masks and cost more with few,
// so it is not done.
//
// One round, one worker (client: one client's time; unmask: closing the
// unmask phase, part of server):
//
//	n      d          drop  client    server   unmask  plaintext  ratio
//	100    118,592    0%    2.5 ms    16 ms    10 ms    3.6 ms     4.4
//	100    118,592    30%   1.9 ms    44 ms    40 ms    2.5 ms      17
//	500    118,592    0%    3.0 ms    76 ms    44 ms     16 ms     4.7
//	500    118,592    30%   2.4 ms   280 ms   250 ms     11 ms      25
//	1,000  118,592    0%    3.4 ms   160 ms    90 ms     33 ms     4.8
//	1,000  118,592    30%   2.6 ms   640 ms   590 ms     23 ms      28
//	100    1,000,000  0%     13 ms   120 ms    73 ms     33 ms     3.6
//	100    1,000,000  30%   9.4 ms   310 ms   280 ms     21 ms      15
//	500    1,000,000  0%     16 ms   560 ms   350 ms    150 ms     3.8
//	500    1,000,000  30%    11 ms   1.8 s    1.7 s     99 ms      19
//	1,000  1,000,000  0%     17 ms   1.2 s    690 ms    280 ms     4.2
//	1,000  1,000,000  30%    12 ms   3.9 s    3.5 s    230 ms      17
//
// The goal of a secure round within 2x of a plaintext round at n = 500,
// d = 118,592 is not met, and cannot be on one core with this PRG. The
// plaintext round is one pass over n·d values at about 0.27 ns a value
// (16 ms). The secure server makes the same pass (18–22 ms, probably
// because the simulation touches more memory between two inputs) and
// must then remove n self masks: n·d 4-byte words of AES-256 keystream,
// 237 MB, which take 26–28 ms at raw AES-NI speed and 44 ms with the
// subtraction. The keystream alone is therefore 1.7 plaintext rounds, a
// floor of 2.7x before any other work; relaying keys and shares adds about
// 10 ms (20 µs a client, about 5 µs of it the benchmark's clock reads).
// Against the two-pass check-then-add baseline used before (32 ms) the
// previous server read 2.7x; this one is 12–16% faster (76 ms against
// 86–90 ms in alternating runs), but the baseline is twice as fast.
//
// What would move it: more cores (unmasking splits the vector between
// Workers goroutines, so its 44 ms should divide by their number; not
// measured here, the second core being busy with other jobs); AES-128
// (raw CTR measured 1.37x faster here, but the PRG is part of the
// protocol, and the ratio would gain an estimated 10%); or a VAES
// keystream, which Go's crypto/aes does not have.
//
// With 30% dropouts the server also regenerates δ(1−δ)·n·k ≈ 1,900
// pairwise masks at n = 500, k = 18, each after an X25519 operation: about
// 2,240 expansions instead of 500, hence 25x. That is inherent in SecAgg+
// (a dropout costs up to k mask regenerations); only more cores or a
// smaller k reduce it.
//
// A client spends 3 ms a round at d = 118,592 (k+1 = 19 mask expansions
// and 2k+2 = 38 X25519 operations) and 16 ms at d = 10⁶; a plaintext
// client does no comparable work.
package secagg
