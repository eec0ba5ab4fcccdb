package sim

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeFile writes content to name in a fresh temporary directory and returns
// its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

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

func TestByUser(t *testing.T) {
	xs := []Interaction{
		{User: 2, Item: 0}, {User: 0, Item: 1}, {User: 2, Item: 2}, {User: 0, Item: 3}, {User: 2, Item: 4},
	}
	got := ByUser(4, xs)
	want := [][]Interaction{
		{{User: 0, Item: 1}, {User: 0, Item: 3}},
		{},
		{{User: 2, Item: 0}, {User: 2, Item: 2}, {User: 2, Item: 4}},
		{},
	}
	if len(got) != len(want) {
		t.Fatalf("len(ByUser(4, xs)) = %d, want 4", len(got))
	}
	for u := range want {
		if len(got[u]) != len(want[u]) || (len(want[u]) > 0 && !reflect.DeepEqual(got[u], want[u])) {
			t.Errorf("ByUser(4, xs)[%d] = %v, want %v", u, got[u], want[u])
		}
	}
	// Appending to one group must not clobber the next.
	_ = append(got[0], Interaction{User: 9})
	if got[2][0].User != 2 {
		t.Errorf("append to ByUser group 0 overwrote group 2")
	}
	if n := len(ByUser(3, nil)); n != 3 {
		t.Errorf("len(ByUser(3, nil)) = %d, want 3", n)
	}
}

func TestByUserPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("ByUser with an out-of-range user did not panic")
		}
	}()
	ByUser(2, []Interaction{{User: 2}})
}

func TestLoadCSV(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		users, items  []string
		xs            []Interaction
	}{
		{
			name:    "header",
			content: "user,item,rating,timestamp\nalice,matrix,4.5,100\nbob,matrix,3,200\nalice,up,1,300\n",
			users:   []string{"alice", "bob"},
			items:   []string{"matrix", "up"},
			xs:      []Interaction{{0, 0, 4.5, 100}, {1, 0, 3, 200}, {0, 1, 1, 300}},
		},
		{
			name:    "no header, no timestamp, CRLF, trailing empty line",
			content: "7,x,5\r\n8,y,2.5\r\n7,y,-1\r\n\r\n",
			users:   []string{"7", "8"},
			items:   []string{"x", "y"},
			xs:      []Interaction{{0, 0, 5, 0}, {1, 1, 2.5, 0}, {0, 1, -1, 0}},
		},
		{
			name:    "mixed timestamps, quotes, spaces, BOM",
			content: "\ufeffu1,\"Heat, 1995\",4,\nu2, \"say \"\"hi\"\"\",2 , 5\n\nu1,z,3\n",
			users:   []string{"u1", "u2"},
			items:   []string{"Heat, 1995", `say "hi"`, "z"},
			xs:      []Interaction{{0, 0, 4, 0}, {1, 1, 2, 5}, {0, 2, 3, 0}},
		},
		{
			name:    "no final newline",
			content: "userId,movieId,rating\n1,2,3",
			users:   []string{"1"},
			items:   []string{"2"},
			xs:      []Interaction{{0, 0, 3, 0}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "data.csv", tc.content)
			d, err := LoadCSV(path)
			if err != nil {
				t.Fatalf("LoadCSV: %v", err)
			}
			if !reflect.DeepEqual(d.UserIDs, tc.users) || !reflect.DeepEqual(d.ItemIDs, tc.items) {
				t.Errorf("LoadCSV IDs = %q %q, want %q %q", d.UserIDs, d.ItemIDs, tc.users, tc.items)
			}
			if !reflect.DeepEqual(d.Interactions, tc.xs) {
				t.Errorf("LoadCSV interactions = %v, want %v", d.Interactions, tc.xs)
			}
			if d.Name != "data" || d.Implicit {
				t.Errorf("LoadCSV Name, Implicit = %q, %v, want \"data\", false", d.Name, d.Implicit)
			}
		})
	}
}

// checkParseError checks that err is a *ParseError for path and line whose
// message is "path:line: msg".
func checkParseError(t *testing.T, err error, path string, line int, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s:%d: %s", path, line, msg)
	}
	want := fmt.Sprintf("%s:%d: %s", path, line, msg)
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	pe, ok := errors.AsType[*ParseError](err)
	if !ok || pe.Path != path || pe.Line != line {
		t.Errorf("error %v is not a *ParseError at %s:%d", err, path, line)
	}
}

func TestLoadCSVErrors(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		line          int
		msg           string
	}{
		{"bad rating", "a,b,1\na,c,2\nb,c,abc\n", 3, `rating "abc": invalid syntax`},
		{"header not first", "a,b,1\nuser,item,rating\n", 2, `rating "rating": invalid syntax`},
		{"NaN", "u,i,r\na,b,NaN\n", 2, `rating "NaN": not finite`},
		{"Inf", "a,b,+Inf\n", 1, `rating "+Inf": not finite`},
		{"float32 overflow", "a,b,1e39\n", 1, `rating "1e39": value out of range`},
		{"empty user", "a,b,1\r\n ,b,1\r\n", 2, "empty user id"},
		{"empty item", "a,b,1\na,,1\n", 2, "empty item id"},
		{"too few fields", "a,b,1\n\na,b\n", 3, "want 3 or 4 fields (user,item,rating[,timestamp]), got 2"},
		{"too many fields", "a,b,1,2,3\n", 1, "want 3 or 4 fields (user,item,rating[,timestamp]), got 5"},
		{"bad timestamp", "a,b,1,2\na,c,1,yesterday\n", 2, `timestamp "yesterday": invalid syntax`},
		{"long field", "a,b,1\na,b," + strings.Repeat("x", 100) + "\n", 2, `rating "` + strings.Repeat("x", 64) + `...": invalid syntax`},
		{"bare quote", "a,b,1\na,b\"c,1\n", 2, `bare " in non-quoted-field`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "in.csv", tc.content)
			d, err := LoadCSV(path)
			if d != nil {
				t.Errorf("LoadCSV returned a data set and error %v", err)
			}
			checkParseError(t, err, path, tc.line, tc.msg)
		})
	}
}

func TestLoadCSVEmpty(t *testing.T) {
	for _, content := range []string{"", "\n\n", "user,item,rating\n"} {
		path := writeFile(t, "empty.csv", content)
		_, err := LoadCSV(path)
		if !errors.Is(err, ErrNoData) || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("LoadCSV(%q) error = %v, want %s: %v", content, err, path, ErrNoData)
		}
	}
	if _, err := LoadCSV(filepath.Join(t.TempDir(), "missing.csv")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadCSV(missing) error = %v, want not exist", err)
	}
}

func FuzzLoadCSV(f *testing.F) {
	for _, s := range []string{
		"user,item,rating,timestamp\nalice,matrix,4.5,100\nbob,matrix,3,200\n",
		"7,x,5\r\n8,y,2.5\r\n\r\n",
		"\ufeffu1,\"Heat, 1995\",4,\nu2,\"say \"\"hi\"\"\",2,5\n",
		"a,b,NaN\n",
		"a,b\"c,1\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.csv")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := LoadCSV(path)
		if err != nil {
			if d != nil {
				t.Fatalf("LoadCSV returned a data set and error %v", err)
			}
			return
		}
		if len(d.Interactions) == 0 {
			t.Fatal("LoadCSV returned no interactions and no error")
		}
		for _, x := range d.Interactions {
			if x.User < 0 || int(x.User) >= d.NumUsers() || x.Item < 0 || int(x.Item) >= d.NumItems() {
				t.Fatalf("interaction %v out of range (%d users, %d items)", x, d.NumUsers(), d.NumItems())
			}
			if v := float64(x.Value); math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("interaction %v has a non-finite value", x)
			}
		}
		for _, id := range append(d.UserIDs[:len(d.UserIDs):len(d.UserIDs)], d.ItemIDs...) {
			if id == "" {
				t.Fatal("LoadCSV accepted an empty ID")
			}
		}
	})
}
