package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Kind says what the values a model is trained on mean.
type Kind uint8

const (
	// Explicit feedback: values are ratings; the model predicts them.
	Explicit Kind = iota + 1
	// Implicit feedback: values are interaction strengths (views, clicks,
	// purchases); the model scores preference with a confidence weight.
	Implicit
)

func (k Kind) String() string {
	switch k {
	case Explicit:
		return "explicit"
	case Implicit:
		return "implicit"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ErrShape reports parameters or updates whose size does not match the model.
var ErrShape = errors.New("model: shape mismatch")

// ErrNotFinite reports a NaN or infinite value where a finite one is required.
var ErrNotFinite = errors.New("model: value is not finite")

// Model is the global, shareable half of a matrix-factorization
// recommender: item factors, item biases and the global mean. The other half
// (a user's factor and bias) lives only on that user's device.
//
// Params is one flat vector so that updates, clipping, aggregation and
// encoding all work on plain []float64. For item i, with s = Rank+1,
// Params[i*s : i*s+Rank] is its factor and Params[i*s+Rank] its bias; the
// last element is the global mean.
type Model struct {
	Kind   Kind
	Items  int
	Rank   int
	Params []float64
}

// Dim is the length of the parameter vector for items and rank.
func Dim(items, rank int) int { return items*(rank+1) + 1 }

// New returns a model with small random item factors (std initStd, drawn
// from r), zero biases and the given global mean.
func New(kind Kind, items, rank int, mean, initStd float64, r *rand.Rand) (*Model, error) {
	switch {
	case kind != Explicit && kind != Implicit:
		return nil, fmt.Errorf("model: kind %d is neither explicit nor implicit", kind)
	case items <= 0:
		return nil, fmt.Errorf("model: items = %d, want > 0", items)
	case rank <= 0:
		return nil, fmt.Errorf("model: rank = %d, want > 0", rank)
	case !isFinite(mean) || !isFinite(initStd) || initStd < 0:
		return nil, fmt.Errorf("model: mean %v and initStd %v must be finite, initStd >= 0", mean, initStd)
	}
	m := &Model{Kind: kind, Items: items, Rank: rank, Params: make([]float64, Dim(items, rank))}
	s := rank + 1
	for i := range items {
		f := m.Params[i*s : i*s+rank]
		for k := range f {
			f[k] = r.NormFloat64() * initStd
		}
	}
	m.Params[len(m.Params)-1] = mean
	return m, nil
}

// Validate checks that the model's shape is consistent and every parameter
// is finite; it is the check to run on a model that arrived from elsewhere.
func (m *Model) Validate() error {
	if m.Kind != Explicit && m.Kind != Implicit {
		return fmt.Errorf("model: unknown kind %d", m.Kind)
	}
	if m.Items <= 0 || m.Rank <= 0 {
		return fmt.Errorf("model: items %d and rank %d must be > 0: %w", m.Items, m.Rank, ErrShape)
	}
	if want := Dim(m.Items, m.Rank); len(m.Params) != want {
		return fmt.Errorf("model: %d params for %d items at rank %d, want %d: %w", len(m.Params), m.Items, m.Rank, want, ErrShape)
	}
	if i := FirstNonFinite(m.Params); i >= 0 {
		return fmt.Errorf("model: param %d is %v: %w", i, m.Params[i], ErrNotFinite)
	}
	return nil
}

// Clone returns a deep copy.
func (m *Model) Clone() *Model {
	c := *m
	c.Params = append([]float64(nil), m.Params...)
	return &c
}

// Factor returns item i's factor, aliasing Params.
func (m *Model) Factor(i int) []float64 {
	s := m.Rank + 1
	return m.Params[i*s : i*s+m.Rank : i*s+m.Rank]
}

// Bias returns item i's bias.
func (m *Model) Bias(i int) float64 { return m.Params[i*(m.Rank+1)+m.Rank] }

// Mean returns the global mean rating.
func (m *Model) Mean() float64 { return m.Params[len(m.Params)-1] }

// User is the private half of the model: it never leaves the device.
type User struct {
	Factor []float64
	Bias   float64
}

// Score is the model's raw score of item i for user u: the predicted rating
// for explicit models, the preference score for implicit ones.
func (m *Model) Score(u *User, i int) float64 {
	s := m.Rank + 1
	row := m.Params[i*s : i*s+s]
	x := row[m.Rank] + dot(row[:m.Rank], u.Factor)
	if m.Kind == Explicit {
		x += m.Mean() + u.Bias
	}
	return x
}

// Scores writes the score of every item for u into dst (len Items).
func (m *Model) Scores(dst []float64, u *User) {
	if len(dst) != m.Items {
		panic("model: Scores: dst has wrong length")
	}
	s := m.Rank + 1
	off := 0.0
	if m.Kind == Explicit {
		off = m.Mean() + u.Bias
	}
	for i := range dst {
		row := m.Params[i*s : i*s+s]
		dst[i] = off + row[m.Rank] + dot(row[:m.Rank], u.Factor)
	}
}

func dot(a, b []float64) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// FirstNonFinite returns the index of the first NaN or ±Inf in xs, or
// -1: the check every decoder and the replicated state make of a vector.
func FirstNonFinite(xs []float64) int {
	// x-x is 0 for a finite x and NaN otherwise, so a block's sum of x-x
	// is 0 unless the block holds one: one branch a block, not two tests
	// an element. Every fresh Trainer validates its whole model this way.
	const block = 64
	for lo := 0; lo < len(xs); lo += block {
		b := xs[lo:min(lo+block, len(xs))]
		var s0, s1 float64 // two sums: half the chain of dependent adds
		i := 0
		for ; i+1 < len(b); i += 2 {
			s0 += b[i] - b[i]
			s1 += b[i+1] - b[i+1]
		}
		for ; i < len(b); i++ {
			s0 += b[i] - b[i]
		}
		if s0+s1 == 0 {
			continue
		}
		for i, x := range b {
			if !isFinite(x) {
				return lo + i
			}
		}
	}
	return -1
}
