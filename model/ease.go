package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// DefaultEASELambda is EASE's L2 penalty for MovieLens-sized data.
const DefaultEASELambda = 500

// MaxEASEItems bounds the catalogue FitEASE accepts: B is items² float64
// (3.2 GB at 20,000 items) and fitting is cubic in items.
const MaxEASEItems = 20_000

// ErrTooManyItems reports a catalogue too large for FitEASE.
var ErrTooManyItems = errors.New("model: catalogue too large for EASE")

// EASE is Steck's embarrassingly shallow autoencoder (WWW 2019), the
// strongest simple centralized reference for implicit top-K ranking: an
// item-item weight matrix B with a zero diagonal, fitted in closed form on
// the binarized user×item matrix X as B = I - P·diag(1/diag P), where
// P = (XᵀX + λI)⁻¹. A user with training row x is scored xB.
type EASE struct {
	Items int
	// B is row-major Items×Items: B[i*Items+j] is what an interaction with
	// item i adds to the score of item j.
	B []float64
}

// FitEASE fits EASE on pooled training data: users[u] holds user u's
// training interactions, every one of which counts as 1 whatever its value.
// lambda must be finite and > 0 (DefaultEASELambda is the usual choice).
// ctx is checked between the heavy steps; a step itself is not interrupted.
func FitEASE(ctx context.Context, users [][]Rating, items int, lambda float64) (*EASE, error) {
	return fitEASE(ctx, users, items, lambda, routeAuto)
}

type easeRoute int

const (
	routeAuto   easeRoute = iota
	routePrimal           // invert XᵀX + λI, items×items
	routeDual             // invert XXᵀ + λI, users×users (Woodbury)
)

func fitEASE(ctx context.Context, users [][]Rating, items int, lambda float64, route easeRoute) (*EASE, error) {
	switch {
	case items <= 0:
		return nil, fmt.Errorf("model: FitEASE: items = %d, want > 0", items)
	case items > MaxEASEItems:
		return nil, fmt.Errorf("model: FitEASE: %d items needs a %d×%d float64 matrix (%.1f GB), above the limit of %d items: %w",
			items, items, items, float64(items)*float64(items)*8/1e9, MaxEASEItems, ErrTooManyItems)
	case !(lambda > 0) || math.IsInf(lambda, 0):
		return nil, fmt.Errorf("model: FitEASE: lambda = %v, want finite > 0", lambda)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// rows are the item lists of users with training data, sorted.
	var rows [][]int32
	var nnz int
	for u, rs := range users {
		if len(rs) == 0 {
			continue
		}
		row := make([]int32, len(rs))
		for k, x := range rs {
			if x.Item < 0 || int(x.Item) >= items {
				return nil, fmt.Errorf("model: FitEASE: user %d: item %d out of range: %w", u, x.Item, ErrShape)
			}
			row[k] = x.Item
		}
		slices.Sort(row)
		rows = append(rows, row)
		nnz += len(row)
	}
	if route == routeAuto {
		// Inverting is cubic in the side of the matrix inverted; the dual
		// route also pays (users+items)·nnz to map back to items. Data sets
		// with fewer users than items (MovieLens latest-small: 610 users,
		// 9,724 items) fit in seconds instead of minutes.
		n, m := float64(items), float64(len(rows))
		route = routePrimal
		if m*m*m+2*(m+n)*float64(nnz) < n*n*n {
			route = routeDual
		}
	}
	b := make([]float64, items*items)
	var err error
	if route == routeDual {
		err = easeDual(ctx, b, rows, items, lambda)
	} else {
		err = easePrimal(ctx, b, rows, items, lambda)
	}
	if err != nil {
		return nil, fmt.Errorf("model: FitEASE: %w", err)
	}
	return &EASE{Items: items, B: b}, nil
}

// easePrimal writes B into b (items×items) by inverting G = XᵀX + λI.
func easePrimal(ctx context.Context, b []float64, rows [][]int32, n int, lambda float64) error {
	// P = (XᵀX + λI)⁻¹: each user adds the pairs of its items.
	if err := invertGram(ctx, b, rows, n, lambda); err != nil {
		return err
	}
	// B_ij = -P_ij / P_jj, B_jj = 0.
	d := make([]float64, n)
	for j := range n {
		d[j] = b[j*n+j]
	}
	for i := range n {
		r := b[i*n : i*n+n]
		for j, p := range r {
			r[j] = -p / d[j]
		}
		r[i] = 0
	}
	return nil
}

// invertGram writes into dst (n×n, zero) the inverse of G + λI, where G
// counts, for each pair of indices, the groups holding both: XᵀX when the
// groups (each ascending) are users' items, XXᵀ when they are items' users. Only G's upper
// triangle is built; invertSPD reads no more.
func invertGram(ctx context.Context, dst []float64, groups [][]int32, n int, lambda float64) error {
	for _, g := range groups {
		for p, i := range g {
			r := dst[int(i)*n : int(i)*n+n]
			for _, j := range g[p:] {
				r[j]++
			}
		}
	}
	for i := range n {
		dst[i*n+i] += lambda
	}
	if err := invertSPD(ctx, dst, n); err != nil {
		return err
	}
	return ctx.Err()
}

// easeDual writes B into b by the Woodbury identity
// (XᵀX + λI)⁻¹ = (I - XᵀKX)/λ with K = (XXᵀ + λI)⁻¹, so that only a
// users×users matrix is inverted. With M = XᵀKX, B_ij = M_ij / (1 - M_jj).
func easeDual(ctx context.Context, b []float64, rows [][]int32, n int, lambda float64) error {
	m := len(rows)
	byItem := make([][]int32, n) // users of each item, ascending
	for u, row := range rows {
		for _, i := range row {
			byItem[i] = append(byItem[i], int32(u))
		}
	}
	// K = (XXᵀ + λI)⁻¹: each item adds the pairs of its users.
	k := make([]float64, m*m)
	if err := invertGram(ctx, k, byItem, m, lambda); err != nil {
		return err
	}
	// Y = KX (users×items), then M = XᵀY row by row into b.
	y := make([]float64, m*n)
	for u := range m {
		yu := y[u*n : u*n+n]
		for v, kv := range k[u*m : u*m+m] {
			for _, j := range rows[v] {
				yu[j] += kv
			}
		}
	}
	k = nil
	for i, us := range byItem {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		bi := b[i*n : i*n+n]
		for _, u := range us {
			floats.Add(bi, y[int(u)*n:int(u)*n+n])
		}
	}
	d := make([]float64, n)
	for j := range n {
		d[j] = 1 - b[j*n+j] // λP_jj > 0
	}
	for i := range n {
		r := b[i*n : i*n+n]
		for j := range r {
			r[j] /= d[j]
		}
		r[i] = 0
	}
	return nil
}

// invertSPD overwrites a, a row-major n×n symmetric positive definite
// matrix whose upper triangle is set, with its full inverse. It calls
// LAPACK's Cholesky factorization and inversion in place rather than through
// mat.Cholesky, which would copy the factor (another n² float64, 650 MB at
// 9,000 items) and estimate a condition number that λ already bounds.
func invertSPD(ctx context.Context, a []float64, n int) error {
	sym := blas64.Symmetric{Uplo: blas.Upper, N: n, Stride: n, Data: a}
	t, ok := lapack64.Potrf(sym)
	if !ok {
		return errors.New("gram matrix is not positive definite")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, ok := lapack64.Potri(t); !ok {
		return errors.New("cholesky factor is singular")
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			a[j*n+i] = a[i*n+j]
		}
	}
	return nil
}

// Scores writes the score of every item for a user with training
// interactions train into dst (len Items): the sum of B's rows of those
// items. Training items get scores too; evaluation excludes them.
func (e *EASE) Scores(dst []float64, train []Rating) {
	if len(dst) != e.Items {
		panic("model: EASE.Scores: dst has wrong length")
	}
	clear(dst)
	n := e.Items
	for _, x := range train {
		floats.Add(dst, e.B[int(x.Item)*n:int(x.Item)*n+n])
	}
}
