// Package sim runs federated training with thousands of virtual clients in
// one process, using the same model and aggregation code as real devices
// and the coordinator. It loads MovieLens (100K, 1M, latest-small), any
// user,item,rating CSV, or a built-in synthetic data set; samples a cohort
// each round with dropouts and stragglers; evaluates every few rounds; and
// reports metrics as CSV, a JSON summary and a plot.
package sim
