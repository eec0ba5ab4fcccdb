package model

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// Rating is one of a user's interactions as the model sees it: an item index
// and a value (a rating, or an implicit-feedback strength). A user has at
// most one Rating per item.
type Rating struct {
	Item  int32
	Value float32
}

// TrainConfig holds the hyper-parameters of local training. The zero value
// is not useful; start from DefaultTrainConfig.
type TrainConfig struct {
	// Reg is the L2 penalty per observation on every factor and bias
	// touched by it (the weighted-λ regularization of ALS-WR).
	Reg float64
	// LR is the step size of local SGD passes.
	LR float64
	// Epochs is the number of local passes over the user's data after the
	// closed-form fit of the user's factor.
	Epochs int
	// Alpha scales implicit feedback into confidence: c = 1 + Alpha*value.
	Alpha float64
}

// DefaultTrainConfig returns the settings the simulator starts from.
func DefaultTrainConfig() TrainConfig {
	return TrainConfig{Reg: 0.12, LR: 0.03, Epochs: 1, Alpha: 10}
}

// Validate names the first bad field.
func (c TrainConfig) Validate() error {
	switch {
	case !(c.Reg >= 0) || math.IsInf(c.Reg, 0):
		return fmt.Errorf("model: TrainConfig.Reg = %v, want finite >= 0", c.Reg)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("model: TrainConfig.LR = %v, want finite > 0", c.LR)
	case c.Epochs < 0:
		return fmt.Errorf("model: TrainConfig.Epochs = %d, want >= 0", c.Epochs)
	case !(c.Alpha >= 0) || math.IsInf(c.Alpha, 0):
		return fmt.Errorf("model: TrainConfig.Alpha = %v, want finite >= 0", c.Alpha)
	}
	return nil
}

// Trainer runs a user's local computations against one version of the
// global model. It precomputes what every user of that version needs (the
// item Gramian for implicit feedback) and is safe for concurrent use; the
// model must not change while a Trainer uses it.
type Trainer struct {
	m   *Model
	cfg TrainConfig
	// gram = QᵀQ and qb = Qᵀb over all items, for implicit user solves.
	gram *mat.SymDense
	qb   []float64
}

// NewTrainer validates m and cfg and prepares a Trainer.
func NewTrainer(m *Model, cfg TrainConfig) (*Trainer, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trainer{m: m, cfg: cfg}
	if m.Kind == Implicit {
		t.gram, t.qb = gramian(m)
	}
	return t, nil
}

// Model returns the model the trainer works on.
func (t *Trainer) Model() *Model { return t.m }

// gramian returns QᵀQ and Qᵀb over all items: Items·Rank²/2
// multiply-adds, the bulk of a fresh Trainer's cost. Native code runs
// gramianRows, which streams each item's outer product into the upper
// triangle. WebAssembly pays for every load and store of that loop
// (about 5× native); gramianBlocked loads each value once per four
// multiply-adds and keeps the sums in registers, about 3× faster there
// but a quarter slower natively for its padded blocks.
func gramian(m *Model) (*mat.SymDense, []float64) {
	if blockedGramian {
		return gramianBlocked(m)
	}
	return gramianRows(m)
}

func gramianRows(m *Model) (*mat.SymDense, []float64) {
	r := m.Rank
	g := make([]float64, r*r)
	qb := make([]float64, r)
	// Two items a pass: each sum gets the first item's term, then the
	// second's, as one item a pass adds them (the same result to the bit),
	// for half the loads and stores of the triangle.
	i := 0
	for ; i+1 < m.Items; i += 2 {
		q0, q1 := m.Factor(i), m.Factor(i+1)
		q1 = q1[:len(q0)]
		b0, b1 := m.Bias(i), m.Bias(i+1)
		for a := range r {
			qa0, qa1 := q0[a], q1[a]
			qb[a] = qb[a] + qa0*b0 + qa1*b1
			row := g[a*r : a*r+r]
			for c := a; c < r; c++ {
				row[c] = row[c] + qa0*q0[c] + qa1*q1[c]
			}
		}
	}
	if i < m.Items {
		q := m.Factor(i)
		b := m.Bias(i)
		for a := range r {
			qa := q[a]
			qb[a] += qa * b
			row := g[a*r : a*r+r]
			for c := a; c < r; c++ {
				row[c] += qa * q[c]
			}
		}
	}
	return mat.NewSymDense(r, g), qb
}

// gramianBlocked transposes a block of items into rows (each factor, then
// the biases) and accumulates the Gram matrix of those rows two rows by
// four.
func gramianBlocked(m *Model) (*mat.SymDense, []float64) {
	r := m.Rank
	s := r + 1
	rows := (s + 3) &^ 3 // zero rows pad the last block
	const block = 256
	qt := make([]float64, rows*block)
	full := make([]float64, rows*rows) // [Q b]ᵀ[Q b], upper triangle and some
	for lo := 0; lo < m.Items; lo += block {
		n := min(block, m.Items-lo)
		for k := range n {
			for a, v := range m.Params[(lo+k)*s : (lo+k)*s+s] {
				qt[a*block+k] = v
			}
		}
		row := func(a int) []float64 { return qt[a*block : a*block+n] }
		for a := 0; a < rows; a += 2 {
			for c := a &^ 3; c < rows; c += 4 {
				d := dot2x4(row(a), row(a+1), row(c), row(c+1), row(c+2), row(c+3))
				for k := range 4 {
					full[a*rows+c+k] += d[k]
					full[(a+1)*rows+c+k] += d[4+k]
				}
			}
		}
	}
	g := make([]float64, r*r)
	qb := make([]float64, r)
	for a := range r {
		copy(g[a*r+a:a*r+r], full[a*rows+a:a*rows+r])
		qb[a] = full[a*rows+r]
	}
	return mat.NewSymDense(r, g), qb
}

// dot2x4 returns the dot products of x0 with y0…y3, then of x1 with
// y0…y3, all of len(x0).
func dot2x4(x0, x1, y0, y1, y2, y3 []float64) [8]float64 {
	n := len(x0)
	x1, y0, y1, y2, y3 = x1[:n], y0[:n], y1[:n], y2[:n], y3[:n]
	var s00, s01, s02, s03, s10, s11, s12, s13 float64
	for i, a := range x0 {
		b := x1[i]
		c0, c1, c2, c3 := y0[i], y1[i], y2[i], y3[i]
		s00 += a * c0
		s01 += a * c1
		s02 += a * c2
		s03 += a * c3
		s10 += b * c0
		s11 += b * c1
		s12 += b * c2
		s13 += b * c3
	}
	return [8]float64{s00, s01, s02, s03, s10, s11, s12, s13}
}

func (t *Trainer) checkRatings(rs []Rating) error {
	for k, x := range rs {
		if x.Item < 0 || int(x.Item) >= t.m.Items {
			return fmt.Errorf("model: rating %d: item %d out of range [0,%d): %w", k, x.Item, t.m.Items, ErrShape)
		}
		if v := float64(x.Value); !isFinite(v) {
			return fmt.Errorf("model: rating %d: value %v: %w", k, v, ErrNotFinite)
		}
	}
	return nil
}

// FitUser computes the user's factor and bias in closed form: the
// regularized least-squares solution given the current item side. For
// explicit feedback the user's bias is fitted with the factor; for implicit
// feedback the solve runs over all items with confidence weights (Hu, Koren
// and Volinsky 2008) using the precomputed Gramian. A user with no ratings
// gets the zero user.
func (t *Trainer) FitUser(rs []Rating) (*User, error) {
	if err := t.checkRatings(rs); err != nil {
		return nil, err
	}
	u := &User{Factor: make([]float64, t.m.Rank)}
	if len(rs) == 0 {
		return u, nil
	}
	var err error
	if t.m.Kind == Explicit {
		err = t.fitExplicit(u, rs)
	} else {
		err = t.fitImplicit(u, rs)
	}
	if err != nil {
		return nil, err
	}
	return u, nil
}

func (t *Trainer) fitExplicit(u *User, rs []Rating) error {
	m := t.m
	r := m.Rank
	n := r + 1 // factor plus bias
	a := make([]float64, n*n)
	b := make([]float64, n)
	z := make([]float64, n)
	mu := m.Mean()
	for _, x := range rs {
		copy(z, m.Factor(int(x.Item)))
		z[r] = 1
		y := float64(x.Value) - mu - m.Bias(int(x.Item))
		for i := range n {
			b[i] += y * z[i]
			row := a[i*n : i*n+n]
			for j := i; j < n; j++ {
				row[j] += z[i] * z[j]
			}
		}
	}
	lambda := t.cfg.Reg * float64(len(rs))
	for i := range n {
		a[i*n+i] += lambda
	}
	sol, err := solveSym(n, a, b)
	if err != nil {
		return err
	}
	copy(u.Factor, sol[:r])
	u.Bias = sol[r]
	return nil
}

func (t *Trainer) fitImplicit(u *User, rs []Rating) error {
	m := t.m
	r := m.Rank
	a := make([]float64, r*r)
	for i := range r {
		for j := i; j < r; j++ {
			a[i*r+j] = t.gram.At(i, j)
		}
	}
	// rhs = Σ_i c_i (p_i - b_i) q_i: the all-items part is -Qᵀb, and each
	// observed item adds c(1-b) + b.
	b := make([]float64, r)
	for i := range b {
		b[i] = -t.qb[i]
	}
	for _, x := range rs {
		q := m.Factor(int(x.Item))
		bi := m.Bias(int(x.Item))
		c := 1 + t.cfg.Alpha*float64(x.Value)
		w := c*(1-bi) + bi
		for i := range r {
			b[i] += w * q[i]
			row := a[i*r : i*r+r]
			cq := (c - 1) * q[i]
			for j := i; j < r; j++ {
				row[j] += cq * q[j]
			}
		}
	}
	lambda := t.cfg.Reg * float64(len(rs))
	for i := range r {
		a[i*r+i] += lambda
	}
	sol, err := solveSym(r, a, b)
	if err != nil {
		return err
	}
	copy(u.Factor, sol)
	return nil
}

// solveSym solves a·x = b for a symmetric positive-definite a given by its
// upper triangle, row-major.
func solveSym(n int, a, b []float64) ([]float64, error) {
	var ch mat.Cholesky
	if ok := ch.Factorize(mat.NewSymDense(n, a)); !ok {
		return nil, fmt.Errorf("model: user system is not positive definite (is Reg 0?)")
	}
	x := mat.NewVecDense(n, nil)
	if err := ch.SolveVecTo(x, mat.NewVecDense(n, b)); err != nil {
		return nil, fmt.Errorf("model: user solve: %w", err)
	}
	return x.RawVector().Data, nil
}

// Update is what one client computes in a round.
type Update struct {
	// User is the freshly fitted private half; it stays on the device.
	User *User
	// Loss is the sum of the user's training loss before the update, and N
	// the number of terms in it, so that losses average across clients.
	Loss float64
	N    int
}

// LocalUpdate fits the user in closed form, then runs cfg.Epochs passes of
// SGD over the user's data on a private copy of the item side and writes the
// change to the global parameters into dst (len Dim). dst is dense: entries
// of items the user never touched are zero for explicit feedback but are
// still sent, so that the update's shape reveals nothing about which items
// the user touched. r orders the SGD passes.
func (t *Trainer) LocalUpdate(dst []float64, rs []Rating, r *rand.Rand) (Update, error) {
	m := t.m
	if len(dst) != len(m.Params) {
		return Update{}, fmt.Errorf("model: update has %d entries, want %d: %w", len(dst), len(m.Params), ErrShape)
	}
	u, err := t.FitUser(rs)
	if err != nil {
		return Update{}, err
	}
	up := Update{User: u}
	clear(dst)
	if len(rs) == 0 {
		return up, nil
	}
	if m.Kind == Explicit {
		up.Loss, up.N = t.sgdExplicit(dst, u, rs, r)
	} else {
		up.Loss, up.N = t.gdImplicit(dst, u, rs)
	}
	return up, nil
}

// sgdExplicit runs the local passes with dst holding the change to the
// touched items (the global values plus dst are the local copy).
func (t *Trainer) sgdExplicit(dst []float64, u *User, rs []Rating, r *rand.Rand) (float64, int) {
	m := t.m
	rank := m.Rank
	s := rank + 1
	lr, reg := t.cfg.LR, t.cfg.Reg
	mi := len(dst) - 1
	var loss float64
	for _, x := range rs {
		e := float64(x.Value) - m.Score(u, int(x.Item))
		loss += e * e
	}
	order := make([]int, len(rs))
	for i := range order {
		order[i] = i
	}
	p := u.Factor
	for range t.cfg.Epochs {
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			i := int(rs[k].Item)
			g := m.Params[i*s : i*s+s]
			d := dst[i*s : i*s+s]
			pred := m.Params[mi] + dst[mi] + u.Bias + g[rank] + d[rank]
			for f := range rank {
				pred += (g[f] + d[f]) * p[f]
			}
			e := float64(rs[k].Value) - pred
			for f := range rank {
				q := g[f] + d[f]
				d[f] += lr * (e*p[f] - reg*q)
				p[f] += lr * (e*q - reg*p[f])
			}
			d[rank] += lr * (e - reg*(g[rank]+d[rank]))
			u.Bias += lr * (e - reg*u.Bias)
			dst[mi] += lr * e / float64(len(rs)*t.cfg.Epochs)
		}
	}
	return loss, len(rs)
}

// gdImplicit takes cfg.Epochs full gradient steps of the confidence-weighted
// loss over all items (every item is a negative with confidence 1).
func (t *Trainer) gdImplicit(dst []float64, u *User, rs []Rating) (float64, int) {
	m := t.m
	rank := m.Rank
	s := rank + 1
	lr, reg := t.cfg.LR, t.cfg.Reg
	// The observed items in item order, walked beside the pass over all
	// items (a map lookup per item costs more than the item's arithmetic).
	type observed struct {
		item int
		conf float64
	}
	obs := make([]observed, len(rs))
	for k, x := range rs {
		obs[k] = observed{int(x.Item), 1 + t.cfg.Alpha*float64(x.Value)}
	}
	slices.SortFunc(obs, func(a, b observed) int { return cmp.Compare(a.item, b.item) })
	p := u.Factor[:rank]
	var loss float64
	steps := max(t.cfg.Epochs, 1)
	for step := range steps {
		next := 0
		for i := range m.Items {
			g := m.Params[i*s : i*s+s]
			d := dst[i*s : i*s+s]
			gf, df := g[:rank], d[:rank]
			x := g[rank] + d[rank]
			for f, q := range gf {
				x += (q + df[f]) * p[f]
			}
			c, pref, r := 1.0, 0.0, 0.0
			for next < len(obs) && obs[next].item < i { // a repeated item
				next++
			}
			if next < len(obs) && obs[next].item == i {
				c, pref, r = obs[next].conf, 1, reg
				next++
			}
			e := pref - x
			if step == 0 {
				loss += c * e * e
			}
			if t.cfg.Epochs == 0 {
				continue
			}
			w := lr * c * e
			if r == 0 {
				for f, pf := range p {
					df[f] += w * pf
				}
				d[rank] += w
				continue
			}
			for f, pf := range p {
				df[f] += w*pf - lr*r*(gf[f]+df[f])
			}
			d[rank] += w - lr*r*(g[rank]+d[rank])
		}
	}
	return loss, m.Items
}
