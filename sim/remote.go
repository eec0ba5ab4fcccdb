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
	var up, down atomic.Int64
	var clients atomic.Int64 // uploads since the last evaluation
	members := make([]crowd.Member, len(e.active))
	for k, u := range e.active {
		id := fmt.Sprintf("%s-user-%s", e.info.Name, e.userIDs[u])
		conf, err := r.Device(id)
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		members[k] = crowd.Member{ID: id, Ratings: e.train[u], Addrs: r.Addrs, Start: r.Addrs[k%len(r.Addrs)], TLS: conf, Seed: c.Seed<<20 ^ uint64(u+1)}
	}
	monConf, err := r.Device("fedrec-sim-monitor")
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	mon, err := client.NewDialer(r.Addrs, monConf)
	if err != nil {
		return nil, err
	}
	defer mon.Close()
	var first uint64
	finished := false
	err = crowd.Watch(ctx, members, r.Logger, func(rr crowd.RoundResult) {
		up.Add(int64(rr.Bytes))
		down.Add(int64(rr.Bytes))
		clients.Add(1)
	}, mon, r.Poll, func(m *model.Model, v uint64) (bool, error) {
		if first == 0 {
			first = v
		}
		done := int(v - first)
		if done == 0 || (done%c.EvalEvery != 0 && done < c.Rounds) {
			obs.Round(min(done, c.Rounds), c.Rounds, nil)
			return false, nil
		}
		row, err := e.evaluateRemote(ctx, m)
		if err != nil {
			return true, err
		}
		row.Round = done
		row.Clients = int(clients.Swap(0))
		row.BytesUp, row.BytesDown = up.Load(), down.Load()
		row.WallS = time.Since(start).Seconds()
		res.Rows = append(res.Rows, row)
		res.Final = row
		obs.Round(min(done, c.Rounds), c.Rounds, &row)
		finished = done >= c.Rounds
		return finished, nil
	})
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if !finished {
		return nil, ctx.Err()
	}
	res.Wall = time.Since(start)
	return res, nil
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
