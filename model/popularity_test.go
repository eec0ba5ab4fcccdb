package model

import (
	"errors"
	"slices"
	"testing"
)

func TestFitPopularity(t *testing.T) {
	users := [][]Rating{
		{{Item: 0, Value: 5}, {Item: 2, Value: 1}},
		{{Item: 2, Value: 3}},
		nil,
		{{Item: 2, Value: 1}, {Item: 3, Value: 0.5}},
	}
	p, err := FitPopularity(users, 5)
	if err != nil {
		t.Fatal(err)
	}
	// Users, not values: item 2 has three users whatever they gave it.
	want := []float64{1, 0, 3, 1, 0}
	got := make([]float64, 5)
	p.Scores(got, users[0])
	if !slices.Equal(got, want) {
		t.Errorf("Scores() = %v, want %v", got, want)
	}
	// The tie between items 0 and 3 goes to the lower index.
	if top := TopK(got, 3); !slices.Equal(top, []int{2, 0, 3}) {
		t.Errorf("TopK(Scores(), 3) = %v, want [2 0 3]", top)
	}
	m := EvaluateScores(got, users[0], []Rating{{Item: 3, Value: 1}}, EvalConfig{Ks: []int{1}})
	if m.RecallAt(1) != 1 {
		t.Errorf("RecallAt(1) = %v, want 1: item 3 tops the ranking once user 0's items are left out", m.RecallAt(1))
	}
}

func TestFitPopularityBadInput(t *testing.T) {
	tests := []struct {
		name    string
		users   [][]Rating
		items   int
		wantErr error
	}{
		{"no items", nil, 0, nil},
		{"item out of range", [][]Rating{{{Item: 3, Value: 1}}}, 3, ErrShape},
		{"negative item", [][]Rating{{{Item: -1, Value: 1}}}, 3, ErrShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := FitPopularity(tt.users, tt.items)
			if err == nil || p != nil {
				t.Fatalf("FitPopularity() = %v, %v, want an error", p, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("FitPopularity() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
