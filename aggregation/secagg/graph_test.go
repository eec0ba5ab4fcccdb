package secagg

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestGraph(t *testing.T) {
	tests := []struct {
		n, degree, want int
	}{
		{3, 0, 2}, {10, 0, 9}, {10, 9, 9}, {10, 50, 9}, {10, 2, 2}, {10, 8, 8},
		{100, 16, 16}, {1001, 20, 20},
	}
	for _, tt := range tests {
		cfg := testConfig(tt.n, 1, 8, tt.degree, 2)
		nc, err := cfg.normalize()
		if err != nil {
			t.Fatal(err)
		}
		g := newGraph(&nc)
		if g.degree() != tt.want {
			t.Errorf("n=%d Degree=%d: degree() = %d, want %d", tt.n, tt.degree, g.degree(), tt.want)
		}
		var nb []int
		for i := range tt.n {
			nb = g.neighbours(i, nb)
			if len(nb) != tt.want {
				t.Fatalf("n=%d Degree=%d: client %d has %d neighbours, want %d", tt.n, tt.degree, i, len(nb), tt.want)
			}
			if !slices.IsSorted(nb) || len(slices.Compact(slices.Clone(nb))) != len(nb) {
				t.Fatalf("neighbours(%d) = %v, want ascending and distinct", i, nb)
			}
			for _, j := range nb {
				if j == i || !g.adjacent(i, j) || !g.adjacent(j, i) {
					t.Fatalf("n=%d: %d and %d listed as neighbours but adjacent() disagrees", tt.n, i, j)
				}
			}
		}
	}
}

func TestGraphDependsOnSeedAndRound(t *testing.T) {
	a := testConfig(50, 1, 8, 6, 2)
	b := a
	b.Seed = []byte("another public seed, 32 bytes...")
	c := a
	c.Round++
	na, _ := a.Neighbours(a.Clients[0])
	na2, _ := a.Neighbours(a.Clients[0])
	nb, _ := b.Neighbours(a.Clients[0])
	nc, _ := c.Neighbours(a.Clients[0])
	if !slices.Equal(na, na2) {
		t.Errorf("Neighbours not deterministic: %v then %v", na, na2)
	}
	if slices.Equal(na, nb) || slices.Equal(na, nc) {
		t.Errorf("Neighbours(%d) = %v with another seed or round too", a.Clients[0], na)
	}
	if _, err := a.Neighbours(1); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("Neighbours(unknown) error = %v, want ErrUnknownClient", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := testConfig(10, 4, 16, 4, 2)
	tests := []struct {
		field string
		edit  func(*Config)
	}{
		{"Clients", func(c *Config) { c.Clients = c.Clients[:2] }},
		{"Clients", func(c *Config) { c.Clients[1] = c.Clients[0] }},
		{"VectorLen", func(c *Config) { c.VectorLen = 0 }},
		{"VectorLen", func(c *Config) { c.VectorLen = MaxVectorLen + 1 }},
		{"Bits", func(c *Config) { c.Bits = 0 }},
		{"Bits", func(c *Config) { c.Bits = 65 }},
		{"Degree", func(c *Config) { c.Degree = -1 }},
		{"Degree", func(c *Config) { c.Degree = 3 }},
		{"Seed", func(c *Config) { c.Seed = c.Seed[:MinSeedLen-1] }},
		{"Threshold", func(c *Config) { c.Threshold = 1 }},
		{"Threshold", func(c *Config) { c.Threshold = 5 }},
		{"MinSurvivors", func(c *Config) { c.MinSurvivors = 1 }},
		{"MinSurvivors", func(c *Config) { c.MinSurvivors = 11 }},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate() = %v for a valid config", err)
	}
	for _, tt := range tests {
		c := ok
		c.Clients = slices.Clone(ok.Clients)
		tt.edit(&c)
		err := c.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("Validate() = %v, want ErrConfig naming %s", err, tt.field)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := testConfig(11, 4, 16, 0, 0)
	c.Seed = nil // not needed for a complete graph
	nc, err := c.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if nc.Degree != 10 || nc.Threshold != 6 || nc.MinSurvivors != 6 {
		t.Errorf("defaults: Degree, Threshold, MinSurvivors = %d, %d, %d; want 10, 6, 6", nc.Degree, nc.Threshold, nc.MinSurvivors)
	}
	// The digest ignores client order but not anything else.
	c2 := c
	c2.Clients = slices.Clone(c.Clients)
	slices.Reverse(c2.Clients)
	nc2, _ := c2.normalize()
	if nc.digest() != nc2.digest() {
		t.Error("digest depends on the order of Clients")
	}
	c2.Round++
	nc2, _ = c2.normalize()
	if nc.digest() == nc2.digest() {
		t.Error("digest does not depend on Round")
	}
}
