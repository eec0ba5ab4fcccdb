package client

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// memAnchor is an app's keystore-backed place, in memory.
type memAnchor struct {
	mu sync.Mutex
	b  []byte
}

func (a *memAnchor) Load() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]byte(nil), a.b...), nil
}

func (a *memAnchor) Save(b []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.b = append([]byte(nil), b...)
	return nil
}

func epsilonTotal(t *testing.T, c *Client) float64 {
	t.Helper()
	r, err := c.Report()
	if err != nil {
		t.Fatal(err)
	}
	return r.Totals.Epsilon
}

// anchoredRounds is roundClient with an Anchor, after n rounds.
func anchoredRounds(t *testing.T, n int) (*Client, *fakeFed, Config) {
	t.Helper()
	c, fed, cfg := roundClient(t)
	c.Close()
	cfg.Anchor = &memAnchor{}
	c = open(t, cfg)
	for i := range n {
		fed.offer = goodOffer(uint64(i + 1))
		if _, err := c.Participate(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return c, fed, cfg
}

// A directory restored from an older copy (as an OS backup restores it)
// is refused: its ledger would give back privacy already spent. Reset
// starts over and keeps what was spent.
func TestAnchorRefusesRollback(t *testing.T) {
	c, fed, cfg := anchoredRounds(t, 1)
	backup := t.TempDir()
	copyDir(t, cfg.Dir, backup)
	for i := 2; i <= 4; i++ {
		fed.offer = goodOffer(uint64(i))
		if _, err := c.Participate(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	spent := epsilonTotal(t, c)
	c.Close()

	// The backup comes back.
	if err := Remove(cfg.Dir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, cfg.Dir)
	if c, err := New(cfg); !errors.Is(err, ErrRolledBack) {
		if err == nil {
			t.Errorf("ε after the restore: %.4g, before it %.4g", epsilonTotal(t, c), spent)
			c.Close()
		}
		t.Fatalf("New on a restored older copy = %v, want ErrRolledBack", err)
	}

	if err := Reset(cfg.Dir, cfg.Anchor); err != nil {
		t.Fatal(err)
	}
	c2 := open(t, cfg)
	if got := epsilonTotal(t, c2); got < spent {
		t.Errorf("ε after Reset = %.4g, want at least the %.4g spent", got, spent)
	}
	// The carried ε counts towards the budget of the rounds that follow.
	recordAll(t, c2, rate(0, 5))
	c2.OptIn()
	fed.offer = goodOffer(5)
	if _, err := c2.Participate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := epsilonTotal(t, c2); !(got > spent) {
		t.Errorf("ε after one more round = %.4g, want above %.4g", got, spent)
	}
}

// A directory emptied of the store's files is refused with ErrMissing, not
// opened as a new, empty store with ε back at 0.
func TestAnchorRefusesEmptiedDirectory(t *testing.T) {
	c, _, cfg := anchoredRounds(t, 2)
	spent := epsilonTotal(t, c)
	c.Close()
	ents, _ := os.ReadDir(cfg.Dir)
	for _, e := range ents {
		os.Remove(filepath.Join(cfg.Dir, e.Name()))
	}
	if c, err := New(cfg); !errors.Is(err, ErrMissing) {
		if err == nil {
			c.Close()
		}
		t.Fatalf("New on an emptied directory = %v, want ErrMissing", err)
	}
	if err := Reset(cfg.Dir, cfg.Anchor); err != nil {
		t.Fatal(err)
	}
	c2 := open(t, cfg)
	if got := epsilonTotal(t, c2); got < spent {
		t.Errorf("ε after Reset = %.4g, want at least the %.4g spent", got, spent)
	}
}

// DeleteMyData deletes the ledger, carried ε and anchor record included:
// the next start is a clean one, not a missing store.
func TestAnchorDeleteMyData(t *testing.T) {
	c, _, cfg := anchoredRounds(t, 1)
	if err := c.DeleteMyData(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2 := open(t, cfg)
	if got := epsilonTotal(t, c2); got != 0 {
		t.Errorf("ε after DeleteMyData = %v, want 0", got)
	}
}
