package client

import (
	"errors"
	"fmt"
	"io"

	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// A bundled model is a model shipped with the app, for recommendations
// before the first Sync: the frames the cluster sends for a model (a
// wire.ModelHeader and its wire.ModelChunks), so that its digest and,
// when set, its catalogue digest are checked as a download's are.

// WriteModel writes r's model as a bundle, with the digest of r's catalogue.
func WriteModel(w io.Writer, r Release) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	h, chunks := wire.SplitModel(r.Model, r.Version, 0)
	if r.EventWeights != (EventWeights{}) {
		h.Events = &wire.EventWeights{View: r.EventWeights.View, Click: r.EventWeights.Click, Cart: r.EventWeights.Cart, Purchase: r.EventWeights.Purchase}
	}
	d := wire.CatalogueDigest(r.Items)
	h.Catalogue = d[:]
	if err := wire.Write(w, h); err != nil {
		return err
	}
	for _, c := range chunks {
		if err := wire.Write(w, c); err != nil {
			return err
		}
	}
	return nil
}

// ReadRelease reads a bundle written by WriteModel (or saved from the
// cluster) and pairs it with the app's catalogue items, which must match
// it (ErrCatalogueMismatch). Pass the result to SetModel.
func ReadRelease(r io.Reader, items []string) (*Release, error) {
	var b *wire.ModelBuilder
	var h *wire.ModelHeader
	for b == nil || !b.Done() {
		m, err := wire.Read(r, wire.Limits{})
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("%w: model bundle: %v", ErrInvalidArgument, err)
		}
		switch m := m.(type) {
		case *wire.ModelHeader:
			if b != nil {
				return nil, fmt.Errorf("%w: model bundle: a second header", ErrInvalidArgument)
			}
			if b, err = wire.NewModelBuilder(m); err != nil {
				return nil, fmt.Errorf("%w: model bundle: %v", ErrInvalidArgument, err)
			}
			h = m
		case *wire.ModelChunk:
			if b == nil {
				return nil, fmt.Errorf("%w: model bundle: a chunk before the header", ErrInvalidArgument)
			}
			if err := b.Add(m); err != nil {
				return nil, fmt.Errorf("%w: model bundle: %v", ErrInvalidArgument, err)
			}
		default:
			return nil, fmt.Errorf("%w: model bundle: unexpected %s", ErrInvalidArgument, m.Type())
		}
	}
	var m *model.Model
	m, err := b.Model()
	if err != nil {
		return nil, fmt.Errorf("%w: model bundle: %v", ErrInvalidArgument, err)
	}
	return releaseOf(h.Model, m, h, items)
}
