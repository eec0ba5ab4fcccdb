package model

// Hyper is a starting point for training a model of one kind: its rank, the
// devices' local training, and the step of the server's FedAdam, the
// optimizer these values were tuned with.
type Hyper struct {
	Rank     int
	InitStd  float64 // of the initial item factors
	Train    TrainConfig
	ServerLR float64
}

// Defaults returns the settings fedrec starts from for kind, tuned on
// ml-latest-small (docs/ranking.md has the runs). The simulator and the
// coordinator both start from them, so a cluster trains as the simulator
// predicts.
//
// The implicit model ranks better with a larger rank than rating
// prediction needs, a confidence that grows slowly with the strength
// (alpha 0.7: a 5-star rating weighs 4.5, a single view 1.7), a smaller
// server step (FedAdam moves every coordinate by about its step each round,
// and an implicit update touches every item) and a small initial item side:
// random factors of std 0.1 at rank 64 drown the item biases, which learn
// popularity first, and federated training then needs 5 times the rounds.
func Defaults(kind Kind) Hyper {
	if kind == Implicit {
		return Hyper{Rank: 96, InitStd: 0.01, Train: TrainConfig{Reg: 0.15, LR: 0.03, Epochs: 1, Alpha: 0.7}, ServerLR: 0.05}
	}
	return Hyper{Rank: 32, InitStd: 0.1, Train: DefaultTrainConfig(), ServerLR: 0.1}
}
