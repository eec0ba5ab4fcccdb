package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/fedrec/fedrec/aggregation/privacy"
)

// runPrivacy plans a privacy budget: ε for a noise multiplier, or the
// noise multiplier for a target ε, for Poisson-sampled Gaussian rounds (as
// TensorFlow Privacy's compute_dp_sgd_privacy).
func runPrivacy(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("privacy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	q := fs.Float64("sampling-rate", 0, "chance that a client takes part in a round (cohort / population)")
	z := fs.Float64("noise-multiplier", 0, "noise std divided by the clip norm")
	target := fs.Float64("target-epsilon", 0, "find the smallest noise multiplier that keeps ε at or below this")
	rounds := fs.Int("rounds", 0, "number of rounds")
	delta := fs.Float64("delta", 1e-5, "δ of the (ε, δ) guarantee")
	asJSON := fs.Bool("json", false, "print JSON (fields epsilon, noise_multiplier, order, delta)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("privacy: unexpected argument %q", fs.Arg(0))
	case *rounds <= 0:
		return errors.New("privacy: --rounds must be > 0")
	case (*z > 0) == (*target > 0):
		return errors.New("privacy: give exactly one of --noise-multiplier and --target-epsilon")
	}
	out := struct {
		Epsilon         float64 `json:"epsilon"`
		NoiseMultiplier float64 `json:"noise_multiplier"`
		Order           float64 `json:"order"`
		Delta           float64 `json:"delta"`
		SamplingRate    float64 `json:"sampling_rate"`
		Rounds          int     `json:"rounds"`
	}{NoiseMultiplier: *z, Delta: *delta, SamplingRate: *q, Rounds: *rounds}
	var err error
	if *target > 0 {
		out.NoiseMultiplier, out.Order, err = privacy.NoiseForEpsilon(*target, *delta, *q, *rounds)
		if err != nil {
			return fmt.Errorf("privacy: %w", err)
		}
	}
	acc, err := privacy.NewAccountant(privacy.Config{})
	if err != nil {
		return err
	}
	if err := acc.AddSampledGaussian(*q, out.NoiseMultiplier, *rounds); err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	if out.Epsilon, out.Order, err = acc.Epsilon(*delta); err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if *target > 0 {
		fmt.Fprintf(stdout, "noise multiplier %.4g meets ε = %.4g (ε %.4g at δ = %g, optimal RDP order %g) over %d rounds at sampling rate %g\n",
			out.NoiseMultiplier, *target, out.Epsilon, *delta, out.Order, *rounds, *q)
		return nil
	}
	fmt.Fprintf(stdout, "ε = %.4g at δ = %g (optimal RDP order %g) for %d rounds, sampling rate %g, noise multiplier %g\n",
		out.Epsilon, *delta, out.Order, *rounds, *q, *z)
	return nil
}
