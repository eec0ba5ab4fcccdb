package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/sim"
)

func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c sim.Config
	d := c.Defaults()
	fs.StringVar(&c.Data, "data", d.Data, "data set: synthetic, ml-100k, ml-1m, ml-latest-small, or a path to a user,item,value[,timestamp] CSV")
	fs.StringVar(&c.TrainFile, "train", "", "with --test: a user,item,value[,timestamp] CSV of training interactions split by another tool (instead of --data)")
	fs.StringVar(&c.TestFile, "test", "", "with --train: the held-out interactions (rows with users or items unknown to --train are dropped and counted)")
	fs.StringVar(&c.Split, "split", "random", "train/test split of --data: random (20% of interactions) or time (each user's latest 20%)")
	fs.StringVar(&c.Objective, "objective", d.Objective, "implicit (rank items: every interaction a positive, confidence 1 + alpha·value) or explicit (predict ratings)")
	fs.StringVar(&c.DataDir, "data-dir", d.DataDir, "directory holding the named MovieLens sets (ml-100k/u.data, ml-1m/ratings.dat, ml-latest-small/ratings.csv)")
	fs.IntVar(&c.Users, "users", 0, "synthetic data: number of users (default 2000)")
	fs.IntVar(&c.Items, "items", 0, "synthetic data: number of items (default 1000)")
	implicit := fs.Bool("implicit", false, "same as --objective implicit")
	fs.IntVar(&c.Rounds, "rounds", 0, "training rounds (default: explicit 300; implicit enough to visit each user about 5 times, 200 to 300)")
	fs.IntVar(&c.ClientsPerRound, "clients-per-round", d.ClientsPerRound, "clients sampled per round")
	fs.IntVar(&c.Rank, "rank", 0, "rank of the factorization (default 96 implicit, 32 explicit)")
	fs.IntVar(&c.LocalEpochs, "local-epochs", d.LocalEpochs, "local SGD passes per client per round")
	fs.Float64Var(&c.LR, "lr", d.LR, "client learning rate")
	fs.Float64Var(&c.Reg, "reg", 0, "L2 regularization per observation (default 0.15 implicit, 0.12 explicit)")
	fs.Float64Var(&c.Alpha, "alpha", 0, "implicit: confidence of an interaction of strength v is 1 + alpha·v (default 0.7)")
	fs.Float64Var(&c.Clip, "clip", 0, "L2 clip norm of each client's update (0: 0.25 with --dp or --secagg, else 4 implicit or 1.5 explicit, the 8-bit uploads' range; none with --upload-bits 64)")
	fs.StringVar(&c.ServerOpt, "server-opt", "", "server optimizer: fedavg, fedadam, fedyogi (default fedadam; with --dp and no --server-lr, fedavg if the noise on the mean update exceeds fedadam's τ = 1e-3)")
	fs.Float64Var(&c.ServerLR, "server-lr", 0, "server learning rate (default for fedadam/fedyogi 0.05 implicit, 0.1 explicit; 1 for fedavg)")
	fs.StringVar(&c.ServerDecay, "server-decay", "", "server learning-rate schedule over the rounds: cosine (down to 5%; default implicit) or none (default explicit)")
	fs.Uint64Var(&c.Seed, "seed", d.Seed, "random seed (data split, sampling, initialization)")
	fs.IntVar(&c.EvalEvery, "eval-every", d.EvalEvery, "evaluate every N rounds")
	fs.IntVar(&c.EvalUsers, "eval-users", d.EvalUsers, "evaluate on at most N users")
	fs.Float64Var(&c.Dropout, "dropout", 0, "chance that a selected client drops out of a round")
	fs.Float64Var(&c.Straggler, "stragglers", 0, "chance that a selected client misses the round's deadline")
	fs.Float64Var(&c.OverSelect, "over-select", 0, "select this fraction more clients to make up for dropouts")
	fs.IntVar(&c.MinClients, "min-clients", d.MinClients, "abandon a round with fewer survivors")
	fs.IntVar(&c.Workers, "workers", d.Workers, "parallel workers (default: all cores)")
	fs.StringVar(&c.DP, "dp", "off", "differential privacy: off, central (server adds Gaussian noise) or distributed (clients add Skellam noise)")
	fs.Float64Var(&c.NoiseMultiplier, "noise-multiplier", 0, "noise std of the summed updates divided by --clip")
	fs.Float64Var(&c.TargetEpsilon, "target-epsilon", 0, "pick the noise multiplier that spends this ε over the run")
	fs.Float64Var(&c.Delta, "delta", 1e-5, "δ of the (ε, δ) guarantee")
	fs.BoolVar(&c.AdaptiveClip, "adaptive-clip", false, "adapt --clip each round to a quantile of the update norms (Andrew et al. 2021)")
	fs.Float64Var(&c.ClipQuantile, "clip-quantile", 0.5, "target quantile of update norms for --adaptive-clip")
	fs.BoolVar(&c.SecAgg, "secagg", false, "sum updates by secure aggregation (the server sees only masked vectors)")
	fs.IntVar(&c.UploadBits, "upload-bits", 0, "bits per parameter of an update: 8 (default: quantized at a step the clip fixes; with --secagg, masked in a field just wide enough for the cohort's sum) or 64 (packed float64; with --secagg, a 32-bit field); not with --dp distributed")
	fs.BoolVar(&c.Centralized, "centralized", false, "train the same model on pooled data (the baseline) instead of federating")
	baseline := fs.String("baseline", "auto", "also train the centralized baseline for comparison: auto (data up to 2M interactions), on, off")
	ease := fs.String("ease", "auto", "also train the EASE reference: auto (when min(users, items) <= 5000), on, off")
	fs.Float64Var(&c.EASELambda, "ease-lambda", d.EASELambda, "EASE's L2 penalty")
	coords := fs.String("coordinators", "", "run the clients against this real cluster (comma-separated client addresses) instead of in process")
	certs := fs.String("certs", "certs", "with --coordinators: directory holding the cluster's ca.pem and the device CA's key (or device-ID.pem files)")
	out := fs.String("out", "", "write metrics.csv, summary.json and a plot to this directory")
	quiet := fs.Bool("quiet", false, "no progress output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sim: unexpected argument %q", fs.Arg(0))
	}
	set := flagsSet(fs)
	var err error
	if c.Baseline, err = toggle("baseline", *baseline); err != nil {
		return err
	}
	if c.EASE, err = toggle("ease", *ease); err != nil {
		return err
	}
	if *implicit {
		if set["objective"] && c.Objective != sim.Implicit {
			return fmt.Errorf("sim: --implicit contradicts --objective %s", c.Objective)
		}
		c.Objective = sim.Implicit
	}
	if c.TrainFile != "" || c.TestFile != "" {
		for _, f := range []string{"data", "split", "users", "items"} {
			if set[f] {
				return fmt.Errorf("sim: --%s does not apply with --train and --test (the files are the data and the split)", f)
			}
		}
		c.Data, c.Split = "", ""
	}
	if set["ease-lambda"] && c.EASE == sim.Off {
		return errors.New("sim: --ease-lambda does not apply with --ease off")
	}
	if *coords != "" {
		for _, f := range []string{"split", "train", "test", "upload-bits"} {
			if set[f] {
				return fmt.Errorf("sim: --%s does not apply with --coordinators (the cluster trains on --data)", f)
			}
		}
	}
	var obs sim.Observer = newProgress(stderr)
	if *quiet {
		obs = nil
	}
	mem := sim.StartMemorySampler(50 * time.Millisecond)
	var res *sim.Result
	if *coords != "" {
		devices, perr := pki.Devices(*certs, 24*time.Hour)
		if perr != nil {
			mem.Stop()
			return fmt.Errorf("sim: %w", perr)
		}
		res, err = sim.RunRemote(ctx, c, sim.Remote{Addrs: splitList(*coords), Device: devices.TLS}, obs)
	} else {
		res, err = sim.Run(ctx, c, obs)
	}
	m := mem.Stop()
	if p, ok := obs.(*progress); ok {
		p.done()
	}
	if err != nil {
		return err
	}
	printResult(stdout, res, m)
	if *out != "" {
		if err := sim.WriteOutputs(*out, res, m); err != nil {
			return fmt.Errorf("sim: writing results: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s/{metrics.csv,summary.json,%s}\n", *out, strings.Join(sim.PlotNames(res), ","))
	}
	return nil
}

func toggle(flag, v string) (sim.Toggle, error) {
	switch v {
	case "auto":
		return sim.Auto, nil
	case "on":
		return sim.On, nil
	case "off":
		return sim.Off, nil
	}
	return 0, fmt.Errorf("sim: --%s %q: want auto, on or off", flag, v)
}

func printResult(w io.Writer, res *sim.Result, m sim.Memory) {
	ds := res.Dataset
	split := ds.Split + " split"
	if ds.Dropped > 0 {
		split += fmt.Sprintf(", %d test interactions dropped (user or item not in training, or also in training)", ds.Dropped)
	}
	kind := "implicit feedback"
	if !ds.Implicit {
		kind = "ratings"
	}
	fmt.Fprintf(w, "data: %s (%s), %d users, %d items, %d train / %d test interactions (%s)\n", ds.Name, kind, ds.Users, ds.Items, ds.Train, ds.Test, split)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	explicit := !ds.Implicit
	head := "\tRecall@10\tNDCG@10\tRecall@20\tNDCG@20\tusers hit@10\tcatalogue@10\t"
	if explicit {
		head += "RMSE\tMAE\t"
	}
	fmt.Fprintln(tw, head)
	line := func(name string, r *sim.Row) {
		if r == nil {
			return
		}
		f := func(x float64) string {
			if math.IsNaN(x) {
				return "-"
			}
			return fmt.Sprintf("%.4f", x)
		}
		s := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t", name, f(r.Recall), f(r.NDCG), f(r.Recall20), f(r.NDCG20), f(r.UserCov), f(r.CatCov))
		if explicit {
			s += f(r.RMSE) + "\t" + f(r.MAE) + "\t"
		}
		fmt.Fprintln(tw, s)
	}
	if !res.Config.Centralized {
		line(fmt.Sprintf("federated (round %d)", res.Final.Round), &res.Final)
	}
	twin := "centralized iALS"
	if explicit {
		twin = "centralized ALS"
	}
	line(twin, res.Baseline)
	line("EASE", res.EASE)
	line("most popular", res.Popular)
	tw.Flush()
	if !res.Config.Centralized {
		if b := res.Baseline; b != nil {
			if explicit {
				fmt.Fprintf(w, "federated RMSE is %+.2f%% of centralized\n", 100*(res.Final.RMSE/b.RMSE-1))
			} else {
				fmt.Fprintf(w, "federated Recall@20 is %+.1f%% of centralized iALS\n", 100*(res.Final.Recall20/b.Recall20-1))
			}
		}
		if e := res.EASE; e != nil {
			fmt.Fprintf(w, "federated Recall@10 is %.2f × EASE's, NDCG@10 %.2f ×\n", res.Final.Recall/e.Recall, res.Final.NDCG/e.NDCG)
		}
		if p := res.Popular; p != nil {
			fmt.Fprintf(w, "federated Recall@10 is %.2f × most popular's\n", res.Final.Recall/p.Recall)
		}
	}
	if c := res.Config; c.DP != "off" {
		fmt.Fprintf(w, "privacy: %s DP, noise multiplier %.3g, clip %.3g, ε = %.3g at δ = %g\n", c.DP, res.NoiseMultiplier, res.Final.Clip, res.Final.Epsilon, c.Delta)
	}
	if !res.Config.Centralized && res.UpPerParam > 0 {
		up := "64-bit"
		if c := res.Config; c.UploadBits == 8 {
			up = fmt.Sprintf("8-bit, clip %g, %.2g of coordinates saturated", c.Clip, res.Saturated)
		} else if c.SecAgg || c.DP == sim.DPDistributed {
			up = "encoded for secure aggregation"
		}
		fmt.Fprintf(w, "bytes per client per round, per parameter: upload %.3g (%s), download %.3g\n", res.UpPerParam, up, res.DownPerParam)
	}
	if res.Abandoned > 0 {
		fmt.Fprintf(w, "abandoned rounds (too few survivors): %d\n", res.Abandoned)
	}
	fmt.Fprintf(w, "wall %.1fs, peak heap %.1f MiB, max RSS %.1f MiB\n", res.Wall.Seconds(), float64(m.PeakHeapBytes)/(1<<20), float64(m.MaxRSSBytes)/(1<<20))
}

// progress draws a bar on a terminal and plain lines elsewhere.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  *sim.Row
	drawn bool
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progress{w: w, tty: tty, start: time.Now()}
}

func (p *progress) Phase(msg string) {
	p.clear()
	fmt.Fprintf(p.w, "%s\n", msg)
}

func (p *progress) Round(round, total int, row *sim.Row) {
	if row != nil {
		p.last = row
	}
	el := time.Since(p.start).Seconds()
	if !p.tty {
		if row != nil {
			fmt.Fprintf(p.w, "round %d/%d  %s  %.1fs\n", round, total, rowText(row), el)
		}
		return
	}
	const width = 30
	n := width * round / max(total, 1)
	bar := strings.Repeat("█", n) + strings.Repeat("·", width-n)
	text := ""
	if p.last != nil {
		text = rowText(p.last)
	}
	fmt.Fprintf(p.w, "\r\033[K%s %d/%d  %s  %.1fs", bar, round, total, text, el)
	p.drawn = true
}

func rowText(r *sim.Row) string {
	if !math.IsNaN(r.RMSE) {
		return fmt.Sprintf("rmse %.4f", r.RMSE)
	}
	return fmt.Sprintf("recall@10 %.4f  ndcg@10 %.4f", r.Recall, r.NDCG)
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// flagsSet returns the names of the flags the command line set, so that a
// command can refuse one that does not apply with the others.
func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}
