package coordinator

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// TestCentralNoise checks that a round charged to the privacy ledger with
// noise multiplier z really carries noise of std z·clip on the sum: clients
// upload zero updates, FedAvg with server LR 1 applies the noisy mean.
func TestCentralNoise(t *testing.T) {
	tests := []struct {
		z       float64
		wantRMS float64 // of the change to the model: z·clip / ClientsPerRound
	}{
		{0, 0},
		{30, 30.0 / 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("z=", tt.z), func(t *testing.T) {
			tr := testTraining()
			tr.Items, tr.Rank = 50, 4
			tr.OverSelect, tr.MinClients = 0, 3
			tr.NoiseMultiplier, tr.Clip = tt.z, 1
			tr.Optimizer = aggregation.OptimizerConfig{Name: "fedavg", LR: 1}
			c := newTestCluster(t, 1, tr)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			for i := range 3 {
				go c.participate(ctx, fmt.Sprintf("c%d", i), func(p *wire.Plan) []float64 { return make([]float64, c.dim()) })
			}
			c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= 2 })
			var before, after []float64
			c.nodes[0].View(func(s *State) {
				before, after = s.Model(1).Model.Params, s.Model(2).Model.Params
			})
			var ss float64
			for i := range before {
				d := after[i] - before[i]
				ss += d * d
			}
			rms := math.Sqrt(ss / float64(len(before)))
			if tt.wantRMS == 0 && rms != 0 || tt.wantRMS > 0 && math.Abs(rms/tt.wantRMS-1) > 0.2 {
				t.Errorf("RMS change of the model = %.4g, want %.4g", rms, tt.wantRMS)
			}
		})
	}
}
