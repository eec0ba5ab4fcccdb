package fixedpoint_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
)

func Example() {
	// Shared by the server and all clients of the round.
	p := fixedpoint.Params{
		Dim:        5,
		Clip:       1,
		MaxClients: 2,
		Bits:       32,
		Seed:       [32]byte{1, 2, 3}, // public, fresh each round
	}
	enc, err := fixedpoint.NewEncoder(p)
	if err != nil {
		fmt.Println(err)
		return
	}

	updates := [][]float64{
		{0.1, -0.2, 0.3, 0, 0.05},
		{3, 0, -4, 0, 0}, // norm 5: clipped to norm 1
	}
	r := rand.New(rand.NewPCG(7, 8)) // each client uses its own randomness
	ints := make([]int64, enc.PaddedDim())
	wrapped := make([]uint64, enc.PaddedDim())
	sum := make([]uint64, enc.PaddedDim()) // what secure aggregation computes
	for _, x := range updates {
		if _, err := enc.Encode(ints, x, r); err != nil {
			fmt.Println(err)
			return
		}
		// Integer noise, if any, is added to ints here.
		if err := enc.Wrap(wrapped, ints); err != nil {
			fmt.Println(err)
			return
		}
		if err := fixedpoint.AddMod(sum, wrapped, enc.Params().Bits); err != nil {
			fmt.Println(err)
			return
		}
	}

	got := make([]float64, p.Dim)
	if err := enc.Decode(got, sum); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("padded to %d, γ = %.4g\n", enc.PaddedDim(), enc.Params().Scale)
	for i, v := range got {
		got[i] = math.Round(v*1e6)/1e6 + 0 // + 0 turns -0 into 0
	}
	fmt.Println(got)
	// Output:
	// padded to 8, γ = 1.074e+09
	// [0.7 -0.2 -0.5 0 0.05]
}
