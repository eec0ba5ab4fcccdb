package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/crowd"
	"github.com/fedrec/fedrec/model"
)

// Remote says how to reach a real coordinator cluster.
type Remote struct {
	Addrs []string    // client (QUIC) addresses of the nodes
	TLS   *tls.Config // trusts the cluster's CA; used when Device is nil
	// Device returns the TLS configuration of the device with client ID
	// id: it trusts the cluster's CA and presents id's device
	// certificate, which a cluster that authenticates devices requires
	// (pki.DeviceSource.TLS).
	Device func(id string) (*tls.Config, error)
	// Poll is how often the newest committed model is checked; default 1s.
	Poll   time.Duration
	Logger *slog.Logger
}

// RunRemote runs the same experiment as Run, but the rounds happen in a
// real cluster: every user of the data set becomes a crowd.Participant
// (over the SDK's Dialer) that checks in, trains on its own ratings and
// uploads over QUIC; the cluster samples cohorts, aggregates and commits.
// The simulator evaluates each committed model version on the held-out
// data, as Run does, and stops after c.Rounds new versions. The cluster's
// own settings (cohort size, optimizer, learning rates) govern training;
// start the coordinators with the same data set and seed.
func RunRemote(ctx context.Context, c Config, r Remote, obs Observer) (*Result, error) {
	if len(r.Addrs) == 0 {
		return nil, errors.New("sim: no coordinator addresses")
	}
	if r.Poll == 0 {
		r.Poll = time.Second
	}
	if r.Device == nil {
		if r.TLS == nil {
			return nil, errors.New("sim: Remote.TLS or Remote.Device is required")
		}
		r.Device = func(string) (*tls.Config, error) { return r.TLS.Clone(), nil }
	}
	c.Centralized = false
	e, res, obs, err := prepare(ctx, c, obs)
	if err != nil {
		return nil, err
	}
	c, start := res.Config, e.start
	obs.Phase(fmt.Sprintf("%d clients against %v", len(e.active), r.Addrs))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var up, down atomic.Int64
	var clients atomic.Int64 // uploads since the last evaluation
	members := make([]crowd.Member, len(e.active))
	for k, u := range e.active {
		id := fmt.Sprintf("%s-user-%s", e.info.Name, e.userIDs[u])
		conf, err := r.Device(id)
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		addrs := append(append([]string(nil), r.Addrs[k%len(r.Addrs):]...), r.Addrs[:k%len(r.Addrs)]...)
		members[k] = crowd.Member{ID: id, Ratings: e.train[u], Addrs: addrs, TLS: conf, Seed: c.Seed<<20 ^ uint64(u+1)}
	}
	var crowdErr error
	crowdDone := make(chan struct{})
	go func() {
		defer close(crowdDone)
		crowdErr = crowd.Run(runCtx, members, r.Logger, func(rr crowd.RoundResult) {
			up.Add(int64(rr.Bytes))
			down.Add(int64(rr.Bytes))
			clients.Add(1)
		})
	}()
	defer func() { stop(); <-crowdDone }()

	monConf, err := r.Device("fedrec-sim-monitor")
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	mon, err := client.NewDialer(r.Addrs, monConf)
	if err != nil {
		return nil, err
	}
	defer mon.Close()
	tick := time.NewTicker(r.Poll)
	defer tick.Stop()
	var first, lastEval uint64
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-crowdDone:
			return nil, fmt.Errorf("sim: %w", crowdErr)
		case <-tick.C:
		}
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, v, err := mon.Model(mctx, 0)
		cancel()
		if err != nil {
			continue // a node down or no leader yet: the next poll retries
		}
		if first == 0 {
			first = v
			lastEval = v
		}
		done := int(v - first)
		if v == lastEval || (done%c.EvalEvery != 0 && done < c.Rounds) {
			obs.Round(min(done, c.Rounds), c.Rounds, nil)
			continue
		}
		lastEval = v
		row, err := e.evaluateRemote(ctx, m)
		if err != nil {
			return nil, err
		}
		row.Round = done
		row.Clients = int(clients.Swap(0))
		row.BytesUp, row.BytesDown = up.Load(), down.Load()
		row.WallS = time.Since(start).Seconds()
		res.Rows = append(res.Rows, row)
		res.Final = row
		obs.Round(min(done, c.Rounds), c.Rounds, &row)
		if done >= c.Rounds {
			res.Wall = time.Since(start)
			return res, nil
		}
	}
}

// evaluateRemote checks that a model from the cluster fits the data before
// evaluating it.
func (e *env) evaluateRemote(ctx context.Context, m *model.Model) (Row, error) {
	if m.Items != e.info.Items {
		return Row{}, fmt.Errorf("sim: the cluster's model has %d items, the data set %d: start the coordinators with the same --data", m.Items, e.info.Items)
	}
	if m.Kind != e.kind {
		return Row{}, fmt.Errorf("sim: the cluster trains a %s model and this run's objective is %s: pass --objective %s", m.Kind, e.kind, m.Kind)
	}
	return e.evaluate(ctx, m)
}
