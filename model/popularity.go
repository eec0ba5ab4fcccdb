package model

import "fmt"

// Popularity is the most-popular baseline: every user gets the same
// ranking, items ordered by how many training users interacted with them.
// A personalized model that does not beat it has learned little.
type Popularity struct {
	// Counts[i] is the number of training users who interacted with item i.
	Counts []float64
}

// FitPopularity counts, for each of items items, the users in users (each
// user's training interactions) who interacted with it.
func FitPopularity(users [][]Rating, items int) (*Popularity, error) {
	if items <= 0 {
		return nil, fmt.Errorf("model: FitPopularity: items = %d, want > 0", items)
	}
	p := &Popularity{Counts: make([]float64, items)}
	for u, rs := range users {
		for _, x := range rs {
			if x.Item < 0 || int(x.Item) >= items {
				return nil, fmt.Errorf("model: FitPopularity: user %d: item %d out of range: %w", u, x.Item, ErrShape)
			}
			p.Counts[x.Item]++ // a user has at most one Rating per item
		}
	}
	return p, nil
}

// Scores writes every item's popularity into dst (len of Counts). train is
// unused: it gives Popularity the shape of the other scorers.
func (p *Popularity) Scores(dst []float64, train []Rating) {
	if len(dst) != len(p.Counts) {
		panic("model: Popularity.Scores: dst has wrong length")
	}
	copy(dst, p.Counts)
}
