package client

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/client/internal/fakenode"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// A model whose header carries its catalogue's digest is refused with a
// catalogue of the same length in another order (it would label the
// recommendations with the wrong items), and installed with the right one.
func TestCatalogueDigestChecked(t *testing.T) {
	m, _ := model.New(model.Explicit, 6, 2, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	items := itemIDs(6)
	cd := wire.CatalogueDigest(items)
	ca, _ := pki.NewCA("test", time.Hour)
	b, _ := ca.NodeBundle("fake")
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	done := fakenode.ServeStreams(ln, func(st *quic.Stream) {
		if req, _ := wire.Read(st, wire.Limits{}); req != nil {
			h, chunks := wire.SplitModel(m, 2, 1)
			h.Catalogue = cd[:]
			wire.Write(st, h)
			for _, c := range chunks {
				wire.Write(st, c)
			}
		}
	})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	reordered := slices.Clone(items)
	reordered[0], reordered[1] = reordered[1], reordered[0]
	for _, tc := range []struct {
		name  string
		items []string
		ok    bool
	}{{"reordered", reordered, false}, {"the model's", items, true}} {
		d, _ := NewDialer([]string{ln.Addr().String()}, pki.ClientTLS(ca.Pool()))
		fed, err := NewNetwork(NetworkConfig{ClientID: "dev", Dialer: d, Items: tc.items})
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := testConfig(t)
		cfg.Federation = fed
		c := open(t, cfg)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err = c.Sync(ctx)
		cancel()
		d.Close()
		if tc.ok && err != nil {
			t.Errorf("%s catalogue: Sync = %v, want the model installed", tc.name, err)
		}
		if !tc.ok && (!errors.Is(err, ErrCatalogueMismatch) || c.ModelVersion() != 0) {
			t.Errorf("%s catalogue: Sync = %v, model %d; want ErrCatalogueMismatch and none installed", tc.name, err, c.ModelVersion())
		}
	}
}

// A model bundled with the app reads back as the release it was written
// from, and only with its own catalogue.
func TestModelBundle(t *testing.T) {
	rel := randomRelease(t, model.Implicit, 8, 3, 4)
	rel.EventWeights = EventWeights{View: 1, Click: 3, Cart: 5, Purchase: 9}
	var buf bytes.Buffer
	if err := WriteModel(&buf, rel); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRelease(bytes.NewReader(buf.Bytes()), rel.Items)
	if err != nil {
		t.Fatalf("ReadRelease = %v", err)
	}
	if got.Version != rel.Version || !slices.Equal(got.Model.Params, rel.Model.Params) || got.EventWeights != rel.EventWeights {
		t.Errorf("ReadRelease = version %d, weights %+v; want %d, %+v and the same parameters", got.Version, got.EventWeights, rel.Version, rel.EventWeights)
	}
	reordered := slices.Clone(rel.Items)
	slices.Reverse(reordered)
	if _, err := ReadRelease(bytes.NewReader(buf.Bytes()), reordered); !errors.Is(err, ErrCatalogueMismatch) {
		t.Errorf("ReadRelease with a reversed catalogue = %v, want ErrCatalogueMismatch", err)
	}
	if _, err := ReadRelease(bytes.NewReader(buf.Bytes()[:buf.Len()-3]), rel.Items); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ReadRelease of a truncated bundle = %v, want ErrInvalidArgument", err)
	}
}
