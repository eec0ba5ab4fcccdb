package client

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// Anchor keeps a small record (wire.StoreAnchor, about 80 bytes) outside
// Config.Dir, in a place that an OS backup does not restore together with
// the directory and that the user cannot roll back: on Android an
// EncryptedSharedPreferences entry (Keystore-backed) excluded from Auto
// Backup, on iOS a Keychain item with an accessibility "ThisDeviceOnly".
// With it, New recognises a directory restored from an older copy
// (ErrRolledBack) or emptied (ErrMissing), and the privacy the device has
// spent survives Reset. Without it (Config.Anchor nil) neither is
// detected.
type Anchor interface {
	// Load returns the bytes last saved, or nil and no error if none
	// were.
	Load() ([]byte, error)
	// Save replaces the saved bytes, durably, before it returns.
	Save(b []byte) error
}

// anchorState is what the Client last saved to its Anchor.
type anchorState struct {
	a     Anchor
	saved wire.StoreAnchor
}

func loadAnchor(a Anchor) (*wire.StoreAnchor, error) {
	b, err := a.Load()
	if err != nil {
		return nil, fmt.Errorf("client: load anchor: %w", err)
	}
	if b == nil {
		return nil, nil
	}
	sa, err := wire.DecodeStoreAnchor(b)
	if err != nil {
		return nil, fmt.Errorf("%w: anchor: %v", ErrCorrupt, err)
	}
	return sa, nil
}

func saveAnchor(a Anchor, sa *wire.StoreAnchor) error {
	b, err := wire.EncodeStoreAnchor(sa)
	if err == nil {
		err = a.Save(b)
	}
	if err != nil {
		return fmt.Errorf("client: save anchor: %w", err)
	}
	return nil
}

var zeroStoreID [idLen]byte

// checkAnchor compares the store as opened with its anchor: the same
// store, at least as far as the anchor recorded. It returns the privacy
// carried over from lost stores.
func checkAnchor(sa *wire.StoreAnchor, s *store, st *state) (carried float64, err error) {
	if sa == nil {
		return 0, nil // the first start with an anchor: adopt the store
	}
	zero := bytes.Equal(sa.StoreID, zeroStoreID[:])
	switch {
	case !s.exists() && !zero:
		return 0, fmt.Errorf("%w: the anchor records store %x at generation %d with %d charged rounds (ε %.4g), the directory holds none",
			ErrMissing, sa.StoreID[:4], sa.Generation, sa.Charges, sa.Epsilon)
	case s.exists() && zero:
		return 0, fmt.Errorf("%w: the directory holds store %x, the anchor none (data deleted or reset since)", ErrRolledBack, s.id[:4])
	case s.exists() && !bytes.Equal(sa.StoreID, s.id[:]):
		return 0, fmt.Errorf("%w: the directory holds store %x, the anchor records %x", ErrRolledBack, s.id[:4], sa.StoreID[:4])
	case s.exists() && (s.gen < sa.Generation || uint64(len(st.charges)) < sa.Charges):
		return 0, fmt.Errorf("%w: the directory holds generation %d with %d charged rounds, the anchor records %d with %d (ε %.4g)",
			ErrRolledBack, s.gen, len(st.charges), sa.Generation, sa.Charges, sa.Epsilon)
	}
	return sa.Carried, nil
}

// syncAnchor saves the anchor if the store moved on since it was last
// saved: created, compacted, charged, or deleted. The caller holds mu.
func (c *Client) syncAnchor() error {
	an := c.anchor
	if an == nil {
		return nil
	}
	now := wire.StoreAnchor{StoreID: make([]byte, idLen), Carried: an.saved.Carried}
	if c.store.exists() {
		copy(now.StoreID, c.store.id[:])
		now.Generation, now.Charges = c.store.gen, uint64(len(c.st.charges))
	}
	eps, err := c.ledger.spent(c.st.charges)
	if err != nil {
		return err
	}
	now.Epsilon = max(eps, now.Carried)
	if bytes.Equal(now.StoreID, an.saved.StoreID) && now.Generation == an.saved.Generation && now.Charges == an.saved.Charges && now.Epsilon == an.saved.Epsilon {
		return nil
	}
	if err := saveAnchor(an.a, &now); err != nil {
		return err
	}
	an.saved = now
	return nil
}

// Reset starts the store in dir over after ErrMissing or ErrRolledBack
// (or ErrCorrupt): it removes the store's files, as Remove does, and
// records in anchor (which may be nil) that the directory holds no store,
// keeping the privacy the device spent: the next Client's ledger starts
// from it. No Client may have dir open (ErrLocked).
func Reset(dir string, anchor Anchor) error {
	files, err := openStorage(dir, true)
	if err != nil {
		return fmt.Errorf("client: reset: %w", err)
	}
	defer files.close()
	lock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer lock.unlock()
	next := wire.StoreAnchor{StoreID: make([]byte, idLen)}
	if anchor != nil {
		sa, err := loadAnchor(anchor)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return err
		}
		if sa != nil {
			next.Carried = max(sa.Epsilon, sa.Carried)
			next.Epsilon = next.Carried
		}
	}
	if _, err := removeFiles(files); err != nil {
		return err
	}
	if anchor == nil {
		return nil
	}
	return saveAnchor(anchor, &next)
}
