// Package aggregation turns a cohort's client updates into a step on the
// global model: per-client L2 clipping, weighted federated averaging, and
// the server optimizers FedAvg, FedAdam and FedYogi (Reddi et al.,
// "Adaptive Federated Optimization").
//
// The Aggregator interface is what both paths implement: Plain sees each
// update in the clear; the secure path (subpackage secagg, with fixedpoint
// for encoding and privacy for differential privacy) learns only the sum.
package aggregation
