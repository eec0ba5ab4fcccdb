package sim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// mlHeader is the header line of ratings.csv in ml-latest, ml-latest-small,
// ml-20m, ml-25m and ml-32m.
const mlHeader = "userId,movieId,rating,timestamp"

// LoadML100K loads MovieLens 100K's u.data: tab-separated
// user item rating timestamp rows with integer IDs.
func LoadML100K(path string) (*Dataset, error) {
	return loadML(path, "ml-100k", "\t", "tab-separated", "")
}

// LoadML1M loads MovieLens 1M's ratings.dat: UserID::MovieID::Rating::Timestamp
// rows with integer IDs.
func LoadML1M(path string) (*Dataset, error) {
	return loadML(path, "ml-1m", "::", "'::'-separated", "")
}

// LoadMLLatest loads the ratings.csv of MovieLens latest (small or full), 20M,
// 25M or 32M: a userId,movieId,rating,timestamp header, then rows with integer
// IDs and half-star ratings.
func LoadMLLatest(path string) (*Dataset, error) {
	return loadML(path, "ml-latest", ",", "comma-separated", mlHeader)
}

// loadML streams a file of user<sep>item<sep>rating<sep>timestamp rows with
// unsigned integer IDs, after the header line if header is not empty. Blank
// lines and a trailing CR on each line are ignored. A repeated (user, item)
// pair keeps only its latest rating (see Dedup); the MovieLens files repeat
// none, but a file cut or merged by hand may.
func loadML(path, name, sep, sepName, header string) (*Dataset, error) {
	f, br, size, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	b := newBuilder(name, size)
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	bsep := []byte(sep)
	var fields [4][]byte
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSuffix(sc.Bytes(), []byte{'\r'})
		if line == 1 && header != "" {
			if string(text) != header {
				return nil, &ParseError{Path: path, Line: line,
					Err: fmt.Errorf("header %q, want %q", trunc(text), header)}
			}
			continue
		}
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		if n := split(fields[:], text, bsep); n != len(fields) {
			return nil, &ParseError{Path: path, Line: line,
				Err: fmt.Errorf("want 4 %s fields (user, item, rating, timestamp), got %d", sepName, n)}
		}
		if err := mlRow(b, &fields); err != nil {
			return nil, &ParseError{Path: path, Line: line, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &ParseError{Path: path, Line: line + 1, Err: err}
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b.finish(path)
}

func mlRow(b *builder, f *[4][]byte) error {
	if err := checkID("user", f[0]); err != nil {
		return err
	}
	if err := checkID("item", f[1]); err != nil {
		return err
	}
	v, err := parseRating(f[2])
	if err != nil {
		return err
	}
	t, err := parseTime(f[3])
	if err != nil {
		return err
	}
	return add(b, f[0], f[1], v, t)
}

// checkID accepts a non-empty decimal ID.
func checkID(what string, id []byte) error {
	if len(id) == 0 {
		return fmt.Errorf("empty %s id", what)
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return fmt.Errorf("%s id %q: not a decimal number", what, trunc(id))
		}
	}
	return nil
}

// split splits s around sep into dst and returns the number of fields in s,
// which may exceed len(dst).
func split(dst [][]byte, s, sep []byte) int {
	n := 0
	for {
		i := bytes.Index(s, sep)
		if i < 0 {
			if n < len(dst) {
				dst[n] = s
			}
			return n + 1
		}
		if n < len(dst) {
			dst[n] = s[:i]
		}
		n++
		s = s[i+len(sep):]
	}
}

// movieLens describes a named MovieLens data set.
type movieLens struct {
	file string // the ratings file inside the set's directory
	page string // the GroupLens download page
	load func(path string) (*Dataset, error)
}

func lookupMovieLens(name string) (movieLens, bool) {
	const site = "https://grouplens.org/datasets/movielens/"
	switch name {
	case "ml-100k":
		return movieLens{"u.data", site + "100k/", LoadML100K}, true
	case "ml-1m":
		return movieLens{"ratings.dat", site + "1m/", LoadML1M}, true
	case "ml-latest-small", "ml-latest":
		return movieLens{"ratings.csv", site + "latest/", LoadMLLatest}, true
	case "ml-20m", "ml-25m", "ml-32m":
		return movieLens{"ratings.csv", site + name[len("ml-"):] + "/", LoadMLLatest}, true
	}
	return movieLens{}, false
}

// Open resolves what a user passes to `fedrec sim --data`: "ml-100k" loads
// dataDir/ml-100k/u.data, "ml-1m" dataDir/ml-1m/ratings.dat, and
// "ml-latest-small" dataDir/ml-latest-small/ratings.csv (as do "ml-latest",
// "ml-20m", "ml-25m" and "ml-32m" from their directories). Anything else is the
// path of a CSV file for LoadCSV. An empty dataDir means "data". ("synthetic" is
// handled by the caller.)
//
// When a named set is missing, the error says where to put the files and where
// to download them; it matches fs.ErrNotExist.
func Open(name, dataDir string) (*Dataset, error) {
	if dataDir == "" {
		dataDir = "data"
	}
	ml, ok := lookupMovieLens(name)
	if !ok {
		if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("data %q is neither a known data set (ml-100k, ml-1m, ml-latest-small, synthetic) nor a CSV file: %w", name, err)
		}
		return LoadCSV(name)
	}
	dir := filepath.Join(dataDir, name)
	path := filepath.Join(dir, ml.file)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, &notFoundError{name: name, dir: dir, file: ml.file, page: ml.page, err: err}
	}
	d, err := ml.load(path)
	if err != nil {
		return nil, err
	}
	d.Name = name
	return d, nil
}

// notFoundError reports a missing named data set with directions to get it.
type notFoundError struct {
	name, dir, file, page string
	err                   error
}

func (e *notFoundError) Error() string {
	return fmt.Sprintf("%s not found: put %s in %s%c (download %s.zip from %s) or pass --data-dir",
		e.name, e.file, e.dir, filepath.Separator, e.name, e.page)
}

func (e *notFoundError) Unwrap() error { return e.err }
