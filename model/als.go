package model

import (
	"context"
	"fmt"
	"sync"
)

// ALS fits m and every user on pooled data by alternating least squares on
// the same objective the clients optimize: the centralized baseline that a
// federated run is compared with. users[u] holds user u's training ratings.
// The global mean is left as it is. It returns the fitted users.
func ALS(ctx context.Context, m *Model, users [][]Rating, cfg TrainConfig, iters, workers int) ([]*User, error) {
	if workers < 1 {
		workers = 1
	}
	type entry struct {
		user  int32
		value float32
	}
	byItem := make([][]entry, m.Items)
	for u, rs := range users {
		for _, x := range rs {
			if x.Item < 0 || int(x.Item) >= m.Items {
				return nil, fmt.Errorf("model: ALS: user %d: item %d out of range: %w", u, x.Item, ErrShape)
			}
			byItem[x.Item] = append(byItem[x.Item], entry{int32(u), x.Value})
		}
	}
	fitted := make([]*User, len(users))
	parallel := func(n int, f func(i int) error) error {
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					if err := f(i); err != nil {
						errs[w] = err
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	rank := m.Rank
	s := rank + 1
	for range iters {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, err := NewTrainer(m, cfg)
		if err != nil {
			return nil, err
		}
		if err := parallel(len(users), func(u int) error {
			f, err := t.FitUser(users[u])
			fitted[u] = f
			return err
		}); err != nil {
			return nil, err
		}
		var pgram []float64 // Σ_u [p_u;1][p_u;1]ᵀ for implicit item solves
		if m.Kind == Implicit {
			pgram = make([]float64, s*s)
			for _, f := range fitted {
				for a := range s {
					za := 1.0
					if a < rank {
						za = f.Factor[a]
					}
					for b := a; b < s; b++ {
						zb := 1.0
						if b < rank {
							zb = f.Factor[b]
						}
						pgram[a*s+b] += za * zb
					}
				}
			}
		}
		mu := m.Mean()
		err = parallel(m.Items, func(i int) error {
			es := byItem[i]
			if len(es) == 0 {
				return nil
			}
			a := make([]float64, s*s)
			b := make([]float64, s)
			z := make([]float64, s)
			if pgram != nil {
				copy(a, pgram)
			}
			for _, e := range es {
				f := fitted[e.user]
				copy(z, f.Factor)
				z[rank] = 1
				var y, c float64
				if m.Kind == Explicit {
					y, c = float64(e.value)-mu-f.Bias, 1
				} else {
					// Implicit: target 1 with confidence c; the Gramian
					// already counted this user once with weight 1, target 0.
					c = 1 + cfg.Alpha*float64(e.value)
					y = c
					c--
				}
				for p := range s {
					b[p] += y * z[p]
					row := a[p*s : p*s+s]
					for q := p; q < s; q++ {
						row[q] += c * z[p] * z[q]
					}
				}
			}
			lambda := cfg.Reg * float64(len(es))
			for p := range s {
				a[p*s+p] += lambda
			}
			sol, err := solveSym(s, a, b)
			if err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
			copy(m.Params[i*s:i*s+s], sol)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	t, err := NewTrainer(m, cfg)
	if err != nil {
		return nil, err
	}
	for u := range users {
		if fitted[u], err = t.FitUser(users[u]); err != nil {
			return nil, err
		}
	}
	return fitted, nil
}
