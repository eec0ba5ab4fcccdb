// Package step is a device's local training step in a round, apart from
// the SDK so that one benchmark (package steptest) runs the very step the
// SDK (package client) runs in its rounds, natively and compiled to
// WebAssembly in Chromium (client/web/browsertest).
package step

import (
	"math/rand/v2"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/model"
)

// Run fits the user, takes the local pass, clips the change to the model
// to norm clip and adds Gaussian noise of standard deviation std to it
// (none when std is 0). It returns the change and the fitted update.
func Run(t *model.Trainer, rs []model.Rating, clip, std float64, r *rand.Rand) ([]float64, model.Update, error) {
	delta := make([]float64, len(t.Model().Params))
	up, err := t.LocalUpdate(delta, rs, r)
	if err != nil {
		return nil, model.Update{}, err
	}
	aggregation.Clip(delta, clip)
	if std > 0 {
		privacy.AddGaussian(delta, std, r)
	}
	return delta, up, nil
}
