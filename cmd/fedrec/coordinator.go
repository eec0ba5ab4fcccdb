package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/model"
	"github.com/fedrec/fedrec/sim"
)

func runCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg coordinator.Config
	fs.StringVar(&cfg.ID, "id", "", "node id, stable across restarts (required)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the Raft log and snapshots (required)")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:8001", "TCP address for Raft traffic (mutual TLS)")
	fs.StringVar(&cfg.ClientAddr, "client-addr", "127.0.0.1:7001", "UDP address of the QUIC client protocol")
	fs.StringVar(&cfg.AdvertiseClientAddr, "advertise-client-addr", "", "client address other nodes give clients (default: --client-addr)")
	fs.BoolVar(&cfg.Bootstrap, "bootstrap", false, "found a new cluster with this node (ignored if it has state)")
	join := fs.String("join", "", "comma-separated client addresses of existing nodes to join")
	certs := fs.String("certs", "certs", "directory made by 'fedrec cert' (ca.pem, ID.pem, ID-key.pem)")
	certName := fs.String("cert-name", "", "certificate name in --certs (default: --id)")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "", "TCP address of the HTTPS admin API (health, readiness, metrics, status); empty: off")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "operator token for the admin API (default: $FEDREC_ADMIN_TOKEN, which keeps it out of ps)")
	heartbeat := fs.Duration("heartbeat", 0, "Raft heartbeat and election timeout (default 1s)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")

	// Training configuration, used only by the bootstrapping node.
	t := coordinator.Training{Train: model.DefaultTrainConfig()}
	dataset := fs.String("dataset", "", "derive --items and --mean from this data set (as 'fedrec sim --data'), e.g. ml-latest-small")
	datasets := fs.String("datasets-dir", "data", "directory of the named data sets")
	fs.IntVar(&t.Items, "items", 0, "number of items of the model")
	fs.Float64Var(&t.Mean, "mean", 0, "global mean rating of the initial model")
	fs.IntVar(&t.Rank, "rank", 32, "rank of the factorization")
	fs.Uint64Var(&t.Seed, "seed", 1, "seed of the initial model (and of --dataset's train/test split)")
	fs.Float64Var(&t.Train.LR, "lr", t.Train.LR, "client learning rate")
	fs.Float64Var(&t.Train.Reg, "reg", t.Train.Reg, "L2 regularization per observation")
	fs.IntVar(&t.Train.Epochs, "local-epochs", t.Train.Epochs, "local SGD passes per round")
	fs.Float64Var(&t.Clip, "clip", 0, "L2 clip norm of each update (0 = none)")
	fs.StringVar(&t.Optimizer.Name, "server-opt", "fedadam", "server optimizer: fedavg, fedadam, fedyogi")
	fs.Float64Var(&t.Optimizer.LR, "server-lr", 0.1, "server learning rate")
	fs.IntVar(&t.ClientsPerRound, "clients-per-round", 100, "updates wanted per round")
	fs.Float64Var(&t.OverSelect, "over-select", 0.3, "select this fraction more clients to make up for dropouts")
	fs.IntVar(&t.MinClients, "min-clients", 10, "abandon a round with fewer updates")
	fs.DurationVar(&t.CheckInWindow, "checkin-window", 2*time.Second, "how long to gather check-ins before selecting a cohort")
	fs.DurationVar(&t.RoundTimeout, "round-timeout", time.Minute, "deadline for uploads after selection")
	fs.IntVar(&t.KeepModels, "keep-models", 5, "model versions every node retains")
	fs.Float64Var(&t.NoiseMultiplier, "noise-multiplier", 0, "central DP: the leader adds Gaussian noise of std noise-multiplier × clip to each round's sum (needs --clip and --population or --dataset) and records it in the privacy ledger")
	fs.BoolVar(&t.SecAgg, "secagg", false, "secure aggregation: the leader learns only the sum of each round's updates (needs --clip > 0, --min-clients >= 3)")
	fs.DurationVar(&t.SecAggPhase, "secagg-phase", 0, "deadline of each secure-aggregation phase after the first (default 10s with --secagg)")
	fs.Int64Var(&t.Population, "population", 0, "client population, for the ledger's sampling rate (0 = unknown; --dataset sets it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("coordinator: unexpected argument %q", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("coordinator: --log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Join = splitList(*join)
	if cfg.AdminToken == "" {
		cfg.AdminToken = os.Getenv("FEDREC_ADMIN_TOKEN")
	}
	if cfg.AdminAddr != "" && cfg.AdminToken == "" {
		return fmt.Errorf("coordinator: --admin-addr needs --admin-token or FEDREC_ADMIN_TOKEN")
	}
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = *heartbeat, *heartbeat
	if *heartbeat > 0 {
		cfg.LeaderLeaseTimeout = *heartbeat / 2
	}
	name := *certName
	if name == "" {
		name = cfg.ID
	}
	b, err := pki.Load(*certs, name)
	if err != nil {
		return fmt.Errorf("coordinator: certificates (make them with 'fedrec cert'): %w", err)
	}
	cfg.TLS = b
	if cfg.Bootstrap {
		if *dataset != "" {
			items, mean, pop, err := datasetShape(*dataset, *datasets, t.Seed)
			if err != nil {
				return fmt.Errorf("coordinator: %w", err)
			}
			t.Items, t.Mean = items, mean
			if t.Population == 0 {
				t.Population = pop
			}
		}
		t.Optimizer = aggregation.OptimizerConfig{Name: t.Optimizer.Name, LR: t.Optimizer.LR, Tau: 1e-3}
		cfg.Training = t
	}
	n, err := coordinator.New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %s: raft %s, clients %s\n", n.ID(), n.RaftAddr(), n.ClientAddr())
	if a := n.AdminAddr(); a != "" {
		fmt.Fprintf(stdout, "node %s: admin https://%s\n", n.ID(), a)
	}
	<-ctx.Done()
	cfg.Logger.Info("shutting down")
	return n.Close()
}

// datasetShape computes what the initial model needs from a data set the
// way the simulator does: the item count, the mean of the training split's
// ratings, and the number of users with training data.
func datasetShape(name, dir string, seed uint64) (items int, mean float64, users int64, err error) {
	ds, err := sim.Open(name, dir)
	if err != nil {
		return 0, 0, 0, err
	}
	train, _ := ds.Split(0.2, seed)
	if len(train) == 0 {
		return 0, 0, 0, fmt.Errorf("%s has no training data", name)
	}
	var sum float64
	seen := make(map[int32]bool)
	for _, x := range train {
		sum += float64(x.Value)
		seen[x.User] = true
	}
	if ds.Implicit {
		return ds.NumItems(), 0, int64(len(seen)), nil
	}
	return ds.NumItems(), sum / float64(len(train)), int64(len(seen)), nil
}
