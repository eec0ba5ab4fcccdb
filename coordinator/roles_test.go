package coordinator

import (
	"maps"
	"testing"
)

// quotas splits a cohort among the nodes in proportion to their waiting
// devices, never more than a node has, adding up to the cohort.
func TestQuotas(t *testing.T) {
	cases := []struct {
		want   int
		counts map[string]int
		out    map[string]int
	}{
		{10, map[string]int{"a": 10, "b": 10, "c": 10}, map[string]int{"a": 4, "b": 3, "c": 3}},
		{30, map[string]int{"a": 10, "b": 10, "c": 10}, map[string]int{"a": 10, "b": 10, "c": 10}},
		{40, map[string]int{"a": 10, "b": 5}, map[string]int{"a": 10, "b": 5}},
		{6, map[string]int{"a": 1, "b": 9}, map[string]int{"a": 1, "b": 5}},
		{6, map[string]int{"a": 0, "b": 9}, map[string]int{"a": 0, "b": 6}},
		{120, map[string]int{"a": 47, "b": 42, "c": 41}, map[string]int{"a": 43, "b": 39, "c": 38}},
	}
	for _, c := range cases {
		got := quotas(c.want, c.counts)
		if !maps.Equal(got, c.out) {
			t.Errorf("quotas(%d, %v) = %v, want %v", c.want, c.counts, got, c.out)
		}
		sum, total := 0, 0
		for id, q := range got {
			sum += q
			total += c.counts[id]
			if q > c.counts[id] || q < 0 {
				t.Errorf("quotas(%d, %v): %s gets %d", c.want, c.counts, id, q)
			}
		}
		if sum != min(c.want, total) {
			t.Errorf("quotas(%d, %v) add up to %d", c.want, c.counts, sum)
		}
	}
}
