// Package privacy provides differential privacy for federated aggregation:
// a privacy ledger that says how much privacy a run has spent, the noise
// that buys it, and an adaptive clip norm.
//
// # Accounting
//
// An Accountant is a ledger of rounds. Each round applies one mechanism to
// a random sample of clients: the Gaussian mechanism on a Poisson sample
// (each client joins with probability q), the Gaussian mechanism on a
// fixed-size sample, or the distributed Skellam mechanism on a Poisson
// sample. The accountant tracks the Rényi DP of the whole run at a list of
// orders (Config.Orders) by adding up the rounds, and turns it into an
// (ε, δ) guarantee on request with Epsilon or Delta.
//
// A noise multiplier z is always the noise standard deviation divided by the
// sensitivity: for a sum of client updates each clipped to L2 norm C and
// Poisson sampling, the noise std is z·C.
//
// The numbers follow the published accountants. Poisson-sampled Gaussian
// rounds use the analysis of Mironov, Talwar and Zhang (2019) exactly as
// Google's dp_accounting RdpAccountant and TF Privacy's compute_rdp do:
// integer orders by the binomial sum, fractional orders by their series.
// Fixed-size sampling uses the Wang, Balle and Kasiviswanathan (2019) bound,
// as dp_accounting does; it is only allowed under the ReplaceOne neighbouring
// relation, Poisson sampling only under AddOrRemoveOne (the default). The
// conversion to (ε, δ) is the improved one of Canonne, Kamath and Steinke
// (2020) by default, or the classic one of Mironov (2017). The tests
// reproduce the reference values of TF Privacy, dp_accounting and Opacus.
//
// The one deliberate difference from Opacus: for fractional orders the
// series is summed in absolute value, as current dp_accounting does, which
// can only overstate ε (by about 2e-4 in Opacus's own test case).
//
// # Replicating the ledger
//
// The ledger is plain data: Config() and Entries() describe the accountant
// completely, and Rebuild makes an identical one from them. The coordinator
// replicates entries, not ε: ε is recomputed from the entries wherever it is
// needed. On one machine a rebuilt accountant gives bit-identical results;
// across architectures the last bits of ε may differ, because the math
// library may.
//
// # Calibration
//
// NoiseForEpsilon finds the smallest noise multiplier that keeps a planned
// run within a target (ε, δ). As a method on an Accountant it spends what is
// left of the budget after the rounds already recorded.
//
// # Noise
//
// In central mode the server adds Gaussian noise to the sum with AddGaussian.
// In distributed mode every client adds integer Skellam noise (the
// difference of two Poisson variables) to its scaled and rounded update
// before secure aggregation, with SampleSkellam or AddSkellamMod; the shares
// add up to Skellam noise of the planned total variance. PlanSkellam works
// out each client's share and the sensitivities after rounding, following
// Agarwal, Kairouz and Liu (2021) and TensorFlow Federated. Rounding is
// charged as extra sensitivity, not counted as noise. If clients drop out
// their noise is missing; record the round with plan.Survivors(m).
//
// The Skellam privacy bound is the paper's, made to benefit from sampling
// with the general bound of Zhu and Wang (2019), as the paper's own code
// does. It is valid but not tight: with a fine scale it gives somewhat more
// ε than the Gaussian with the same noise (2.45 against 2.10 for q = 0.01,
// z = 1, 1000 rounds, δ = 1e-5).
//
// All randomness comes from a *rand.Rand the caller passes in. Use
// NewSecureRand in production and a seeded generator in tests. AddGaussian
// takes only a key from it: its deviates are NormFloat64's ziggurat on
// bytes of AES-256-CTR under that key, so the noise is as unpredictable as
// r, and a seeded r reproduces it. In js/wasm the bytes come from
// crypto.getRandomValues instead (WebAssembly has no fast cipher), so
// there the noise is secure whatever r is and never reproducible.
// Floating-point Gaussian noise is what TF Privacy and Opacus use; it is
// not hardened against the floating-point attacks of Mironov (2012).
//
// # Adaptive clipping
//
// A QuantileClipper moves the clip norm towards a target quantile of the
// clients' update norms (Andrew, Thakkar, McMahan and Ramaswamy 2021). Each
// client reports one bit, whether its update norm was within the clip; the
// server adds noise to the count and nudges the clip geometrically. The
// count costs privacy too, so part of the round's noise multiplier is given
// to it and the update gets the rest (UpdateNoiseMultiplier); the round is
// still recorded with the round's full noise multiplier.
package privacy
