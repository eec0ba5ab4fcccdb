// Package model is fedrec's recommender: matrix factorization for explicit
// ratings and implicit feedback, split the way federated learning needs it.
//
// The global half (Model: item factors, item biases, the global mean) is
// shared and trained by aggregation; the private half (User: a user's factor
// and bias) is fitted on the device in closed form and never leaves it.
// A Trainer computes one user's contribution to a round: a dense change to
// the global parameters, dense so that its shape does not reveal which items
// the user touched. Metrics are sums, so that evaluation can be federated.
package model
