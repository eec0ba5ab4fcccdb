package sim

import (
	"context"
	"testing"
)

func TestImplicitRounds(t *testing.T) {
	for _, tt := range []struct{ users, perRound, want int }{
		{610, 100, 200},     // ml-latest-small
		{2000, 100, 200},    // the default synthetic set
		{6040, 100, 300},    // ML-1M's users: 302 visits' worth, capped
		{5000, 100, 250},    // five visits each
		{100000, 2000, 250}, // a large population with large cohorts
		{100000, 100, 300},
		{10, 0, 200},
	} {
		if got := implicitRounds(tt.users, tt.perRound); got != tt.want {
			t.Errorf("implicitRounds(%d, %d) = %d, want %d", tt.users, tt.perRound, got, tt.want)
		}
	}
}

// An implicit run without --rounds takes its rounds from the population;
// explicit runs and given rounds keep theirs.
func TestDefaultRoundsByPopulation(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    Config
		want int
	}{
		{"implicit, 5 visits", Config{Users: 100, Items: 40, ClientsPerRound: 2}, 250},
		{"implicit, given", Config{Users: 100, Items: 40, ClientsPerRound: 2, Rounds: 7}, 7},
		{"explicit", Config{Objective: Explicit, Users: 100, Items: 40, ClientsPerRound: 2}, 300},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.Rank, c.Seed, c.Baseline, c.EASE = 4, 1, Off, Off
			_, res, _, err := prepare(context.Background(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Config.Rounds != tt.want {
				t.Errorf("rounds = %d, want %d", res.Config.Rounds, tt.want)
			}
		})
	}
}
