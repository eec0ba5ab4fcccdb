package sim

import (
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/model"
)

// TestRunRemoteMatchesInProcess runs the same small experiment in process
// and against a real coordinator (QUIC on loopback, one Raft node) and
// checks both reach a similar model.
func TestRunRemoteMatchesInProcess(t *testing.T) {
	c := Config{Objective: Explicit, Users: 120, Items: 60, Rounds: 8, EvalEvery: 4, ClientsPerRound: 30, Rank: 4, Seed: 9, Baseline: Off}
	local, err := Run(t.Context(), c, nil)
	if err != nil {
		t.Fatal(err)
	}

	// As fedrec cert makes them: the node authenticates devices, and the
	// simulated devices get certificates of the device CA.
	dir := t.TempDir()
	if err := pki.WriteDir(dir, []string{"n0"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	b, err := pki.Load(dir, "n0")
	if err != nil {
		t.Fatal(err)
	}
	devices, err := pki.Devices(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, tr := raft.NewInmemTransport("raft-0")
	d := c.Defaults()
	n, err := coordinator.New(coordinator.Config{
		ID: "n0", InMemory: true, Transport: tr, ClientAddr: "127.0.0.1:0", TLS: b, Bootstrap: true, Seed: 1,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		Training: coordinator.Training{
			Items: local.Dataset.Items, Rank: d.Rank, Mean: meanOf(t, c), Seed: d.Seed,
			Train:     model.TrainConfig{Reg: d.Reg, LR: d.LR, Epochs: d.LocalEpochs, Alpha: d.Alpha},
			Optimizer: aggregation.OptimizerConfig{Name: d.ServerOpt, LR: d.ServerLR, Tau: d.Tau},
			// A full cohort every round, however loaded the machine: with
			// a 300 ms window, CI's load once left rounds short of
			// devices, and 8 of them reached RMSE 0.95 against 0.90. The
			// window only bounds a round that cannot fill.
			ClientsPerRound: d.ClientsPerRound, CheckInWindow: 10 * time.Second, RoundTimeout: 20 * time.Second,
			Clip: d.Clip, UploadBits: d.UploadBits, // 8-bit uploads, as in process
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	remote, err := RunRemote(t.Context(), c, Remote{Addrs: []string{n.ClientAddr()}, Device: devices.TLS, Poll: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if remote.Final.Round < c.Rounds || remote.Final.BytesUp == 0 {
		t.Errorf("remote run ended at %+v, want %d rounds with uploads", remote.Final, c.Rounds)
	}
	t.Logf("in-process RMSE %.4f, remote %.4f after %d rounds", local.Final.RMSE, remote.Final.RMSE, remote.Final.Round)
	// Cohorts are sampled differently, so only similar, not equal.
	if d := math.Abs(remote.Final.RMSE/local.Final.RMSE - 1); d > 0.05 {
		t.Errorf("remote RMSE %.4f vs in-process %.4f: differ by %.1f%%, want <= 5%%", remote.Final.RMSE, local.Final.RMSE, 100*d)
	}
}

func meanOf(t *testing.T, c Config) float64 {
	t.Helper()
	e, err := load(c.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	return e.mean
}
