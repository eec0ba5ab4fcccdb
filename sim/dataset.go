package sim

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Interaction is one user's feedback on one item. Users and items are dense indices.
type Interaction struct {
	User  int32
	Item  int32
	Value float32 // rating for explicit data; strength (e.g. 1) for implicit
	Time  int64   // unix seconds, 0 if unknown
}

// Dataset is a set of interactions between densely indexed users and items.
type Dataset struct {
	Name         string
	Implicit     bool     // true: Value is implicit feedback strength, not a rating
	UserIDs      []string // dense index -> original id
	ItemIDs      []string
	Interactions []Interaction
}

// NumUsers returns the number of distinct users.
func (d *Dataset) NumUsers() int { return len(d.UserIDs) }

// NumItems returns the number of distinct items.
func (d *Dataset) NumItems() int { return len(d.ItemIDs) }

// ByUser groups interactions per user: result[u] holds user u's interactions in
// the order of xs (len(result) == numUsers). The groups share one backing array
// and have no spare capacity, so appending to one never overwrites another.
// ByUser panics if a user index is outside [0, numUsers).
func ByUser(numUsers int, xs []Interaction) [][]Interaction {
	counts := make([]int, numUsers)
	for _, x := range xs {
		if x.User < 0 || int(x.User) >= numUsers {
			panic(fmt.Sprintf("sim: ByUser user %d out of range [0, %d)", x.User, numUsers))
		}
		counts[x.User]++
	}
	all := make([]Interaction, len(xs))
	out := make([][]Interaction, numUsers)
	off := 0
	for u, c := range counts {
		out[u] = all[off : off : off+c]
		off += c
	}
	for _, x := range xs {
		out[x.User] = append(out[x.User], x)
	}
	return out
}

// userIndex groups the positions of xs by user without moving xs: user u's
// interactions are xs[i] for i in pos[start[u]:start[u+1]], in order of xs.
// It panics if a user index is outside [0, numUsers).
func userIndex(numUsers int, xs []Interaction) (start, pos []int) {
	start = make([]int, numUsers+1)
	for _, x := range xs {
		if x.User < 0 || int(x.User) >= numUsers {
			panic(fmt.Sprintf("sim: user %d out of range [0, %d)", x.User, numUsers))
		}
		start[x.User+1]++
	}
	for u := range numUsers {
		start[u+1] += start[u]
	}
	next := slices.Clone(start[:numUsers])
	pos = make([]int, len(xs))
	for i, x := range xs {
		pos[next[x.User]] = i
		next[x.User]++
	}
	return start, pos
}

// Dedup keeps one interaction per (user, item) pair, as the models assume: of
// a repeated pair the one with the latest Time stays (the later one in
// d.Interactions on a tie), as a re-rating replaces the old rating. The others
// are removed in place, the rest keep their order, and Dedup returns how many
// it removed. The loaders call it, so their data sets never repeat a pair.
// Dedup panics if a user or item index is out of range.
func (d *Dataset) Dedup() int {
	xs, _ := dedup(d.Interactions, d.NumUsers(), d.NumItems(), 0)
	n := len(d.Interactions) - len(xs)
	d.Interactions = xs
	return n
}

// dedup removes repeated (user, item) pairs from xs in place, as Dedup, except
// that an interaction in xs[pinned:] never replaces one in xs[:pinned]: a test
// rating of a pair seen in training is dropped whatever its time. It returns
// the shortened xs and how many of its interactions came from xs[:pinned].
func dedup(xs []Interaction, numUsers, numItems, pinned int) (_ []Interaction, nPinned int) {
	start, pos := userIndex(numUsers, xs)
	// owner[i] == u+1 marks item i as seen for user u, at xs[kept[i]]: one
	// pass over each user's interactions, no map and no clearing between users.
	owner := make([]int32, numItems)
	kept := make([]int, numItems)
	drop := make([]bool, len(xs))
	dropped := 0
	for u := range numUsers {
		mark := int32(u + 1)
		for _, p := range pos[start[u]:start[u+1]] {
			i := xs[p].Item
			if i < 0 || int(i) >= numItems {
				panic(fmt.Sprintf("sim: item %d out of range [0, %d)", i, numItems))
			}
			if owner[i] != mark {
				owner[i], kept[i] = mark, p
				continue
			}
			k := kept[i] // k < p: positions are in order of xs
			dropped++
			if (k < pinned && p >= pinned) || xs[p].Time < xs[k].Time {
				drop[p] = true
			} else {
				drop[k], kept[i] = true, p
			}
		}
	}
	if dropped == 0 {
		return xs, min(pinned, len(xs))
	}
	n := 0
	for p, x := range xs {
		if drop[p] {
			continue
		}
		if p < pinned {
			nPinned++
		}
		xs[n] = x
		n++
	}
	clear(xs[n:])
	return xs[:n], nPinned
}

// ErrNoData is returned (wrapped with the file name) by the loaders for a file
// without any interactions.
var ErrNoData = errors.New("sim: no interactions")

// ParseError reports a malformed row of a data file. Its message names the file
// and the 1-based line: `ratings.csv:17: rating "abc": invalid syntax`.
type ParseError struct {
	Path string
	Line int
	Err  error
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err) }

func (e *ParseError) Unwrap() error { return e.Err }

// builder maps original IDs to dense indices in order of first appearance.
type builder struct {
	d            *Dataset
	users, items map[string]int32
	// known: add only maps IDs seen before and counts rows with a new one in
	// unknown instead (the test file of LoadTrainTest).
	known   bool
	unknown int
}

func newBuilder(name string, sizeHint int64) *builder {
	b := &builder{
		d:     &Dataset{Name: name},
		users: make(map[string]int32),
		items: make(map[string]int32),
	}
	b.reserve(sizeHint)
	return b
}

// reserve makes room for the interactions of a file of size bytes, guessing
// 32 bytes a row.
func (b *builder) reserve(size int64) {
	n := int(min(max(size/32, 16), 1<<26))
	b.d.Interactions = slices.Grow(b.d.Interactions, n)
}

// add appends one interaction. Looking up a known ID does not allocate.
func add[S ~string | ~[]byte](b *builder, user, item S, v float32, t int64) error {
	if b.known {
		u, uok := b.users[string(user)]
		i, iok := b.items[string(item)]
		if !uok || !iok {
			b.unknown++
			return nil
		}
		b.d.Interactions = append(b.d.Interactions, Interaction{User: u, Item: i, Value: v, Time: t})
		return nil
	}
	u, ok := intern(b.users, &b.d.UserIDs, user)
	if !ok {
		return errors.New("too many users")
	}
	i, ok := intern(b.items, &b.d.ItemIDs, item)
	if !ok {
		return errors.New("too many items")
	}
	b.d.Interactions = append(b.d.Interactions, Interaction{User: u, Item: i, Value: v, Time: t})
	return nil
}

// intern returns the dense index of key, adding it to m and ids if new; ok is
// false if there is no room for another index.
func intern[S ~string | ~[]byte](m map[string]int32, ids *[]string, key S) (x int32, ok bool) {
	if x, ok := m[string(key)]; ok {
		return x, true
	}
	if len(*ids) == math.MaxInt32 {
		return 0, false
	}
	x = int32(len(*ids))
	id := string(key)
	m[id] = x
	*ids = append(*ids, id)
	return x, true
}

// finish returns the data set read from path, without repeated pairs.
func (b *builder) finish(path string) (*Dataset, error) {
	if len(b.d.Interactions) == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrNoData)
	}
	b.d.Dedup()
	return b.d, nil
}

// parseRating parses a finite rating.
func parseRating[S ~string | ~[]byte](s S) (float32, error) {
	v, err := strconv.ParseFloat(string(s), 32)
	if err != nil {
		return 0, fmt.Errorf("rating %q: %w", trunc(s), numErr(err))
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("rating %q: not finite", trunc(s))
	}
	return float32(v), nil
}

func parseTime[S ~string | ~[]byte](s S) (int64, error) {
	t, err := strconv.ParseInt(string(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q: %w", trunc(s), numErr(err))
	}
	return t, nil
}

// numErr strips strconv's "strconv.ParseFloat: parsing ..." prefix.
func numErr(err error) error {
	if ne, ok := errors.AsType[*strconv.NumError](err); ok {
		return ne.Err
	}
	return err
}

// trunc shortens a malformed field for an error message.
func trunc[S ~string | ~[]byte](s S) string {
	const maxLen = 64
	if len(s) > maxLen {
		return string(s[:maxLen]) + "..."
	}
	return string(s)
}

// openData opens path for streaming and skips a UTF-8 byte order mark.
func openData(path string) (*os.File, *bufio.Reader, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, 0, err
	}
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	br := bufio.NewReaderSize(f, 1<<16)
	if bom, err := br.Peek(3); err == nil && string(bom) == "\xef\xbb\xbf" {
		br.Discard(3) //nolint:errcheck // the bytes were peeked
	}
	return f, br, size, nil
}

// LoadCSV loads a comma-separated file of user,item,rating[,timestamp] rows,
// or of bare user,item rows: interactions of strength 1, and the data set is
// then implicit feedback. IDs are arbitrary non-empty strings (quoted per
// RFC 4180 if they contain commas or quotes) with surrounding spaces
// trimmed; a missing or empty timestamp is 0. The first row is a header, and
// skipped, if its rating field is not a number (two columns: if its first
// field contains "user"). Blank lines are skipped. Malformed rows are reported as a
// *ParseError naming the file and line. A repeated (user, item) pair keeps
// only its latest rating (see Dedup).
func LoadCSV(path string) (*Dataset, error) {
	b := newBuilder(strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), 0)
	if err := b.readCSV(path); err != nil {
		return nil, err
	}
	return b.finish(path)
}

// readCSV adds the rows of the CSV file path, as described at LoadCSV, to b.
func (b *builder) readCSV(path string) error {
	f, br, size, err := openData(path)
	if err != nil {
		return err
	}
	defer f.Close()

	b.reserve(size)
	r := csv.NewReader(br)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	r.TrimLeadingSpace = true
	fields := 0 // of the first data row: every row must have as many (2, or 3 and 4)
	for first := true; ; first = false {
		rec, err := r.Read()
		if err == io.EOF {
			if fields == 2 {
				b.d.Implicit = true
			}
			return nil
		}
		if err != nil {
			if pe, ok := errors.AsType[*csv.ParseError](err); ok {
				return &ParseError{Path: path, Line: pe.Line, Err: pe.Err}
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		if len(rec) < 2 || len(rec) > 4 {
			return &ParseError{Path: path, Line: line,
				Err: fmt.Errorf("want 2 to 4 fields (user,item[,value[,timestamp]]), got %d", len(rec))}
		}
		if first && isHeader(rec) {
			continue
		}
		if n := min(len(rec), 3); fields == 0 {
			fields = n
		} else if n != fields {
			return &ParseError{Path: path, Line: line,
				Err: fmt.Errorf("%d fields after rows of %d: a file is either user,item (interactions) or user,item,value[,timestamp]", len(rec), fields)}
		}
		if len(rec) == 2 {
			// A bare user,item row is one interaction of strength 1.
			rec = append(rec, "1")
		}
		if err := csvRow(b, rec, strings.TrimSpace(rec[2])); err != nil {
			return &ParseError{Path: path, Line: line, Err: err}
		}
	}
}

// isHeader reports whether a first row names its columns: its value is not
// a number or, in a two-column user,item file, its first field says "user".
func isHeader(rec []string) bool {
	if len(rec) == 2 {
		return strings.Contains(strings.ToLower(rec[0]), "user")
	}
	_, err := strconv.ParseFloat(strings.TrimSpace(rec[2]), 64)
	return err != nil
}

func csvRow(b *builder, rec []string, ratingField string) error {
	user := strings.TrimSpace(rec[0])
	item := strings.TrimSpace(rec[1])
	if user == "" {
		return errors.New("empty user id")
	}
	if item == "" {
		return errors.New("empty item id")
	}
	v, err := parseRating(ratingField)
	if err != nil {
		return err
	}
	var t int64
	if len(rec) == 4 {
		if s := strings.TrimSpace(rec[3]); s != "" {
			if t, err = parseTime(s); err != nil {
				return err
			}
		}
	}
	return add(b, user, item, v, t)
}
