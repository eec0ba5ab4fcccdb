package crowd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/model"
)

// Watch runs members against the cluster (Run, with done called after
// each of their rounds) and, meanwhile, polls the cluster through mon
// every `every` for its newest committed model, calling onModel with each
// version it has not seen; a poll that fails (a node down, no leader yet)
// is skipped. It returns when onModel says it is done or fails, when ctx
// ends, or when the crowd fails, having stopped the crowd. It is the one
// loop of `fedrec client` and of the simulator against a real cluster.
func Watch(ctx context.Context, members []Member, log *slog.Logger, done func(RoundResult), mon *client.Dialer, every time.Duration,
	onModel func(m *model.Model, version uint64) (stop bool, err error)) error {
	runCtx, stopCrowd := context.WithCancel(ctx)
	defer stopCrowd()
	errc := make(chan error, 1)
	go func() { errc <- Run(runCtx, members, log, done) }()
	stop := func(err error) error {
		stopCrowd()
		<-errc
		return err
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return stop(ctx.Err())
		case err := <-errc:
			return fmt.Errorf("crowd: %w", err)
		case <-tick.C:
		}
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, v, err := mon.Model(mctx, 0)
		cancel()
		if err != nil {
			log.Info("model poll failed", "err", err)
			continue
		}
		if v == last {
			continue
		}
		last = v
		if done, err := onModel(m, v); done || err != nil {
			return stop(err)
		}
	}
}
