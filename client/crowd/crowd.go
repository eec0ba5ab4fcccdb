package crowd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/model"
)

// Member is one virtual device of a crowd.
type Member struct {
	// ID is its client ID.
	ID string
	// Ratings are its training data, with item indices of the cluster's
	// model.
	Ratings []model.Rating
	// Addrs are the cluster's client addresses in the order it tries
	// them after the first.
	Addrs []string
	// Start is the address it dials first (client.DialerConfig.Start):
	// set it round robin to spread the members evenly; "" is a random one.
	Start string
	// TLS trusts the cluster's CA and presents the device's certificate.
	TLS *tls.Config
	// DeviceCA, if set, lets it take part in signed secure rounds
	// (client.DialerConfig.DeviceCA).
	DeviceCA *x509.CertPool
	// Seed seeds its training and jitter; 0 derives one from ID.
	Seed uint64
}

// Run runs members, as Participants, until ctx ends or one of them fails
// with an error no retry fixes, which it returns (else ctx's error). All
// of them dial over one UDP socket (client.Transport) and share one
// ModelCache, and a member that waits for its next check-in holds no
// connection, so that one process plays thousands of devices:
// `fedrec client` and `fedrec sim --coordinators` run their crowds so.
// done, if not nil, is called after every round a member took part in, from
// the members' goroutines at once.
func Run(ctx context.Context, members []Member, log *slog.Logger, done func(RoundResult)) error {
	if len(members) == 0 {
		return errors.New("crowd: no members")
	}
	tr, err := client.NewTransport()
	if err != nil {
		return err
	}
	defer tr.Close()
	cache := NewModelCache()
	ps := make([]*Participant, len(members))
	for i, m := range members {
		d, err := client.NewDialerConfig(client.DialerConfig{Addrs: m.Addrs, Start: m.Start, TLS: m.TLS, DeviceCA: m.DeviceCA, Transport: tr})
		if err != nil {
			return fmt.Errorf("crowd: %s: %w", m.ID, err)
		}
		defer d.Close()
		if ps[i], err = NewParticipant(ParticipantConfig{ID: m.ID, Ratings: m.Ratings, Dialer: d, Models: cache, Seed: m.Seed, Logger: log}); err != nil {
			return err
		}
	}
	rctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			err := p.Run(rctx, func(r RoundResult) error {
				if done != nil {
					done(r)
				}
				return nil
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				stop(fmt.Errorf("crowd: client %s: %w", p.cfg.ID, err))
			}
		})
	}
	wg.Wait()
	if err := context.Cause(rctx); ctx.Err() == nil && err != nil {
		return err
	}
	return ctx.Err()
}
