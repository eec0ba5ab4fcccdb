package main

import (
	"testing"
)

// --dataset synthetic (coordinator) and --data synthetic (client) open the
// simulator's built-in set, the same for the same seed, as 'fedrec sim'
// does; before, both refused it as "neither a known data set nor a CSV file".
func TestOpenDatasetSynthetic(t *testing.T) {
	items, mean, users, err := datasetShape("synthetic", t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if items != 1000 || users != 2000 || mean < 1 || mean > 5 {
		t.Errorf("synthetic shape: %d items, mean %v, %d users; want 1000 items, 2000 users, a mean in [1, 5]", items, mean, users)
	}
	a, err := openDataset("synthetic", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openDataset("synthetic", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "synthetic" || a.NumItems() != items || len(a.Interactions) != len(b.Interactions) || a.Interactions[7] != b.Interactions[7] {
		t.Errorf("openDataset(synthetic) is not the same set twice: %s, %d items, %d/%d interactions", a.Name, a.NumItems(), len(a.Interactions), len(b.Interactions))
	}
	if _, err := openDataset("no-such-set", t.TempDir(), 1); err == nil {
		t.Error("openDataset accepted an unknown name")
	}
}
