package client

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Filter narrows what Recommend returns. The zero value excludes the items
// the user has interacted with and nothing else.
type Filter struct {
	// IncludeSeen lets items the user interacted with be recommended.
	IncludeSeen bool
	// Exclude lists item IDs never to return.
	Exclude []string
	// Allow, if set, is asked about candidates in order of score until k
	// are allowed (in stock, age-appropriate, ...). It may be called
	// concurrently with other Client methods.
	Allow func(item string) bool
}

// Recommendation is an item and its score under the model: a predicted
// rating for explicit models, a preference score for implicit ones.
type Recommendation struct {
	Item  string
	Score float64
}

// Recommend returns the k items the model scores highest for the user,
// best first, from the installed model and the user's own factor (fitted
// again on the device if interactions arrived since). Nothing leaves the
// device. It returns ErrNoModel before a model is installed, and fewer than
// k items when the filter leaves fewer.
func (c *Client) Recommend(ctx context.Context, k int, f Filter) ([]Recommendation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if k <= 0 {
		return nil, fmt.Errorf("client: recommend: k = %d, want > 0", k)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	rel := c.model.rel
	if rel == nil {
		c.mu.Unlock()
		return nil, ErrNoModel
	}
	u, seen, err := c.userLocked()
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	if len(c.scratch) != rel.Model.Items {
		c.scratch = make([]float64, rel.Model.Items)
	}
	scores := c.scratch
	rel.Model.Scores(scores, u)
	if !f.IncludeSeen {
		for _, i := range seen {
			scores[i] = math.Inf(-1)
		}
	}
	for _, id := range f.Exclude {
		if i, ok := c.model.index[id]; ok {
			scores[i] = math.Inf(-1)
		}
	}
	if f.Allow != nil {
		// Do not hold the lock while app code runs.
		scores = slices.Clone(scores)
		c.mu.Unlock()
		return pick(scores, rel.Items, k, f.Allow), nil
	}
	out := pick(scores, rel.Items, k, nil)
	c.mu.Unlock()
	return out, nil
}

// pick returns the top k of scores whose items allow accepts (nil accepts
// all), skipping -Inf. It may overwrite scores.
func pick(scores []float64, items []string, k int, allow func(string) bool) []Recommendation {
	out := make([]Recommendation, 0, k)
	for want := k; len(out) < k; {
		top := model.TopK(scores, want)
		for _, i := range top {
			s := scores[i]
			scores[i] = math.Inf(-1)
			if allow != nil && !allow(items[i]) {
				continue
			}
			out = append(out, Recommendation{Item: items[i], Score: s})
			if len(out) == k {
				break
			}
		}
		if len(top) < want {
			break // every candidate seen
		}
		want = k - len(out)
	}
	return out
}

// userLocked returns the user's factor for the installed model, fitting it
// again if interactions changed, and the indices of the items the user
// touched. The caller holds mu and has checked that a model is installed.
func (c *Client) userLocked() (*model.User, []int32, error) {
	ms := &c.model
	if ms.user != nil && ms.seen != nil {
		return ms.user, ms.seen, nil
	}
	seen := make([]int32, 0, len(c.st.interactions))
	for _, x := range c.st.interactions {
		if i, ok := ms.index[x.Item]; ok {
			seen = append(seen, i)
		}
	}
	slices.Sort(seen)
	seen = slices.Clip(slices.Compact(seen))
	if ms.user == nil {
		rs := ratingsFor(c.st.interactions, ms.index, ms.rel.Model.Kind, ms.rel.EventWeights.orDefault())
		// Without ratings the fit is the zero factor: no need to build
		// the trainer (the implicit Gramian, a pass over every item)
		// before a new visitor's first recommendations.
		u := &model.User{Factor: make([]float64, ms.rel.Model.Rank)}
		if len(rs) > 0 {
			t, err := c.trainerLocked()
			if err != nil {
				return nil, nil, err
			}
			if u, err = t.FitUser(rs); err != nil {
				return nil, nil, fmt.Errorf("client: refresh user: %w", err)
			}
		}
		ms.user = u
		c.st.user = &userRec{Version: ms.rel.Version, User: model.User{Factor: slices.Clone(u.Factor), Bias: u.Bias}}
		c.st.userFresh = true
	}
	ms.seen = seen
	return ms.user, ms.seen, nil
}

// trainerLocked returns the installed model's trainer, with the app's
// training settings, building it on first use: it holds what every fit
// against the model shares (the implicit Gramian), for Recommend and for
// a round of the same model. The caller holds mu and has checked that a
// model is installed.
func (c *Client) trainerLocked() (*model.Trainer, error) {
	ms := &c.model
	if ms.trainer == nil {
		t, err := model.NewTrainer(ms.rel.Model, c.cfg.trainFor(ms.rel.Model.Kind))
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		ms.trainer = t
	}
	return ms.trainer, nil
}

// EventWeights say how much one event of each kind adds to an item's
// strength in an implicit model: the device trains on, and scores its user
// from, log2(1 + Σ weight) per item, where each event weighs its kind's
// weight times its Value (if set) and a rating weighs its value. They are
// the cluster's: the coordinator's training configuration sets them
// (fedrec coordinator --event-weights) and they arrive with its round plans
// (Offer.EventWeights) and model downloads (Release.EventWeights), so that
// every device of a cluster maps events alike. The zero value means
// DefaultEventWeights(). Explicit models use ratings only.
type EventWeights struct {
	View, Click, Cart, Purchase float64
}

// DefaultEventWeights are view 1, click 2, cart 4, purchase 8: what a
// cluster uses unless its operator says otherwise, and what a release or
// round without weights (an older cluster, a bundled model) means.
func DefaultEventWeights() EventWeights {
	d := wire.DefaultEventWeights()
	return eventWeightsOf(&d)
}

// eventWeightsOf reads weights from the wire; nil is the zero value.
func eventWeightsOf(w *wire.EventWeights) EventWeights {
	if w == nil {
		return EventWeights{}
	}
	return EventWeights{View: w.View, Click: w.Click, Cart: w.Cart, Purchase: w.Purchase}
}

// orDefault returns w, or the defaults for the zero value.
func (w EventWeights) orDefault() EventWeights {
	if w == (EventWeights{}) {
		return DefaultEventWeights()
	}
	return w
}

// validate checks weights that arrived from elsewhere: each finite and >=
// 0. The zero value stands for the defaults; weights from the network are
// refused all zero before they get here (wire.EventWeights.Validate).
func (w EventWeights) validate() error {
	for _, x := range [...]float64{w.View, w.Click, w.Cart, w.Purchase} {
		if !(x >= 0) || math.IsInf(x, 0) {
			return fmt.Errorf("event weights view %v, click %v, cart %v, purchase %v: want finite weights >= 0", w.View, w.Click, w.Cart, w.Purchase)
		}
	}
	return nil
}

// of returns the weight of one event of kind k (not Rating).
func (w EventWeights) of(k Kind) float64 {
	switch k {
	case View:
		return w.View
	case Click:
		return w.Click
	case Cart:
		return w.Cart
	case Purchase:
		return w.Purchase
	}
	panic("client: no event weight for " + k.String())
}

// ratingsFor turns interactions into the model's ratings, one per item of
// the catalogue ix, sorted by item. For explicit models only ratings count,
// the latest per item. For implicit models an item's strength is
// log2(1 + Σ weight), where an event weighs its kind's weight in w times
// its Value if set, and a rating its value: with the default weights one
// view gives strength 1. w must not be the zero value.
func ratingsFor(xs []stored, ix map[string]int32, kind model.Kind, w EventWeights) []model.Rating {
	type acc struct {
		v float64
		t int64
	}
	by := make(map[int32]acc, min(len(xs), 1024))
	for _, x := range xs {
		i, ok := ix[x.Item]
		if !ok {
			continue
		}
		a, had := by[i]
		if kind == model.Explicit {
			if x.Kind == Rating && (!had || x.Time >= a.t) {
				by[i] = acc{v: x.Value, t: x.Time}
			}
			continue
		}
		v := x.Value
		if x.Kind != Rating {
			if v == 0 {
				v = 1
			}
			v *= w.of(x.Kind)
		}
		by[i] = acc{v: a.v + max(v, 0)}
	}
	rs := make([]model.Rating, 0, len(by))
	for i, a := range by {
		v := a.v
		if kind == model.Implicit {
			v = math.Log2(1 + v)
		}
		rs = append(rs, model.Rating{Item: i, Value: float32(v)})
	}
	slices.SortFunc(rs, func(a, b model.Rating) int { return int(a.Item) - int(b.Item) })
	return rs
}
