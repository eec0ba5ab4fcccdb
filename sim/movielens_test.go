package sim

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The MovieLens 100K and 1M licences forbid redistribution: these fixtures
// are made up, in the files' formats.

func TestLoadMovieLens(t *testing.T) {
	wantUsers := []string{"196", "186", "22"}
	wantItems := []string{"242", "302", "377"}
	wantXs := []Interaction{
		{0, 0, 3, 881250949},
		{1, 1, 3, 891717742},
		{2, 2, 1, 878887116},
		{1, 0, 4.5, 0},
	}
	for _, tc := range []struct {
		name, file, content string
		load                func(string) (*Dataset, error)
	}{
		{"ml-100k", "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n186\t242\t4.5\t0\n", LoadML100K},
		{"ml-100k CRLF", "u.data", "196\t242\t3\t881250949\r\n186\t302\t3\t891717742\r\n22\t377\t1\t878887116\r\n186\t242\t4.5\t0\r\n\r\n", LoadML100K},
		{"ml-1m", "ratings.dat", "196::242::3::881250949\n186::302::3::891717742\n\n22::377::1::878887116\n186::242::4.5::0", LoadML1M},
		{"ml-latest", "ratings.csv", "userId,movieId,rating,timestamp\r\n196,242,3.0,881250949\r\n186,302,3.0,891717742\r\n22,377,1.0,878887116\r\n186,242,4.5,0\r\n", LoadMLLatest},
		{"ml-latest BOM", "ratings.csv", "\ufeffuserId,movieId,rating,timestamp\n196,242,3.0,881250949\n186,302,3.0,891717742\n22,377,1.0,878887116\n186,242,4.5,0\n\n", LoadMLLatest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.file, tc.content)
			d, err := tc.load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d.UserIDs, wantUsers) || !reflect.DeepEqual(d.ItemIDs, wantItems) {
				t.Errorf("IDs = %q %q, want %q %q", d.UserIDs, d.ItemIDs, wantUsers, wantItems)
			}
			if !reflect.DeepEqual(d.Interactions, wantXs) {
				t.Errorf("interactions = %v, want %v", d.Interactions, wantXs)
			}
			if d.Implicit || d.NumUsers() != 3 || d.NumItems() != 3 {
				t.Errorf("Implicit, NumUsers, NumItems = %v, %d, %d, want false, 3, 3", d.Implicit, d.NumUsers(), d.NumItems())
			}
		})
	}
}

func TestLoadMovieLensErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
		load                func(string) (*Dataset, error)
		line                int
		msg                 string
	}{
		{"100k bad rating", "u.data", "1\t2\t3\t4\n1\t3\tabc\t4\n", LoadML100K, 2, `rating "abc": invalid syntax`},
		{"100k NaN", "u.data", "1\t2\tNaN\t4\n", LoadML100K, 1, `rating "NaN": not finite`},
		{"100k Inf", "u.data", "1\t2\t3\t4\r\n1\t2\t-inf\t4\r\n", LoadML100K, 2, `rating "-inf": not finite`},
		{"100k spaces", "u.data", "1 2 3 4\n", LoadML100K, 1, "want 4 tab-separated fields (user, item, rating, timestamp), got 1"},
		{"100k five fields", "u.data", "1\t2\t3\t4\t5\n", LoadML100K, 1, "want 4 tab-separated fields (user, item, rating, timestamp), got 5"},
		{"100k empty user", "u.data", "1\t2\t3\t4\n\n\t2\t3\t4\n", LoadML100K, 3, "empty user id"},
		{"100k bad item", "u.data", "1\tx7\t3\t4\n", LoadML100K, 1, `item id "x7": not a decimal number`},
		{"100k bad timestamp", "u.data", "1\t2\t3\t4.5\n", LoadML100K, 1, `timestamp "4.5": invalid syntax`},
		{"1m single colons", "ratings.dat", "1::2::3::4\n1:2:3:4\n", LoadML1M, 2, "want 4 '::'-separated fields (user, item, rating, timestamp), got 1"},
		{"1m empty item", "ratings.dat", "1::::3::4\n", LoadML1M, 1, "empty item id"},
		{"1m bad rating", "ratings.dat", "1::2::3::4\n2::2::::4\n", LoadML1M, 2, `rating "": invalid syntax`},
		{"latest no header", "ratings.csv", "1,2,3.0,4\n", LoadMLLatest, 1, `header "1,2,3.0,4", want "userId,movieId,rating,timestamp"`},
		{"latest bad rating", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.0,4\n1,3,four,5\n", LoadMLLatest, 3, `rating "four": invalid syntax`},
		{"latest three fields", "ratings.csv", "userId,movieId,rating,timestamp\r\n1,2,3.0\r\n", LoadMLLatest, 2, "want 4 comma-separated fields (user, item, rating, timestamp), got 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.file, tc.content)
			d, err := tc.load(path)
			if d != nil {
				t.Errorf("loader returned a data set and error %v", err)
			}
			checkParseError(t, err, path, tc.line, tc.msg)
		})
	}
}

func TestLoadMovieLensEmpty(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		load          func(string) (*Dataset, error)
	}{
		{"100k", "", LoadML100K},
		{"1m blank lines", "\n\r\n", LoadML1M},
		{"latest empty", "", LoadMLLatest},
		{"latest header only", "userId,movieId,rating,timestamp\n", LoadMLLatest},
	} {
		path := writeFile(t, "ratings", tc.content)
		if _, err := tc.load(path); !errors.Is(err, ErrNoData) {
			t.Errorf("%s: error = %v, want %v", tc.name, err, ErrNoData)
		}
	}
}

func TestLoadMLLongLine(t *testing.T) {
	path := writeFile(t, "u.data", "1\t2\t3\t4\n"+strings.Repeat("9", 2<<20)+"\n")
	_, err := LoadML100K(path)
	pe, ok := errors.AsType[*ParseError](err)
	if !ok || pe.Line != 2 {
		t.Errorf("LoadML100K(long line) error = %v, want a *ParseError on line 2", err)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	for file, content := range map[string]string{
		"ml-100k/u.data":              "1\t2\t3\t4\n",
		"ml-1m/ratings.dat":           "1::2::3::4\n1::3::4::5\n",
		"ml-latest-small/ratings.csv": "userId,movieId,rating,timestamp\n1,2,3.5,4\n1,3,4,5\n2,3,1,6\n",
		"ml-25m/ratings.csv":          "userId,movieId,rating,timestamp\n1,2,3.5,4\n",
		"mine.csv":                    "user,item,rating\na,b,1\n",
	} {
		path := filepath.Join(dir, file)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		data, wantName string
		wantN          int
	}{
		{"ml-100k", "ml-100k", 1},
		{"ml-1m", "ml-1m", 2},
		{"ml-latest-small", "ml-latest-small", 3},
		{"ml-25m", "ml-25m", 1},
		{filepath.Join(dir, "mine.csv"), "mine", 1},
	} {
		d, err := Open(tc.data, dir)
		if err != nil {
			t.Errorf("Open(%q): %v", tc.data, err)
			continue
		}
		if d.Name != tc.wantName || len(d.Interactions) != tc.wantN {
			t.Errorf("Open(%q) = %q with %d interactions, want %q with %d", tc.data, d.Name, len(d.Interactions), tc.wantName, tc.wantN)
		}
	}
}

func TestOpenMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	sep := string(filepath.Separator)
	for _, tc := range []struct {
		data, dataDir, want string
	}{
		{"ml-100k", dir, "ml-100k not found: put u.data in " + filepath.Join(dir, "ml-100k") + sep +
			" (download ml-100k.zip from https://grouplens.org/datasets/movielens/100k/) or pass --data-dir"},
		{"ml-1m", dir, "ml-1m not found: put ratings.dat in " + filepath.Join(dir, "ml-1m") + sep +
			" (download ml-1m.zip from https://grouplens.org/datasets/movielens/1m/) or pass --data-dir"},
		{"ml-latest-small", dir, "ml-latest-small not found: put ratings.csv in " + filepath.Join(dir, "ml-latest-small") + sep +
			" (download ml-latest-small.zip from https://grouplens.org/datasets/movielens/latest/) or pass --data-dir"},
		{"ml-100k", "", "ml-100k not found: put u.data in data" + sep + "ml-100k" + sep +
			" (download ml-100k.zip from https://grouplens.org/datasets/movielens/100k/) or pass --data-dir"},
	} {
		if tc.dataDir == "" {
			// The default data directory is relative to the working directory.
			if _, err := os.Stat(filepath.Join("data", "ml-100k", "u.data")); err == nil {
				continue
			}
		}
		_, err := Open(tc.data, tc.dataDir)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Open(%q, %q) error = %v, want %s", tc.data, tc.dataDir, err, tc.want)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q, %q) error %v does not match fs.ErrNotExist", tc.data, tc.dataDir, err)
		}
	}
	missing := filepath.Join(dir, "nope.csv")
	_, err := Open(missing, dir)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "neither a known data set") {
		t.Errorf("Open(%q) error = %v, want a not-found error naming the known sets", missing, err)
	}
}

// TestMLLatestSmall loads the real ml-latest-small from the shared data folder.
func TestMLLatestSmall(t *testing.T) {
	path := filepath.Join("..", "..", "shared", "data", "ml-latest-small", "ratings.csv")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("ml-latest-small not available: %v", err)
	}
	d, err := LoadMLLatest(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Interactions) != 100836 || d.NumUsers() != 610 || d.NumItems() != 9724 {
		t.Errorf("LoadMLLatest(ml-latest-small) = %d ratings, %d users, %d items, want 100836, 610, 9724",
			len(d.Interactions), d.NumUsers(), d.NumItems())
	}
	for _, x := range d.Interactions {
		if x.Value < 0.5 || x.Value > 5 || x.Value*2 != float32(int(x.Value*2)) || x.Time <= 0 {
			t.Fatalf("LoadMLLatest(ml-latest-small): implausible interaction %+v", x)
		}
	}
	// ml-latest-small repeats no (user, item) pair: the loader kept all of its
	// 100836 rows.

	// Every user with two or more ratings is in both parts of a time split.
	train, test, err := d.SplitByTime(0.2)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(train) + len(test); n != len(d.Interactions) || len(test) < n/5-d.NumUsers() || len(test) > n/5+d.NumUsers() {
		t.Errorf("SplitByTime(0.2) sizes = %d/%d, want about 80/20", len(train), len(test))
	}
	inTrain := make([]bool, d.NumUsers())
	for _, x := range train {
		inTrain[x.User] = true
	}
	for _, x := range test {
		if !inTrain[x.User] {
			t.Fatalf("SplitByTime(0.2): user %d is in test but not in train", x.User)
		}
	}

	// The same file through LoadCSV (header detected) gives the same data.
	c, err := LoadCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Interactions, d.Interactions) || !reflect.DeepEqual(c.UserIDs, d.UserIDs) || !reflect.DeepEqual(c.ItemIDs, d.ItemIDs) {
		t.Errorf("LoadCSV(ml-latest-small) differs from LoadMLLatest")
	}
}

func BenchmarkLoadMLLatestSmall(b *testing.B) {
	path := filepath.Join("..", "..", "shared", "data", "ml-latest-small", "ratings.csv")
	fi, err := os.Stat(path)
	if err != nil {
		b.Skipf("ml-latest-small not available: %v", err)
	}
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadMLLatest(path); err != nil {
			b.Fatal(err)
		}
	}
}
