package sim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/model"
)

// Config describes one simulated experiment. The zero value of every field
// means the documented default (see Defaults); those defaults reach the
// quality targets on ml-latest-small without tuning.
type Config struct {
	Data    string // "synthetic" (default), "ml-100k", "ml-1m", "ml-latest-small" or a CSV path
	DataDir string // where named sets live; default "./data"
	// TrainFile and TestFile, both or neither, replace Data and the split:
	// user,item,value CSVs split by another tool, so that results compare
	// with other libraries on identical data.
	TrainFile, TestFile string
	// Split is how Data is divided into train and test: "random" (default;
	// TestFrac of the interactions, uniformly) or "time" (each user's most
	// recent TestFrac).
	Split string
	// Synthetic data only.
	Users, Items int // 0 = SyntheticConfig defaults

	// Objective is what the model learns: "implicit" (default; every
	// interaction is a positive with confidence 1 + Alpha·value, every
	// other item a negative, Hu, Koren and Volinsky 2008), the objective
	// of a recommender that ranks; or "explicit" (predict the rating).
	Objective string

	Rounds          int     // default 300 explicit; implicit: 200 to 300 by the population (implicitRounds)
	ClientsPerRound int     // default 100 (all clients if fewer)
	Rank            int     // default model.Defaults: 96 (implicit) or 32 (explicit)
	LocalEpochs     int     // default 1
	LR              float64 // client SGD step, default 0.03
	Reg             float64 // L2 per observation, default 0.15 (implicit) or 0.12 (explicit)
	Alpha           float64 // implicit confidence scale, default 0.7
	Clip            float64 // per-client L2 clip of the update, 0 = none
	ServerOpt       string  // fedavg, fedadam, fedyogi; default fedadam, or with DP (and no ServerLR) as privateServerOpt decides
	ServerLR        float64 // default 0.05 (implicit) or 0.1 (explicit) for fedadam and fedyogi, 1 for fedavg
	Tau             float64 // adaptivity of fedadam/fedyogi, default 1e-3
	// ServerDecay schedules the server learning rate over the Rounds:
	// "cosine" (default for implicit) lowers it along a half cosine to 5 %
	// of ServerLR at the last round, so that the model stops jittering
	// around its optimum once it has converged; "none" (default for
	// explicit) keeps it.
	ServerDecay string
	Seed        uint64  // default 1
	TestFrac    float64 // default 0.2
	EvalEvery   int     // evaluate every N rounds, default 10
	EvalUsers   int     // evaluate on at most this many users (seeded sample), default 5000
	Workers     int     // default GOMAXPROCS

	// Dropout is the chance a selected client vanishes mid-round; Straggler
	// the chance it answers after the deadline (its update is discarded).
	Dropout, Straggler float64
	// OverSelect samples this many extra clients per round so that dropouts
	// still leave ClientsPerRound survivors on average; default 0.
	OverSelect float64
	// MinClients: a round with fewer survivors is abandoned, default 1.
	MinClients int

	// DP selects differential privacy: "off" (default), "central" (the
	// server adds Gaussian noise to the sum) or "distributed" (each client
	// adds its share of Skellam noise to its integer-encoded update).
	DP string
	// NoiseMultiplier z: the noise std of the summed updates is z·Clip.
	NoiseMultiplier float64
	// TargetEpsilon, if set, picks the smallest NoiseMultiplier that keeps
	// the whole run within (TargetEpsilon, Delta).
	TargetEpsilon float64
	// Delta of the (ε, δ) guarantee, default 1e-5.
	Delta float64
	// AdaptiveClip moves Clip each round towards the ClipQuantile (default
	// 0.5) of the clients' update norms, estimated privately (Andrew et al.
	// 2021); Clip is then the starting value.
	AdaptiveClip bool
	ClipQuantile float64
	// SecAgg sums the clients' updates by secure aggregation: the server
	// sees only masked integer vectors.
	SecAgg bool
	// UploadBits is how a client's update travels: 8 (the default),
	// quantized to a signed byte per parameter at a step the clip and the
	// dimension fix (fixedpoint.Quantizer, as devices send it; with
	// SecAgg, masked in a field just wide enough for the cohort's sum),
	// or 64, packed float64 (SecAgg: fixedpoint.Encoder's 32-bit field).
	// 8-bit uploads need a clip: without one the run clips at
	// defaultUploadClip. Distributed DP encodes with fixedpoint.Encoder.
	UploadBits int

	// Centralized trains the same model on pooled data (ALS) instead of
	// federating it.
	Centralized bool
	// Baseline also trains the centralized model for comparison;
	// BaselineAuto (the default) does so when the data has at most
	// 2,000,000 training interactions.
	Baseline Toggle
	// BaselineIters is the number of ALS sweeps, default 15.
	BaselineIters int
	// EASE also trains EASE (Steck 2019), a strong centralized item-item
	// recommender, as a reference; EASEAuto (the default) does so when
	// its matrix inversion is affordable (easeAffordable).
	EASE Toggle
	// EASELambda is EASE's L2 penalty, default 500.
	EASELambda float64
}

// Objectives.
const (
	Implicit = "implicit"
	Explicit = "explicit"
)

// Server learning-rate schedules.
const (
	DecayNone   = "none"
	DecayCosine = "cosine"
)

// Splits.
const (
	SplitRandom = "random"
	SplitTime   = "time"
)

// defaultPrivateClip is the clip norm used with DP or secure aggregation
// when none is given: about the median norm of a client's update early in
// training on MovieLens.
const defaultPrivateClip = 0.25

// defaultUploadClip is the clip of 8-bit uploads when none is given:
// above the largest update norm measured on ml-latest-small (about 3.7
// implicit and 1.1 explicit over a run), so that it hardly ever clips,
// and no larger, since the quantization step grows with it.
func defaultUploadClip(k model.Kind) float64 {
	if k == model.Implicit {
		return 4
	}
	return 1.5
}

// Toggle is a tri-state switch whose zero value means "decide for me".
type Toggle int8

// Toggle values.
const (
	Auto Toggle = iota
	On
	Off
)

// Defaults returns c with every zero field set to its default.
func (c Config) Defaults() Config {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	deff := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Data == "" && c.TrainFile == "" && c.TestFile == "" {
		c.Data = "synthetic"
	}
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.Split == "" && c.TrainFile == "" {
		c.Split = SplitRandom
	}
	if c.Objective == "" {
		c.Objective = Implicit
	}
	def(&c.ClientsPerRound, 100)
	kind, rounds, decay := model.Explicit, 300, DecayNone
	if c.Objective == Implicit {
		// Implicit runs converge in fewer rounds (docs/ranking.md) and
		// then gain from a decaying server step.
		kind, rounds, decay = model.Implicit, 200, DecayCosine
	}
	h := model.Defaults(kind)
	def(&c.Rounds, rounds)
	if c.ServerDecay == "" {
		c.ServerDecay = decay
	}
	def(&c.Rank, h.Rank)
	deff(&c.Reg, h.Train.Reg)
	if kind == model.Implicit {
		deff(&c.Alpha, h.Train.Alpha)
	}
	def(&c.LocalEpochs, h.Train.Epochs)
	deff(&c.LR, h.Train.LR)
	if c.DP == "" {
		c.DP = DPOff
	}
	// With DP, Defaults cannot yet know how loud the noise will be: it says
	// fedavg, and Run revisits the choice once the population is known
	// (privateServerOpt).
	switch {
	case c.ServerOpt == "" && c.DP == DPOff:
		c.ServerOpt = "fedadam"
	case c.ServerOpt == "":
		c.ServerOpt = "fedavg"
	}
	if c.ServerOpt == "fedavg" {
		deff(&c.ServerLR, 1)
	}
	deff(&c.ServerLR, h.ServerLR)
	deff(&c.Tau, 1e-3)
	if c.Seed == 0 {
		c.Seed = 1
	}
	deff(&c.TestFrac, 0.2)
	def(&c.EvalEvery, 10)
	def(&c.EvalUsers, 5000)
	def(&c.Workers, runtime.GOMAXPROCS(0))
	def(&c.MinClients, 1)
	def(&c.BaselineIters, 15)
	deff(&c.EASELambda, model.DefaultEASELambda)
	deff(&c.Delta, 1e-5)
	if (c.DP != DPOff || c.SecAgg || c.AdaptiveClip) && c.Clip == 0 {
		c.Clip = defaultPrivateClip
	}
	if c.UploadBits == 0 && c.DP != DPDistributed {
		c.UploadBits = 8
	}
	if c.UploadBits == 8 && c.Clip == 0 {
		c.Clip = defaultUploadClip(kind)
	}
	return c
}

// Validate names the first bad field of a defaulted config.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("sim: %s = %v, want %s", field, v, want)
	}
	switch {
	case c.Rounds < 0:
		return bad("Rounds", c.Rounds, ">= 0")
	case c.ClientsPerRound < 1:
		return bad("ClientsPerRound", c.ClientsPerRound, ">= 1")
	case c.Rank < 1 || c.Rank > 1024:
		return bad("Rank", c.Rank, "1..1024")
	case c.LocalEpochs < 0:
		return bad("LocalEpochs", c.LocalEpochs, ">= 0")
	case !finitePos(c.LR):
		return bad("LR", c.LR, "finite > 0")
	case !finiteNonNeg(c.Reg):
		return bad("Reg", c.Reg, "finite >= 0")
	case !finiteNonNeg(c.Clip):
		return bad("Clip", c.Clip, "finite >= 0")
	case c.UploadBits != 0 && c.DP == DPDistributed:
		return errors.New("sim: UploadBits does not apply to distributed DP (its Skellam shares need aggregation/fixedpoint's wider encoding)")
	case c.UploadBits != 0 && c.UploadBits != 8 && c.UploadBits != 64:
		return bad("UploadBits", c.UploadBits, "8 or 64")
	case !(c.TestFrac > 0 && c.TestFrac < 1):
		return bad("TestFrac", c.TestFrac, "in (0,1)")
	case c.EvalEvery < 1:
		return bad("EvalEvery", c.EvalEvery, ">= 1")
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return bad("Dropout", c.Dropout, "in [0,1)")
	case !(c.Straggler >= 0 && c.Straggler < 1):
		return bad("Straggler", c.Straggler, "in [0,1)")
	case !(c.OverSelect >= 0) || math.IsInf(c.OverSelect, 0):
		return bad("OverSelect", c.OverSelect, "finite >= 0")
	case c.MinClients < 1:
		return bad("MinClients", c.MinClients, ">= 1")
	case c.DP != DPOff && c.DP != DPCentral && c.DP != DPDistributed:
		return bad("DP", c.DP, "off, central or distributed")
	case c.DP != DPOff && c.NoiseMultiplier <= 0 && c.TargetEpsilon <= 0:
		return bad("NoiseMultiplier", c.NoiseMultiplier, "> 0 (or set TargetEpsilon) when DP is on")
	case !finiteNonNeg(c.NoiseMultiplier):
		return bad("NoiseMultiplier", c.NoiseMultiplier, "finite >= 0")
	case !finiteNonNeg(c.TargetEpsilon):
		return bad("TargetEpsilon", c.TargetEpsilon, "finite >= 0")
	case !(c.Delta > 0 && c.Delta < 1):
		return bad("Delta", c.Delta, "in (0,1)")
	case c.Users < 0 || c.Items < 0:
		return bad("Users/Items", fmt.Sprint(c.Users, "/", c.Items), ">= 0")
	case c.Objective != Implicit && c.Objective != Explicit:
		return bad("Objective", c.Objective, "implicit or explicit")
	case c.Objective == Explicit && c.Alpha != 0:
		return errors.New("sim: Alpha (the implicit confidence scale) does not apply to the explicit objective")
	case !finiteNonNeg(c.Alpha):
		return bad("Alpha", c.Alpha, "finite >= 0")
	case (c.TrainFile == "") != (c.TestFile == ""):
		return errors.New("sim: TrainFile and TestFile go together: give both or neither")
	case c.TrainFile != "" && c.Data != "":
		return errors.New("sim: Data does not apply with TrainFile and TestFile (the files are the data)")
	case c.TrainFile != "" && c.Split != "":
		return errors.New("sim: Split does not apply with TrainFile and TestFile (the files are the split)")
	case c.TrainFile == "" && c.Split != SplitRandom && c.Split != SplitTime:
		return bad("Split", c.Split, "random or time")
	case c.ServerDecay != DecayNone && c.ServerDecay != DecayCosine:
		return bad("ServerDecay", c.ServerDecay, "none or cosine")
	case !finitePos(c.EASELambda):
		return bad("EASELambda", c.EASELambda, "finite > 0")
	}
	return nil
}

// privateServerOpt picks the server optimizer, and its default learning
// rate, of a private run that was given neither, once the population is
// known.
//
// FedAdam divides each coordinate's step by the root mean square of its
// recent updates plus Tau. Where the DP noise on the averaged update is
// below Tau, a coordinate that only sees noise hardly moves, and Adam's
// per-coordinate scaling lets an item rated by 1 % of the cohort learn as
// fast as one rated by half of it: on the synthetic set with 100,000 users
// at ε = 4 (noise about 2e-4) FedAdam reaches RMSE 0.698 and FedAvg, with
// server learning rate 10, 0.83. Where the noise is above Tau,
// Adam turns it into steps of about the server learning rate on every item
// a round hardly touches, and plain FedAvg learns far better
// (ml-latest-small's 610 users at ε = 4, noise about 9e-3: FedAvg 0.926,
// FedAdam 2.04). See docs/privacy-results.md. The noise is the Gaussian
// calibration's; the Skellam one of distributed DP is somewhat larger.
func (c Config) privateServerOpt(population int) (Config, error) {
	if c.DP == DPOff {
		return c, nil
	}
	sd, err := c.meanNoiseStd(population)
	if err != nil {
		return c, err
	}
	c.ServerOpt = "fedavg"
	if sd < c.Tau {
		c.ServerOpt = "fedadam"
	}
	c.ServerLR = 0
	return c.Defaults(), nil
}

// meanNoiseStd is the standard deviation, per coordinate, of the DP noise
// on the averaged update: z·Clip over the expected number of survivors.
func (c Config) meanNoiseStd(population int) (float64, error) {
	if population < 1 {
		return 0, fmt.Errorf("sim: no clients with training data")
	}
	q := math.Min(1, float64(c.ClientsPerRound)/float64(population))
	denom := math.Max(1, q*float64(population)*(1-c.Dropout-c.Straggler))
	z := c.NoiseMultiplier
	if c.TargetEpsilon > 0 {
		var err error
		if z, _, err = privacy.NoiseForEpsilon(c.TargetEpsilon, c.Delta, q, c.Rounds); err != nil {
			return 0, fmt.Errorf("sim: calibrating noise for ε = %g: %w", c.TargetEpsilon, err)
		}
	}
	return z * c.Clip / denom, nil
}

func finitePos(x float64) bool    { return x > 0 && !math.IsInf(x, 0) }
func finiteNonNeg(x float64) bool { return x >= 0 && !math.IsInf(x, 0) }

// Row is one evaluated round, the columns of metrics.csv.
type Row struct {
	Round     int     `json:"round"`
	Clients   int     `json:"clients"` // survivors aggregated in this round
	TrainLoss float64 `json:"train_loss"`
	RMSE      float64 `json:"rmse"`
	MAE       float64 `json:"mae"`
	// Ranking over every item the user has not interacted with, at the
	// Cutoffs 10 and 20: Recall@K, NDCG@K, the share of users with a hit
	// in their top K and the share of the catalogue shown in any top K.
	Recall    float64 `json:"recall_at_10"`
	NDCG      float64 `json:"ndcg_at_10"`
	Recall20  float64 `json:"recall_at_20"`
	NDCG20    float64 `json:"ndcg_at_20"`
	UserCov   float64 `json:"user_coverage_at_10"`
	CatCov    float64 `json:"catalogue_coverage_at_10"`
	UserCov20 float64 `json:"user_coverage_at_20"`
	CatCov20  float64 `json:"catalogue_coverage_at_20"`
	// Epsilon is the privacy spent so far; NaN while no privacy is applied.
	Epsilon   float64 `json:"epsilon"`
	BytesUp   int64   `json:"bytes_up"`   // cumulative, all clients
	BytesDown int64   `json:"bytes_down"` // cumulative, all clients
	WallS     float64 `json:"wall_s"`
	Clip      float64 `json:"clip"` // the round's clip norm (0 = none)
}

// Result is what a run produced.
type Result struct {
	Config   Config
	Dataset  DatasetInfo
	Rows     []Row // one per evaluated round
	Final    Row
	Baseline *Row // centralized model on the same split, if trained
	// Popular ranks items by how many training users interacted with
	// them: the floor every recommender must clear.
	Popular *Row
	// EASE is the strong centralized reference, if trained.
	EASE      *Row
	Abandoned int // rounds with fewer than MinClients survivors
	// NoiseMultiplier is the z the run used (calibrated from
	// TargetEpsilon if that was set).
	NoiseMultiplier float64
	// UpPerParam and DownPerParam are the bytes a client sends and
	// receives per round, per model parameter (updates' and models'
	// payloads); Saturated is the share of quantized coordinates that
	// were clamped to the 8-bit range.
	UpPerParam, DownPerParam float64
	Saturated                float64
	Wall                     time.Duration
}

// DatasetInfo summarizes the data a run used.
type DatasetInfo struct {
	Name     string `json:"name"`
	Users    int    `json:"users"`
	Items    int    `json:"items"`
	Train    int    `json:"train_interactions"`
	Test     int    `json:"test_interactions"`
	Implicit bool   `json:"implicit"`
	Split    string `json:"split"`
	// Dropped counts test interactions of a TestFile that no model can
	// score: unknown user or item, or also in training.
	Dropped      int `json:"dropped_test_interactions,omitempty"`
	MeanPerRound int `json:"-"`
}

// Observer hears about progress; all methods are called from Run's
// goroutine. A nil Observer is allowed.
type Observer interface {
	Phase(msg string)
	Round(round, total int, last *Row)
}

// Run loads the data, trains, and evaluates, as c describes.
// implicitRounds is the default number of rounds of an implicit run:
// enough for the cohorts to visit each user about five times, at least 200
// and at most 300. 200 suffice on ml-latest-small's 610 users; the
// federated model falls 3 % behind its centralized twin at 6,040 users
// after 200 rounds (about three visits each) and is level after 300
// (docs/ranking.md).
func implicitRounds(users, perRound int) int {
	const visits, least, most = 5, 200, 300
	if perRound < 1 {
		return least
	}
	return min(most, max(least, (visits*users+perRound-1)/perRound))
}

func Run(ctx context.Context, c Config, obs Observer) (*Result, error) {
	env, res, obs, err := prepare(ctx, c, obs)
	if err != nil || res.Config.Centralized {
		return res, err
	}
	c = res.Config
	obs.Phase(fmt.Sprintf("federated training: %d rounds of %d clients", c.Rounds, c.ClientsPerRound))
	if err := env.federate(ctx, env.start, res, obs); err != nil {
		return nil, err
	}
	res.Wall = time.Since(env.start)
	return res, nil
}

// prepare is what every run does first: defaults and validation, the data
// and its split, and the centralized baseline when asked for (which is the
// whole run with Centralized).
func prepare(ctx context.Context, c Config, obs Observer) (*env, *Result, Observer, error) {
	autoOpt := c.ServerOpt == "" && c.ServerLR == 0
	autoRounds := c.Rounds == 0
	c = c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, nil, nil, err
	}
	if obs == nil {
		obs = nopObserver{}
	}
	start := time.Now()
	obs.Phase("loading " + cmp.Or(c.Data, c.TrainFile+" and "+c.TestFile))
	env, err := load(c)
	if err != nil {
		return nil, nil, nil, err
	}
	env.start = start
	if autoRounds && c.Objective == Implicit {
		c.Rounds = implicitRounds(len(env.active), c.ClientsPerRound)
		env.c = c
	}
	if autoOpt {
		if c, err = c.privateServerOpt(len(env.active)); err != nil {
			return nil, nil, nil, err
		}
		env.c = c
	}
	res := &Result{Config: c, Dataset: env.info}
	if err := env.references(ctx, res, obs); err != nil {
		return nil, nil, nil, err
	}
	if c.Centralized || c.Baseline == On || (c.Baseline == Auto && env.info.Train <= 2_000_000) {
		obs.Phase(fmt.Sprintf("training the centralized baseline (ALS, %d sweeps)", c.BaselineIters))
		row, err := env.centralized(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		row.WallS = time.Since(start).Seconds()
		res.Baseline = &row
		if c.Centralized {
			res.Final = row
			res.Rows = []Row{row}
			res.Wall = time.Since(start)
		}
	}
	return env, res, obs, nil
}

// load reads the data c names, splits it and prepares the run.
func load(c Config) (*env, error) {
	if c.Data != "synthetic" && (c.Users != 0 || c.Items != 0) {
		return nil, errors.New("sim: --users and --items only apply to --data synthetic")
	}
	var (
		ds          *Dataset
		train, test []Interaction
		dropped     int
		err         error
	)
	switch {
	case c.TrainFile != "":
		ds, train, test, dropped, err = LoadTrainTest(c.TrainFile, c.TestFile)
	case c.Data == "synthetic":
		ds, err = Synthetic(SyntheticConfig{Users: c.Users, Items: c.Items, Implicit: c.Objective == Implicit, Seed: c.Seed})
	default:
		ds, err = Open(c.Data, c.DataDir)
	}
	if err != nil {
		return nil, err
	}
	if c.Objective == Implicit && !ds.Implicit {
		// Ratings read as interactions: a rating is the interaction's
		// strength, so a 5 weighs more than a 1 but both are positives.
		for _, x := range ds.Interactions {
			if x.Value < 0 {
				return nil, fmt.Errorf("sim: %s: value %v: an implicit interaction's strength must be >= 0 (use --objective explicit for signed ratings)", ds.Name, x.Value)
			}
		}
		ds.Implicit = true // this run's own copy, loaded above
	}
	if c.Objective == Explicit && ds.Implicit {
		return nil, fmt.Errorf("sim: %s holds implicit feedback, not ratings: the explicit objective does not apply", ds.Name)
	}
	switch c.Split {
	case SplitRandom:
		train, test = ds.Split(c.TestFrac, c.Seed)
	case SplitTime:
		if train, test, err = ds.SplitByTime(c.TestFrac); err != nil {
			return nil, err
		}
	}
	e, err := newEnv(c, ds, train, test)
	if err != nil {
		return nil, err
	}
	e.info.Split = cmp.Or(c.Split, "files")
	e.info.Dropped = dropped
	return e, nil
}

// env is a run's prepared data and model.
type env struct {
	c           Config
	info        DatasetInfo
	kind        model.Kind
	train, test [][]model.Rating
	active      []int // users with training data: the client population
	evalUsers   []int
	mean        float64
	tc          model.TrainConfig
	ec          model.EvalConfig
	start       time.Time
	userIDs     []string     // the data set's own user IDs, by dense index
	saturated   atomic.Int64 // quantized coordinates clamped, whole run
}

func newEnv(c Config, ds *Dataset, trainX, testX []Interaction) (*env, error) {
	e := &env{c: c, kind: model.Explicit, userIDs: ds.UserIDs}
	if ds.Implicit {
		e.kind = model.Implicit
	}
	e.info = DatasetInfo{Name: ds.Name, Users: ds.NumUsers(), Items: ds.NumItems(), Train: len(trainX), Test: len(testX), Implicit: ds.Implicit}
	e.train = Ratings(ByUser(ds.NumUsers(), trainX))
	e.test = Ratings(ByUser(ds.NumUsers(), testX))
	var sum float64
	for _, x := range trainX {
		sum += float64(x.Value)
	}
	if len(trainX) == 0 {
		return nil, fmt.Errorf("sim: %s has no training data", ds.Name)
	}
	// The global mean is the one statistic computed over pooled data; in a
	// deployment it is a secure sum of per-client sums and counts.
	e.mean = sum / float64(len(trainX))
	if ds.Implicit {
		e.mean = 0
	}
	for u, rs := range e.train {
		if len(rs) > 0 {
			e.active = append(e.active, u)
		}
	}
	var withTest []int
	for _, u := range e.active {
		if len(e.test[u]) > 0 {
			withTest = append(withTest, u)
		}
	}
	r := rand.New(rand.NewPCG(c.Seed, 0xe7a1))
	if len(withTest) > c.EvalUsers {
		r.Shuffle(len(withTest), func(i, j int) { withTest[i], withTest[j] = withTest[j], withTest[i] })
		withTest = withTest[:c.EvalUsers]
	}
	e.evalUsers = withTest
	e.tc = model.TrainConfig{Reg: c.Reg, LR: c.LR, Epochs: c.LocalEpochs, Alpha: c.Alpha}
	// Every held-out interaction is relevant for implicit feedback; for
	// ratings, those of 4 stars or more (the usual MovieLens convention).
	e.ec = model.EvalConfig{Ks: model.DefaultKs(), Errors: !ds.Implicit}
	if !ds.Implicit {
		e.ec.Relevant = 4
	}
	return e, e.tc.Validate()
}

// Ratings converts per-user interactions (as ByUser groups them) into the
// model's ratings, in one allocation for all users.
func Ratings(by [][]Interaction) [][]model.Rating {
	n := 0
	for _, xs := range by {
		n += len(xs)
	}
	flat := make([]model.Rating, 0, n) // one allocation for all users
	out := make([][]model.Rating, len(by))
	for u, xs := range by {
		lo := len(flat)
		for _, x := range xs {
			flat = append(flat, model.Rating{Item: x.Item, Value: x.Value})
		}
		out[u] = flat[lo:len(flat):len(flat)]
	}
	return out
}

func (e *env) newModel() (*model.Model, error) {
	r := rand.New(rand.NewPCG(e.c.Seed, 0x30de1))
	return model.New(e.kind, e.info.Items, e.c.Rank, e.mean, model.Defaults(e.kind).InitStd, r)
}

func (e *env) centralized(ctx context.Context) (Row, error) {
	m, err := e.newModel()
	if err != nil {
		return Row{}, err
	}
	if _, err := model.ALS(ctx, m, e.train, e.tc, e.c.BaselineIters, e.c.Workers); err != nil {
		return Row{}, fmt.Errorf("sim: centralized baseline: %w", err)
	}
	return e.evaluate(ctx, m)
}

// evaluate fits each evaluation user's private factor on its training data
// (as its device would) and scores its held-out data.
func (e *env) evaluate(ctx context.Context, m *model.Model) (Row, error) {
	t, err := model.NewTrainer(m, e.tc)
	if err != nil {
		return Row{}, err
	}
	parts := make([]model.Metrics, e.c.Workers)
	err = e.parallel(ctx, len(e.evalUsers), func(w, k int, scratch []float64) error {
		u := e.evalUsers[k]
		usr, err := t.FitUser(e.train[u])
		if err != nil {
			return err
		}
		parts[w].Add(m.Evaluate(usr, e.train[u], e.test[u], e.ec, scratch[:m.Items]))
		return nil
	})
	if err != nil {
		return Row{}, err
	}
	return rowOf(parts), nil
}

// evaluateScores judges a centralized reference that scores every item
// for a user from the user's training data.
func (e *env) evaluateScores(ctx context.Context, scores func(dst []float64, train []model.Rating)) (*Row, error) {
	parts := make([]model.Metrics, e.c.Workers)
	ec := e.ec
	ec.Errors = false // references rank; their scores are not ratings
	err := e.parallel(ctx, len(e.evalUsers), func(w, k int, scratch []float64) error {
		u := e.evalUsers[k]
		dst := scratch[:e.info.Items]
		scores(dst, e.train[u])
		parts[w].Add(model.EvaluateScores(dst, e.train[u], e.test[u], ec))
		return nil
	})
	if err != nil {
		return nil, err
	}
	row := rowOf(parts)
	return &row, nil
}

func rowOf(parts []model.Metrics) Row {
	var sum model.Metrics
	for _, p := range parts {
		sum.Add(p)
	}
	// The Row's columns are the default cut-offs, 10 and 20.
	ks := model.DefaultKs()
	k1, k2 := ks[0], ks[1]
	return Row{
		RMSE: sum.RMSE(), MAE: sum.MAE(),
		Recall: sum.RecallAt(k1), NDCG: sum.NDCGAt(k1), Recall20: sum.RecallAt(k2), NDCG20: sum.NDCGAt(k2),
		UserCov: sum.UserCoverageAt(k1), CatCov: sum.CatalogueCoverageAt(k1),
		UserCov20: sum.UserCoverageAt(k2), CatCov20: sum.CatalogueCoverageAt(k2),
		Epsilon: math.NaN(),
	}
}

// easeAffordable says whether EASE's inversion, of an n×n matrix with n the
// smaller of users and items, fits the default run: about a minute at
// n = 5000 on two cores.
func easeAffordable(users, items int) bool {
	return items <= model.MaxEASEItems && min(users, items) <= 5000
}

// references trains the centralized references every run is compared with:
// most popular always, EASE when asked for or affordable.
func (e *env) references(ctx context.Context, res *Result, obs Observer) error {
	pop, err := model.FitPopularity(e.train, e.info.Items)
	if err != nil {
		return fmt.Errorf("sim: most popular: %w", err)
	}
	if res.Popular, err = e.evaluateScores(ctx, pop.Scores); err != nil {
		return err
	}
	if e.c.EASE == Off || (e.c.EASE == Auto && !easeAffordable(len(e.active), e.info.Items)) {
		return nil
	}
	obs.Phase(fmt.Sprintf("training the EASE reference (λ = %g)", e.c.EASELambda))
	ease, err := model.FitEASE(ctx, e.train, e.info.Items, e.c.EASELambda)
	if err != nil {
		return fmt.Errorf("sim: EASE reference: %w", err)
	}
	res.EASE, err = e.evaluateScores(ctx, ease.Scores)
	return err
}

// parallel runs f(worker, k, scratch) for k in [0,n) on the configured
// workers; scratch is a per-worker buffer of the model's dimension.
func (e *env) parallel(ctx context.Context, n int, f func(w, k int, scratch []float64) error) error {
	dim := model.Dim(e.info.Items, e.c.Rank)
	var wg sync.WaitGroup
	errs := make([]error, e.c.Workers)
	for w := range e.c.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scratch := make([]float64, dim)
			for k := w; k < n; k += e.c.Workers {
				if err := ctx.Err(); err != nil {
					errs[w] = err
					return
				}
				if err := f(w, k, scratch); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

type nopObserver struct{}

func (nopObserver) Phase(string)         {}
func (nopObserver) Round(int, int, *Row) {}
