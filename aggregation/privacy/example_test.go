package privacy_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/fedrec/fedrec/aggregation/privacy"
)

// A central-DP federated run: calibrate the noise for a budget, noise each
// round's sum of clipped updates, and keep the ledger.
func Example() {
	const (
		rounds = 1000
		q      = 0.01 // each client joins a round with probability q
		delta  = 1e-6
		clip   = 0.5
	)
	z, _, err := privacy.NoiseForEpsilon(3, delta, q, rounds)
	if err != nil {
		panic(err)
	}
	acct, err := privacy.NewAccountant(privacy.Config{})
	if err != nil {
		panic(err)
	}
	r := rand.New(rand.NewPCG(1, 2)) // privacy.NewSecureRand() in production
	sum := make([]float64, 8)        // the round's sum of clipped updates
	for range rounds {
		privacy.AddGaussian(sum, z*clip, r)
		if err := acct.AddSampledGaussian(q, z, 1); err != nil {
			panic(err)
		}
	}
	eps, _, err := acct.Epsilon(delta)
	if err != nil {
		panic(err)
	}
	fmt.Printf("z = %.3f, eps = %.3f, ledger entries = %d\n", z, eps, len(acct.Entries()))
	// Output: z = 0.917, eps = 3.000, ledger entries = 1
}

// Distributed DP with secure aggregation: each client adds its Skellam share
// to its scaled, rounded update modulo 2^bits.
func ExamplePlanSkellam() {
	plan, err := privacy.PlanSkellam(privacy.SkellamConfig{
		Scale: 2000, Clip: 0.5, Dim: 1 << 17, NoiseMultiplier: 1, Clients: 100,
	})
	if err != nil {
		panic(err)
	}
	update := make([]uint64, 4) // a client's scaled, rounded update, mod 2^20
	privacy.AddSkellamMod(update, 20, plan.ClientVariance, rand.New(rand.NewPCG(1, 2)))

	acct, err := privacy.NewAccountant(privacy.Config{})
	if err != nil {
		panic(err)
	}
	// 97 of the 100 planned clients' noise reached the sum this round.
	if err := acct.AddSkellam(0.01, plan.Survivors(97), 1); err != nil {
		panic(err)
	}
	fmt.Printf("client variance %.0f, L2 %.1f, effective z %.3f\n", plan.ClientVariance, plan.L2, plan.NoiseMultiplier())
	// Output: client variance 10000, L2 1362.0, effective z 0.734
}
