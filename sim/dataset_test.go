package sim

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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

func TestDedup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		xs      []Interaction
		want    []Interaction
		removed int
	}{
		{"none", []Interaction{{0, 0, 1, 5}, {0, 1, 2, 5}, {1, 0, 3, 5}}, []Interaction{{0, 0, 1, 5}, {0, 1, 2, 5}, {1, 0, 3, 5}}, 0},
		{"later time wins", []Interaction{{0, 0, 1, 20}, {0, 0, 2, 10}}, []Interaction{{0, 0, 1, 20}}, 1},
		{"later row wins a tie", []Interaction{{0, 0, 1, 5}, {0, 1, 9, 0}, {0, 0, 2, 5}}, []Interaction{{0, 1, 9, 0}, {0, 0, 2, 5}}, 1},
		{
			"three copies among others",
			[]Interaction{{0, 0, 1, 1}, {1, 0, 2, 1}, {0, 0, 3, 3}, {0, 0, 4, 2}},
			[]Interaction{{1, 0, 2, 1}, {0, 0, 3, 3}},
			2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Dataset{UserIDs: []string{"a", "b"}, ItemIDs: []string{"x", "y"}, Interactions: slices.Clone(tc.xs)}
			if n := d.Dedup(); n != tc.removed || !reflect.DeepEqual(d.Interactions, tc.want) {
				t.Errorf("Dedup(%v) = %d, leaving %v, want %d, %v", tc.xs, n, d.Interactions, tc.removed, tc.want)
			}
		})
	}
}

// TestLoadDuplicates checks that every loader keeps only the latest rating of
// a repeated (user, item) pair.
func TestLoadDuplicates(t *testing.T) {
	// User 1 rates item 7 three times: the last row ties the first on time
	// and wins.
	rows := [][4]string{{"1", "7", "1", "10"}, {"2", "7", "2", "10"}, {"1", "7", "3", "5"}, {"1", "7", "4", "10"}}
	format := func(header, sep string) string {
		var b strings.Builder
		if header != "" {
			b.WriteString(header + "\n")
		}
		for _, r := range rows {
			b.WriteString(strings.Join(r[:], sep) + "\n")
		}
		return b.String()
	}
	want := []Interaction{{1, 0, 2, 10}, {0, 0, 4, 10}}
	for _, tc := range []struct {
		name, file, content string
		load                func(string) (*Dataset, error)
	}{
		{"CSV", "data.csv", format("", ","), LoadCSV},
		{"ml-100k", "u.data", format("", "\t"), LoadML100K},
		{"ml-1m", "ratings.dat", format("", "::"), LoadML1M},
		{"ml-latest", "ratings.csv", format(mlHeader, ","), LoadMLLatest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.load(writeFile(t, tc.file, tc.content))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d.Interactions, want) || d.NumUsers() != 2 || d.NumItems() != 1 {
				t.Errorf("interactions = %v (%d users, %d items), want %v (2, 1)", d.Interactions, d.NumUsers(), d.NumItems(), want)
			}
		})
	}
}

func TestLoadCSV(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		users, items  []string
		xs            []Interaction
		implicit      bool
	}{
		{
			name:     "user,item interactions with a header",
			content:  "user_id,item_id\nalice,sku-1\nbob,sku-2\nalice,sku-2\n",
			users:    []string{"alice", "bob"},
			items:    []string{"sku-1", "sku-2"},
			xs:       []Interaction{{0, 0, 1, 0}, {1, 1, 1, 0}, {0, 1, 1, 0}},
			implicit: true,
		},
		{
			name:     "user,item interactions without a header",
			content:  "7,x\n8,x\n",
			users:    []string{"7", "8"},
			items:    []string{"x"},
			xs:       []Interaction{{0, 0, 1, 0}, {1, 0, 1, 0}},
			implicit: true,
		},
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
			if d.Name != "data" || d.Implicit != tc.implicit {
				t.Errorf("LoadCSV Name, Implicit = %q, %v, want \"data\", %v", d.Name, d.Implicit, tc.implicit)
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
		{"two fields after three", "a,b,1\n\na,b\n", 3, "2 fields after rows of 3: a file is either user,item (interactions) or user,item,value[,timestamp]"},
		{"three fields after two", "a,b\na,c,1\n", 2, "3 fields after rows of 2: a file is either user,item (interactions) or user,item,value[,timestamp]"},
		{"one field", "a\n", 1, "want 2 to 4 fields (user,item[,value[,timestamp]]), got 1"},
		{"too many fields", "a,b,1,2,3\n", 1, "want 2 to 4 fields (user,item[,value[,timestamp]]), got 5"},
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
