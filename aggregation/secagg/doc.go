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
package secagg
