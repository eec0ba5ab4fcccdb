package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/crowd"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/model"
	"github.com/fedrec/fedrec/sim"
)

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "ml-latest-small", "data set whose users become clients (as 'fedrec sim --data': synthetic, ml-latest-small, …)")
	dataDir := fs.String("data-dir", "data", "directory of the named data sets")
	n := fs.Int("clients", 100, "number of clients (users with training data, in a seeded random order; 0 = all)")
	coords := fs.String("coordinators", "127.0.0.1:7001", "comma-separated client addresses of coordinator nodes")
	certs := fs.String("certs", "certs", "directory holding the cluster's ca.pem and the devices' credentials: the device CA's key (each client gets a certificate in memory) or device-ID.pem files")
	seed := fs.Uint64("seed", 1, "seed of the train/test split (as the coordinator's --seed) and of the clients")
	until := fs.Uint64("until-version", 0, "stop when the cluster has committed this model version (0 = run until interrupted)")
	eval := fs.Bool("eval", true, "evaluate the newest model on the test split when stopping")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	deviceCA := fs.String("device-ca", "", "PEM file of the device CA (device-ca.pem of the certs directory): the clients take part in signed secure rounds (--secagg-signed), checking their peers' device certificates against it; empty: they cannot")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("client: unexpected argument %q", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("client: --log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	devices, err := pki.Devices(*certs, 24*time.Hour)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	addrs := splitList(*coords)
	var peers *x509.CertPool
	if *deviceCA != "" {
		if peers, err = pki.LoadPoolFile(*deviceCA); err != nil {
			return fmt.Errorf("client: --device-ca: %w", err)
		}
		// A device signs with its own device certificate: without one the
		// flag cannot apply.
		conf, err := devices.TLS("fedrec-client-check")
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		if len(conf.Certificates) == 0 {
			return fmt.Errorf("client: --device-ca: %s gives the clients no device certificates (no device CA key, no device-ID.pem files) to sign with", *certs)
		}
	}

	ds, err := openDataset(*data, *dataDir, *seed)
	if err != nil {
		return err
	}
	trainX, testX := ds.Split(0.2, *seed)
	train := sim.Ratings(sim.ByUser(ds.NumUsers(), trainX))
	test := sim.Ratings(sim.ByUser(ds.NumUsers(), testX))
	var users []int
	for u, rs := range train {
		if len(rs) > 0 {
			users = append(users, u)
		}
	}
	rand.New(rand.NewPCG(*seed, 0xc11e)).Shuffle(len(users), func(i, j int) { users[i], users[j] = users[j], users[i] })
	if *n > 0 && *n < len(users) {
		users = users[:*n]
	}
	fmt.Fprintf(stderr, "client: %d clients from %s against %v\n", len(users), ds.Name, addrs)

	members := make([]crowd.Member, len(users))
	for i, u := range users {
		id := fmt.Sprintf("%s-user-%s", ds.Name, ds.UserIDs[u])
		conf, err := devices.TLS(id)
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		order := rotate(addrs, u)
		members[i] = crowd.Member{ID: id, Ratings: train[u], Addrs: order, Start: order[0], TLS: conf, DeviceCA: peers, Seed: *seed<<20 ^ uint64(u+1)}
	}
	// Watch the cluster's newest model.
	monConf, err := devices.TLS("fedrec-client-monitor")
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	mon, err := client.NewDialer(addrs, monConf)
	if err != nil {
		return err
	}
	defer mon.Close()
	var rounds atomic.Int64
	var last *model.Model
	var lastV uint64
	err = crowd.Watch(ctx, members, log, func(crowd.RoundResult) { rounds.Add(1) }, mon, 2*time.Second, func(m *model.Model, v uint64) (bool, error) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(stderr, "client: model version %d, %d client rounds done, %.0f MiB heap and stacks\n", v, rounds.Load(), float64(ms.HeapAlloc+ms.StackInuse)/(1<<20))
		last, lastV = m, v
		return *until > 0 && v >= *until, nil
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("client: %w", err)
	}
	if last == nil || !*eval {
		return nil
	}
	res := evaluate(last, train, test)
	res.Version = lastV
	res.ClientRounds = rounds.Load()
	if *jsonOut {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "model version %d: RMSE %.4f  MAE %.4f over %d test ratings (%d client rounds)\n", res.Version, res.RMSE, res.MAE, res.N, res.ClientRounds)
	return nil
}

// rotate starts each client at a different node.
func rotate(addrs []string, k int) []string {
	i := k % len(addrs)
	return append(append([]string(nil), addrs[i:]...), addrs[:i]...)
}

type evalResult struct {
	Version      uint64  `json:"version"`
	RMSE         float64 `json:"rmse"`
	MAE          float64 `json:"mae"`
	N            int     `json:"n"`
	ClientRounds int64   `json:"client_rounds"`
}

// evaluate fits each user on their training ratings and scores their
// held-out ones, as the simulator does.
func evaluate(m *model.Model, train, test [][]model.Rating) evalResult {
	t, err := model.NewTrainer(m, model.DefaultTrainConfig())
	if err != nil {
		return evalResult{RMSE: math.NaN(), MAE: math.NaN()}
	}
	var sum model.Metrics
	for u := range train {
		if len(train[u]) == 0 || len(test[u]) == 0 {
			continue
		}
		usr, err := t.FitUser(train[u])
		if err != nil {
			continue
		}
		sum.Add(m.Evaluate(usr, train[u], test[u], model.EvalConfig{Errors: true}, nil))
	}
	return evalResult{RMSE: sum.RMSE(), MAE: sum.MAE(), N: sum.N}
}
