package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	d := &Dataset{UserIDs: []string{"a", "b", "c"}, ItemIDs: []string{"x"}}
	for i := range 1000 {
		d.Interactions = append(d.Interactions, Interaction{User: int32(i % 3), Item: 0, Value: float32(i)})
	}
	for _, tc := range []struct {
		frac     float64
		wantTest int
	}{
		{0, 0},
		{0.2, 200},
		{0.1234, 123},
		{0.5, 500},
		{1, 1000},
	} {
		t.Run(fmt.Sprint(tc.frac), func(t *testing.T) {
			train, test := d.Split(tc.frac, 42)
			if len(test) != tc.wantTest || len(train) != 1000-tc.wantTest {
				t.Fatalf("Split(%v) sizes = %d/%d, want %d/%d", tc.frac, len(train), len(test), 1000-tc.wantTest, tc.wantTest)
			}
			// Together they are a partition that keeps the original order.
			seen := make([]bool, 1000)
			for _, part := range [][]Interaction{train, test} {
				last := -1
				for _, x := range part {
					v := int(x.Value)
					if seen[v] || v <= last {
						t.Fatalf("Split(%v): interaction %d repeated or out of order", tc.frac, v)
					}
					seen[v], last = true, v
				}
			}
			train2, test2 := d.Split(tc.frac, 42)
			if !reflect.DeepEqual(train, train2) || !reflect.DeepEqual(test, test2) {
				t.Errorf("Split(%v, 42) is not deterministic", tc.frac)
			}
		})
	}
	_, a := d.Split(0.2, 1)
	_, b := d.Split(0.2, 2)
	if reflect.DeepEqual(a, b) {
		t.Errorf("Split(0.2, 1) and Split(0.2, 2) chose the same test set")
	}
	// Every interaction is equally likely to land in test.
	hits := make([]int, 1000)
	for seed := range uint64(400) {
		_, test := d.Split(0.25, seed)
		for _, x := range test {
			hits[int(x.Value)]++
		}
	}
	firstHalf, secondHalf := 0, 0
	for i, h := range hits {
		if i < 500 {
			firstHalf += h
		} else {
			secondHalf += h
		}
	}
	if r := float64(firstHalf) / float64(secondHalf); math.Abs(r-1) > 0.03 {
		t.Errorf("Split test share first/second half = %.3f, want about 1", r)
	}
}

func TestSplitPanics(t *testing.T) {
	for _, frac := range []float64{-0.1, 1.1, math.NaN()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Split(%v) did not panic", frac)
				}
			}()
			(&Dataset{}).Split(frac, 1)
		}()
	}
}

func TestSplitByTime(t *testing.T) {
	// Value is the row number, to name the rows in the wants.
	d := &Dataset{Name: "t", UserIDs: []string{"a", "b", "c", "d"}, ItemIDs: []string{"x"}}
	for i, ut := range [][2]int{
		{0, 30}, {1, 5}, {0, 10}, {0, 30}, // row 3 ties row 0 and is later: more recent
		{2, 7},          // c's only interaction stays in train
		{0, 20}, {1, 5}, // b's two interactions tie
		{3, 0}, {3, 100}, {3, 50}, // d's unknown time counts as oldest
	} {
		d.Interactions = append(d.Interactions, Interaction{User: int32(ut[0]), Value: float32(i), Time: int64(ut[1])})
	}
	orig := slices.Clone(d.Interactions)
	rows := func(xs []Interaction) []int {
		var r []int
		for _, x := range xs {
			r = append(r, int(x.Value))
		}
		return r
	}
	for _, tc := range []struct {
		frac  float64
		train []int
		test  []int
	}{
		{0, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, nil},
		{0.25, []int{0, 1, 2, 4, 5, 7, 9}, []int{3, 6, 8}},
		{0.5, []int{1, 2, 4, 5, 7}, []int{0, 3, 6, 8, 9}},
		{1, []int{1, 2, 4, 7}, []int{0, 3, 5, 6, 8, 9}}, // each user keeps one in train
	} {
		t.Run(fmt.Sprint(tc.frac), func(t *testing.T) {
			train, test, err := d.SplitByTime(tc.frac)
			if err != nil {
				t.Fatalf("SplitByTime(%v): %v", tc.frac, err)
			}
			if !slices.Equal(rows(train), tc.train) || !slices.Equal(rows(test), tc.test) {
				t.Errorf("SplitByTime(%v) = %v, %v, want %v, %v", tc.frac, rows(train), rows(test), tc.train, tc.test)
			}
			if !reflect.DeepEqual(d.Interactions, orig) {
				t.Errorf("SplitByTime(%v) modified d.Interactions", tc.frac)
			}
		})
	}
}

func TestSplitByTimeNoTimestamps(t *testing.T) {
	path := writeFile(t, "ratings.csv", "user,item,rating\na,x,4\na,y,3\nb,x,5\n")
	d, err := LoadCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	train, test, err := d.SplitByTime(0.2)
	const want = "sim: time split needs timestamps; ratings has none"
	if err == nil || err.Error() != want || !errors.Is(err, ErrNoTimestamps) {
		t.Errorf("SplitByTime(no timestamps) error = %v, want %s", err, want)
	}
	if train != nil || test != nil {
		t.Errorf("SplitByTime(no timestamps) = %v, %v with an error, want nil, nil", train, test)
	}
}

func TestSplitByTimePanics(t *testing.T) {
	for _, frac := range []float64{-0.1, 1.1, math.NaN()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SplitByTime(%v) did not panic", frac)
				}
			}()
			(&Dataset{}).SplitByTime(frac) //nolint:errcheck // it panics
		}()
	}
}

func TestLoadTrainTest(t *testing.T) {
	for _, tc := range []struct {
		name, train, test string
		users, items      []string
		wantTrain         []Interaction
		wantTest          []Interaction
		dropped           int
	}{
		{
			name:      "no headers, nothing dropped",
			train:     "a,x,4\nb,y,3\n",
			test:      "b,x,2\na,y,1\n",
			users:     []string{"a", "b"},
			items:     []string{"x", "y"},
			wantTrain: []Interaction{{0, 0, 4, 0}, {1, 1, 3, 0}},
			wantTest:  []Interaction{{1, 0, 2, 0}, {0, 1, 1, 0}},
		},
		{
			name: "headers, unknown IDs, pairs in train, repeated pairs",
			// a,x is repeated in train: the later time wins.
			train: "user,item,rating,timestamp\na,x,4,10\nb,y,3,20\na,y,5,30\na,x,2,40\n",
			// c is an unknown user, z an unknown item, a,y is in train, and
			// b,x is repeated with an older time.
			test:      "userId,movieId,rating,timestamp\nb,x,1,50\nc,x,2,50\na,z,3,50\na,y,4,60\nb,x,5,40\n",
			users:     []string{"a", "b"},
			items:     []string{"x", "y"},
			wantTrain: []Interaction{{1, 1, 3, 20}, {0, 1, 5, 30}, {0, 0, 2, 40}},
			wantTest:  []Interaction{{1, 0, 1, 50}},
			dropped:   4,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trainPath := writeFile(t, "train.csv", tc.train)
			testPath := writeFile(t, "test.csv", tc.test)
			d, train, test, dropped, err := LoadTrainTest(trainPath, testPath)
			if err != nil {
				t.Fatalf("LoadTrainTest: %v", err)
			}
			if !reflect.DeepEqual(train, tc.wantTrain) || !reflect.DeepEqual(test, tc.wantTest) || dropped != tc.dropped {
				t.Errorf("LoadTrainTest = %v, %v, %d dropped, want %v, %v, %d", train, test, dropped, tc.wantTrain, tc.wantTest, tc.dropped)
			}
			if !reflect.DeepEqual(d.UserIDs, tc.users) || !reflect.DeepEqual(d.ItemIDs, tc.items) {
				t.Errorf("LoadTrainTest IDs = %q %q, want %q %q", d.UserIDs, d.ItemIDs, tc.users, tc.items)
			}
			if want := append(slices.Clone(tc.wantTrain), tc.wantTest...); !reflect.DeepEqual(d.Interactions, want) {
				t.Errorf("LoadTrainTest Interactions = %v, want train then test %v", d.Interactions, want)
			}
			if d.Name != "train" || d.Implicit {
				t.Errorf("LoadTrainTest Name, Implicit = %q, %v, want \"train\", false", d.Name, d.Implicit)
			}
			// Appending to train must not overwrite test.
			_ = append(train, Interaction{User: 9})
			if !reflect.DeepEqual(test, tc.wantTest) {
				t.Errorf("append to train overwrote test")
			}
		})
	}
}

func TestLoadTrainTestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, train, test string
		check             func(t *testing.T, err error, trainPath, testPath string)
	}{
		{"empty train", "user,item,rating\n", "a,x,1\n", func(t *testing.T, err error, trainPath, _ string) {
			if !errors.Is(err, ErrNoData) || !strings.HasPrefix(err.Error(), trainPath+": ") {
				t.Errorf("error = %v, want %s: %v", err, trainPath, ErrNoData)
			}
		}},
		{"empty test", "a,x,1\n", "\n", func(t *testing.T, err error, _, testPath string) {
			if !errors.Is(err, ErrNoData) || !strings.HasPrefix(err.Error(), testPath+": ") {
				t.Errorf("error = %v, want %s: %v", err, testPath, ErrNoData)
			}
		}},
		{"all dropped", "a,x,1\n", "a,x,2\nb,x,3\n", func(t *testing.T, err error, trainPath, testPath string) {
			want := testPath + ": all 2 test rows dropped: their user or item is not in " + trainPath + ", or their pair is"
			if err == nil || err.Error() != want {
				t.Errorf("error = %v, want %s", err, want)
			}
		}},
		{"bad test row", "a,x,1\n", "a,x,2\na,x,oops\n", func(t *testing.T, err error, _, testPath string) {
			checkParseError(t, err, testPath, 2, `rating "oops": invalid syntax`)
		}},
		{"bad train row", "a,x,1\na,x\n", "a,x,2\n", func(t *testing.T, err error, trainPath, _ string) {
			checkParseError(t, err, trainPath, 2, "2 fields after rows of 3: a file is either user,item (interactions) or user,item,value[,timestamp]")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trainPath := writeFile(t, "train.csv", tc.train)
			testPath := writeFile(t, "test.csv", tc.test)
			d, train, test, _, err := LoadTrainTest(trainPath, testPath)
			if d != nil || train != nil || test != nil {
				t.Errorf("LoadTrainTest returned data and error %v", err)
			}
			tc.check(t, err, trainPath, testPath)
		})
	}
	trainPath := writeFile(t, "train.csv", "a,x,1\n")
	if _, _, _, _, err := LoadTrainTest(trainPath, filepath.Join(t.TempDir(), "missing.csv")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadTrainTest(missing test file) error = %v, want not exist", err)
	}
}
