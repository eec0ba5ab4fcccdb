// Package fixedpoint turns a client's float model update into integers modulo
// 2^b for secure aggregation, and turns the server's modular sum back into a
// float vector.
//
// Secure aggregation adds vectors of integers modulo 2^b: the server learns
// only the sum. Model updates are floats, so each client encodes its update
// and the server decodes the sum. The steps follow Kairouz, Liu and Steinke,
// "The Distributed Discrete Gaussian Mechanism for Federated Learning with
// Secure Aggregation" (2021), and Agarwal, Kairouz and Liu, "The Skellam
// Mechanism for Differentially Private Federated Learning" (2021).
//
// On the client, Encoder.Encode:
//
//  1. clips the update to L2 norm c (Params.Clip), which bounds any one
//     client's influence on the sum;
//  2. rotates it at random: pads it with zeros to the next power of two,
//     flips the sign of each coordinate by a public random ±1 taken from the
//     round's seed, applies the Walsh–Hadamard transform and divides by the
//     square root of the padded length;
//  3. multiplies by γ (Params.Scale) and rounds every coordinate at random to
//     one of its two neighbouring integers.
//
// The caller may add integer noise (Skellam, discrete Gaussian) to the
// rounded vector, then Encoder.Wrap reduces it modulo 2^b. Secure aggregation
// sums the wrapped vectors with AddMod. On the server, Encoder.Decode reads
// each value of the sum as a signed integer in [-2^(b-1), 2^(b-1)), divides by
// γ, undoes the rotation and drops the padding.
//
// Why rotate. The modulus has to hold the largest coordinate of the sum, not
// its length. An update can put all its weight in one coordinate, and then
// that coordinate is as large as the whole norm c. The rotation is orthogonal,
// so it keeps lengths and sums, but it spreads any fixed vector evenly: after
// it, every coordinate of a vector of norm c is at most about
// c·sqrt(2·ln(4d/δ)/d) except with probability δ, for padded length d. For
// d = 131,072 that is about 40 times smaller than c, five bits saved for the
// same precision. Params.WrapProb > 0 uses that bound; the default,
// WrapProb = 0, uses the worst case instead and never wraps whatever the
// inputs. The Walsh–Hadamard transform takes d·log2(d) additions in place, so
// the rotation costs about as much as reading the vector a few times.
//
// Why randomized rounding. Rounding to the nearest integer is biased, and the
// bias of many clients adds up in the same direction. Rounding up with
// probability equal to the fractional part makes every rounded coordinate
// equal, on average, to the real one, so the decoded sum is an unbiased
// estimate of the sum of clipped updates. Each coordinate moves by less than
// one integer step, 1/γ in float units, with variance at most 1/4 step². With
// Params.RoundingBeta > 0 the rounding is repeated until the rounded vector's
// norm is within a bound slightly above c·γ (conditional rounding), which
// lowers the sensitivity that noise must cover, at the price of a bias small
// enough to ignore in practice.
//
// What the modulus must cover. With n = Params.MaxClients clients, every
// coordinate of the integer sum lies within n·(c·γ·s + 1) of zero, where s is
// 1 in the worst case and about sqrt(2·ln(4d/δ)/d) with WrapProb = δ, plus the
// noise, for which the modulus leaves NoiseSigmas standard deviations
// (Params.NoiseStd, in float units). 2^(b-1) must exceed that bound, or the
// sum wraps and the decoded coordinates are garbage. NewEncoder chooses b from
// γ, or the largest γ for b; see NewEncoder for the exact formula.
//
// Precision. The decoded sum of n clients differs from the sum of their
// clipped updates by the rounding error, the inverse rotation of a vector whose
// coordinates have variance at most n/4 divided by γ²: its L2 norm is at most
// n·sqrt(d)/γ, and typically sqrt(n·d)/(2γ). A larger γ is more precise and
// needs more bits.
//
// Encoders are safe for concurrent use. Encode needs a PaddedDim-long []int64,
// Wrap and Decode a PaddedDim-long []uint64; the Encoder keeps pooled scratch
// space so that steady-state calls do not allocate.
package fixedpoint
