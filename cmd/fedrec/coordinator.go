package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
	"github.com/fedrec/fedrec/sim"
)

const coordinatorUsage = `usage: fedrec coordinator [--config FILE] [flags]

Runs a coordinator node. Every setting comes from, in increasing
precedence: its default, the YAML file (--config or $FEDREC_CONFIG), its
FEDREC_* environment variable, its flag. 'fedrec config' prints the result;
docs/configuration.md lists every setting, its key, variable and default.

flags:`

func runCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := configFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, coordinatorUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fedrec coordinator: unexpected argument %q\n\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	if err := checkEnvNames(os.Environ()); err != nil {
		return err
	}
	c, err := resolveConfig(fs, *file, os.LookupEnv)
	if err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	cfg := coordinator.Config{
		ID: c.ID, DataDir: c.DataDir, RaftAddr: c.RaftAddr, AdvertiseRaftAddr: c.AdvertiseRaftAddr,
		ClientAddr: c.ClientAddr, AdvertiseClientAddr: c.AdvertiseClientAddr, WebTransportAddr: c.WebTransportAddr,
		Bootstrap: c.Bootstrap, Join: splitList(c.Join), AdminAddr: c.AdminAddr, AdminToken: c.AdminToken, ReadToken: c.ReadToken,
		HeartbeatTimeout: c.Heartbeat, ElectionTimeout: c.Heartbeat, ReadyLag: c.ReadyLag,
		MemoryBudget: c.MemoryBudget, MaxUploadsPerDevice: c.MaxUploadsPerDevice, MaxDeviceMemory: c.MaxDeviceMemory, MinUploadRate: c.MinUploadRate,
		DeviceRequestRate: c.DeviceRequestRate, DeviceRequestBurst: c.DeviceRequestBurst,
		PaceMin: c.PaceMin, PaceMax: c.PaceMax,
		Logger: c.logger(stderr),
	}
	if c.Heartbeat > 0 {
		cfg.LeaderLeaseTimeout = c.Heartbeat / 2
	}
	if c.file != "" {
		cfg.Logger.Info("configuration", "file", c.file)
	}
	name := c.CertName
	if name == "" {
		name = c.ID
	}
	b, err := pki.Load(c.Certs, name)
	if err != nil {
		return fmt.Errorf("coordinator: certificates (make them with 'fedrec cert'): %w", err)
	}
	switch {
	case b.Devices == nil && !c.InsecureDevices:
		// Fail closed: without the device CA any device could check in
		// under any client ID.
		return fmt.Errorf("coordinator: no device CA: %s not found, so devices could not be authenticated (give the nodes the device CA certificate that 'fedrec cert' makes; --insecure-devices serves unauthenticated devices, for development only)",
			filepath.Join(c.Certs, pki.DeviceCAFile))
	case b.Devices == nil:
		cfg.Logger.Warn("INSECURE: --insecure-devices: devices are not authenticated, anyone may check in under any client ID; development only")
	case c.InsecureDevices:
		cfg.Logger.Info("--insecure-devices has no effect: the device CA authenticates devices", "device_ca", filepath.Join(c.Certs, pki.DeviceCAFile))
	}
	cfg.TLS = b
	if c.Bootstrap {
		t := c.training()
		if c.Catalogue != "" {
			ids, err := readCatalogue(c.Catalogue)
			if err != nil {
				return fmt.Errorf("coordinator: --catalogue: %w", err)
			}
			if c.given("items", t.Items == defaultNodeConfig().T.Items) && t.Items != len(ids) {
				return fmt.Errorf("coordinator: --items %d, but the catalogue %s has %d items", t.Items, c.Catalogue, len(ids))
			}
			t.Items, t.Catalogue = len(ids), coordinator.CatalogueOf(ids)
		}
		if c.Dataset != "" {
			items, ids, mean, pop, err := datasetShape(c.Dataset, c.DatasetsDir, t.Seed)
			if err != nil {
				return fmt.Errorf("coordinator: %w", err)
			}
			if c.Catalogue != "" && t.Catalogue != coordinator.CatalogueOf(ids) {
				return fmt.Errorf("coordinator: the catalogue %s is not %s's item IDs in its order", c.Catalogue, c.Dataset)
			}
			t.Items, t.Catalogue = items, coordinator.CatalogueOf(ids)
			if t.Kind == model.Explicit {
				t.Mean = mean // an implicit model has none
			}
			if t.Population == 0 {
				t.Population = pop
			}
			// The data set decided what the file and flags could not.
			if err := c.checkTraining(t); err != nil {
				return err
			}
		}
		cfg.Training = t
	}
	n, err := coordinator.New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %s: raft %s, clients %s\n", n.ID(), n.RaftAddr(), n.ClientAddr())
	if a := n.WebTransportAddr(); a != "" {
		fmt.Fprintf(stdout, "node %s: webtransport https://%s%s\n", n.ID(), a, wire.WebTransportPath)
	}
	if a := n.AdminAddr(); a != "" {
		fmt.Fprintf(stdout, "node %s: admin https://%s\n", n.ID(), a)
	}
	// SIGHUP reloads the certificates (the node also notices changed
	// files by itself within seconds).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-hup:
			cfg.Logger.Info("SIGHUP: reloading the certificates", "dir", c.Certs)
			n.ReloadCerts() // logs its outcome
		}
	}
	cfg.Logger.Info("shutting down")
	// Devices go elsewhere, and this node's part of the round in progress
	// ends and reaches the leader first (a leader hands leadership over
	// in Close, which abandons its round anyway).
	if !n.IsLeader() {
		dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		n.Drain(dctx)
		cancel()
	}
	return n.Close()
}

// drainTimeout bounds how long a stopping node waits for its part of the
// round in progress (which ends by the round's deadline).
const drainTimeout = 2 * time.Minute

// logger is the node's logger: --log-format's handler at --log-level
// (both checked by validate).
func (c *nodeConfig) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// datasetShape computes what the initial model needs from a data set the
// way the simulator does: the item count and the item IDs in the model's
// order (its catalogue), the mean of the training split's ratings, and the
// number of users with training data.
func datasetShape(name, dir string, seed uint64) (items int, ids []string, mean float64, users int64, err error) {
	ds, err := openDataset(name, dir, seed)
	if err != nil {
		return 0, nil, 0, 0, err
	}
	train, _ := ds.Split(0.2, seed)
	if len(train) == 0 {
		return 0, nil, 0, 0, fmt.Errorf("%s has no training data", name)
	}
	var sum float64
	seen := make(map[int32]bool)
	for _, x := range train {
		sum += float64(x.Value)
		seen[x.User] = true
	}
	if ds.Implicit {
		return ds.NumItems(), ds.ItemIDs, 0, int64(len(seen)), nil
	}
	return ds.NumItems(), ds.ItemIDs, sum / float64(len(train)), int64(len(seen)), nil
}

// readCatalogue reads a catalogue file: the item IDs, one a line, in the
// model's order; blank lines and surrounding spaces are ignored.
func readCatalogue(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ids []string
	seen := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		id := strings.TrimSpace(line)
		if id == "" {
			continue
		}
		if seen[id] {
			return nil, fmt.Errorf("%s: item ID %q appears twice", path, id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s holds no item IDs", path)
	}
	return ids, nil
}

// openDataset opens a data set named as 'fedrec sim --data' names it:
// "synthetic" is the simulator's built-in set at its default size, generated
// from seed (the coordinator's and the clients' --seed, both 1 by default, as
// the simulator's), anything else goes to sim.Open.
func openDataset(name, dir string, seed uint64) (*sim.Dataset, error) {
	if name == "synthetic" {
		return sim.Synthetic(sim.SyntheticConfig{Seed: seed})
	}
	return sim.Open(name, dir)
}
