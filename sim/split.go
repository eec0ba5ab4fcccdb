package sim

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNoTimestamps is returned (wrapped with the data set's name) by SplitByTime
// for data without timestamps.
var ErrNoTimestamps = errors.New("sim: time split needs timestamps")

// Split does a per-interaction random train/test split: exactly
// round(testFrac*len(d.Interactions)) interactions, chosen uniformly at random,
// go to test, the rest to train. Both keep the order of d.Interactions and are
// new slices. The split is deterministic for a seed. Split panics if testFrac is
// not in [0, 1].
func (d *Dataset) Split(testFrac float64, seed uint64) (train, test []Interaction) {
	checkFrac("Split", testFrac)
	n := len(d.Interactions)
	need := int(math.Round(testFrac * float64(n)))
	train = make([]Interaction, 0, n-need)
	test = make([]Interaction, 0, need)
	r := rand.New(rand.NewPCG(seed, 0x73706c6974))
	// Selection sampling (Knuth's algorithm S): every subset of size need is
	// equally likely, in one pass and without an index permutation.
	for i, x := range d.Interactions {
		if need > 0 && r.Float64()*float64(n-i) < float64(need) {
			test = append(test, x)
			need--
		} else {
			train = append(train, x)
		}
	}
	return train, test
}

// SplitByTime does a per-user temporal holdout, the usual protocol for
// predicting what a user does next: of each user's n interactions the
// round(testFrac*n) most recent go to test and the rest to train, but always
// at least one stays in train, so a user with a single interaction keeps it in
// train and every user in test is also in train. Recency is Time, and of two
// interactions with the same Time the later one in d.Interactions is the more
// recent; an unknown Time (0) counts as oldest. Both parts keep the order of
// d.Interactions and are new slices; the split is deterministic.
//
// Data without any timestamp (every Time 0) cannot be split by time: the
// error wraps ErrNoTimestamps. SplitByTime panics if testFrac is not in [0, 1].
func (d *Dataset) SplitByTime(testFrac float64) (train, test []Interaction, err error) {
	checkFrac("SplitByTime", testFrac)
	xs := d.Interactions
	if !slices.ContainsFunc(xs, func(x Interaction) bool { return x.Time != 0 }) {
		name := d.Name
		if name == "" {
			name = "the data set"
		}
		return nil, nil, fmt.Errorf("%w; %s has none", ErrNoTimestamps, name)
	}
	inTest := make([]bool, len(xs))
	nTest := 0
	start, pos := userIndex(d.NumUsers(), xs)
	for u := range d.NumUsers() {
		p := pos[start[u]:start[u+1]]
		k := min(int(math.Round(testFrac*float64(len(p)))), len(p)-1)
		if k <= 0 {
			continue
		}
		// p is in order of xs, so a stable sort puts the later of two equal
		// times last.
		slices.SortStableFunc(p, func(a, b int) int { return cmp.Compare(xs[a].Time, xs[b].Time) })
		for _, i := range p[len(p)-k:] {
			inTest[i] = true
		}
		nTest += k
	}
	train = make([]Interaction, 0, len(xs)-nTest)
	test = make([]Interaction, 0, nTest)
	for i, x := range xs {
		if inTest[i] {
			test = append(test, x)
		} else {
			train = append(train, x)
		}
	}
	return train, test, nil
}

func checkFrac(fn string, testFrac float64) {
	if !(testFrac >= 0 && testFrac <= 1) {
		panic(fmt.Sprintf("sim: %s testFrac %v not in [0, 1]", fn, testFrac))
	}
}

// LoadTrainTest loads a train/test split made by another tool: two files of
// user,item,rating[,timestamp] rows, each read as by LoadCSV (a header row is
// skipped in either). The training file defines the users and items, so the
// data set's NumUsers and NumItems are the training ones, and its Interactions
// are train followed by test.
//
// A test row can only be scored if the model has seen its user and item and
// has not been trained on the pair, so test rows whose user or item is not in
// the training file, or whose (user, item) pair is, are dropped; so are all
// but the latest of a pair repeated in the test file (and in the training
// file, as in LoadCSV). dropped counts the test rows left out, for the caller
// to report. It is an error if either file has no rows or no test row is left.
func LoadTrainTest(trainPath, testPath string) (d *Dataset, train, test []Interaction, dropped int, err error) {
	b := newBuilder(strings.TrimSuffix(filepath.Base(trainPath), filepath.Ext(trainPath)), 0)
	if err := b.readCSV(trainPath); err != nil {
		return nil, nil, nil, 0, err
	}
	nTrain := len(b.d.Interactions)
	if nTrain == 0 {
		return nil, nil, nil, 0, fmt.Errorf("%s: %w", trainPath, ErrNoData)
	}
	b.known = true
	if err := b.readCSV(testPath); err != nil {
		return nil, nil, nil, 0, err
	}
	rows := len(b.d.Interactions) - nTrain + b.unknown
	if rows == 0 {
		return nil, nil, nil, 0, fmt.Errorf("%s: %w", testPath, ErrNoData)
	}
	d = b.d
	d.Interactions, nTrain = dedup(d.Interactions, d.NumUsers(), d.NumItems(), nTrain)
	train, test = d.Interactions[:nTrain:nTrain], d.Interactions[nTrain:]
	dropped = rows - len(test)
	if len(test) == 0 {
		return nil, nil, nil, dropped, fmt.Errorf("%s: all %d test rows dropped: their user or item is not in %s, or their pair is",
			testPath, rows, trainPath)
	}
	return d, train, test, dropped, nil
}
