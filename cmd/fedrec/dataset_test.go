package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// --dataset synthetic (coordinator) and --data synthetic (client) open the
// simulator's built-in set, the same for the same seed, as 'fedrec sim'
// does; before, both refused it as "neither a known data set nor a CSV file".
func TestOpenDatasetSynthetic(t *testing.T) {
	items, _, mean, users, err := datasetShape("synthetic", t.TempDir(), 1)
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

// The coordinator learns its catalogue from --dataset (the data set's item
// IDs in model order) or --catalogue (a file of IDs, one a line).
func TestCatalogue(t *testing.T) {
	items, ids, _, _, err := datasetShape("synthetic", t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != items {
		t.Errorf("datasetShape: %d item IDs for %d items", len(ids), items)
	}
	dir := t.TempDir()
	file := func(body string) string {
		p := filepath.Join(dir, fmt.Sprintf("cat-%d", len(body)))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := readCatalogue(file("sku-1\n  sku-2 \n\nsku-3"))
	if err != nil || !slices.Equal(got, []string{"sku-1", "sku-2", "sku-3"}) {
		t.Errorf("readCatalogue = %q, %v; want sku-1..3", got, err)
	}
	for _, body := range []string{"", "\n\n", "a\nb\na\n"} {
		if _, err := readCatalogue(file(body)); err == nil {
			t.Errorf("readCatalogue(%q) accepted it", body)
		}
	}
}
