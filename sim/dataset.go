package sim

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
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

// Split does a per-interaction random train/test split: exactly
// round(testFrac*len(d.Interactions)) interactions, chosen uniformly at random,
// go to test, the rest to train. Both keep the order of d.Interactions and are
// new slices. The split is deterministic for a seed. Split panics if testFrac is
// not in [0, 1].
func (d *Dataset) Split(testFrac float64, seed uint64) (train, test []Interaction) {
	if !(testFrac >= 0 && testFrac <= 1) {
		panic(fmt.Sprintf("sim: Split testFrac %v not in [0, 1]", testFrac))
	}
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
}

func newBuilder(name string, sizeHint int64) *builder {
	n := int(min(max(sizeHint/32, 16), 1<<26))
	return &builder{
		d:     &Dataset{Name: name, Interactions: make([]Interaction, 0, n)},
		users: make(map[string]int32),
		items: make(map[string]int32),
	}
}

// add appends one interaction. Looking up a known ID does not allocate.
func add[S ~string | ~[]byte](b *builder, user, item S, v float32, t int64) error {
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

func (b *builder) finish(path string) (*Dataset, error) {
	if len(b.d.Interactions) == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrNoData)
	}
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

// LoadCSV loads a comma-separated file of user,item,rating[,timestamp] rows.
// IDs are arbitrary non-empty strings (quoted per RFC 4180 if they contain
// commas or quotes) with surrounding spaces trimmed; a missing or empty
// timestamp is 0. The first row is a header, and skipped, if its rating field
// is not a number. Blank lines are skipped. Malformed rows are reported as a
// *ParseError naming the file and line.
func LoadCSV(path string) (*Dataset, error) {
	f, br, size, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	b := newBuilder(name, size)
	r := csv.NewReader(br)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	r.TrimLeadingSpace = true
	for first := true; ; first = false {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			if pe, ok := errors.AsType[*csv.ParseError](err); ok {
				return nil, &ParseError{Path: path, Line: pe.Line, Err: pe.Err}
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		if len(rec) != 3 && len(rec) != 4 {
			return nil, &ParseError{Path: path, Line: line,
				Err: fmt.Errorf("want 3 or 4 fields (user,item,rating[,timestamp]), got %d", len(rec))}
		}
		ratingField := strings.TrimSpace(rec[2])
		if first {
			if _, err := strconv.ParseFloat(ratingField, 64); err != nil {
				continue // header
			}
		}
		if err := csvRow(b, rec, ratingField); err != nil {
			return nil, &ParseError{Path: path, Line: line, Err: err}
		}
	}
	return b.finish(path)
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
