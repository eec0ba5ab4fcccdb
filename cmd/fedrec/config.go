package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// nodeConfig is the configuration of 'fedrec coordinator': where each
// value comes from is, in increasing precedence, its default, the YAML
// file (--config or $FEDREC_CONFIG), its FEDREC_* environment variable,
// its flag. docs/configuration.md lists every setting.
type nodeConfig struct {
	ID, DataDir                      string
	RaftAddr, AdvertiseRaftAddr      string
	ClientAddr, AdvertiseClientAddr  string
	WebTransportAddr                 string
	Bootstrap                        bool
	Join                             string // comma-separated
	Certs, CertName                  string
	InsecureDevices                  bool
	AdminAddr, AdminToken, ReadToken string
	Heartbeat                        time.Duration
	ReadyLag                         uint64
	LogLevel, LogFormat              string
	// Admission of device traffic (coordinator.Config).
	MemoryBudget        int64
	MaxUploadsPerDevice int
	MaxDeviceMemory     int64
	MinUploadRate       int64
	DeviceRequestRate   float64
	DeviceRequestBurst  int
	// Pace steering (coordinator.Config.PaceMin, PaceMax).
	PaceMin, PaceMax time.Duration

	// Training, used only by the bootstrapping node.
	Dataset, DatasetsDir string
	Catalogue            string // file of the item IDs, one a line, in the model's order
	Objective            string // explicit or implicit: T.Kind
	DP                   string // coordinator.ParseNoiseMode; "" picks by the noise multiplier
	T                    coordinator.Training

	file string            // the configuration file read, if any
	src  map[string]string // flag name → where a non-default value came from
}

// setting is one configuration value: its flag, its YAML key (the flag's
// name with '_' for '-', under "training:" for the training section), and
// its environment variable (FEDREC_ and the flag's name in capitals with
// '_' for '-').
type setting struct {
	flag     string
	training bool
	// field is how coordinator, model and aggregation name the value in
	// their validation errors, to map those back to the key.
	field  string
	secret bool // not read from a file; not printed
}

var settings = []setting{
	{flag: "id"}, {flag: "data-dir"}, {flag: "raft-addr"}, {flag: "advertise-raft-addr"}, {flag: "client-addr"}, {flag: "advertise-client-addr"}, {flag: "webtransport-addr"},
	{flag: "bootstrap"}, {flag: "join"}, {flag: "certs"}, {flag: "cert-name"}, {flag: "insecure-devices"},
	{flag: "admin-addr"}, {flag: "admin-token", secret: true}, {flag: "read-token", secret: true}, {flag: "heartbeat"}, {flag: "ready-lag"},
	{flag: "log-level"}, {flag: "log-format"},
	{flag: "memory-budget", field: "Config.MemoryBudget"}, {flag: "max-uploads-per-device", field: "Config.MaxUploadsPerDevice"},
	{flag: "max-device-memory", field: "Config.MaxDeviceMemory"},
	{flag: "min-upload-rate", field: "Config.MinUploadRate"},
	{flag: "device-request-rate", field: "Config.DeviceRequestRate"}, {flag: "device-request-burst", field: "Config.DeviceRequestBurst"},
	{flag: "pace-min", field: "Config.PaceMin"}, {flag: "pace-max", field: "Config.PaceMax"},
	{flag: "dataset", training: true}, {flag: "datasets-dir", training: true}, {flag: "catalogue", training: true},
	{flag: "objective", training: true, field: "Training.Kind"},
	{flag: "items", training: true, field: "Training.Items"},
	{flag: "mean", training: true, field: "Training.Mean"},
	{flag: "rank", training: true, field: "Training.Rank"},
	{flag: "seed", training: true, field: "Training.Seed"},
	{flag: "lr", training: true, field: "TrainConfig.LR"},
	{flag: "reg", training: true, field: "TrainConfig.Reg"},
	{flag: "local-epochs", training: true, field: "TrainConfig.Epochs"},
	{flag: "alpha", training: true, field: "TrainConfig.Alpha"},
	{flag: "event-weights", training: true, field: "Training.Events"},
	{flag: "clip", training: true, field: "Training.Clip"},
	{flag: "server-opt", training: true, field: "unknown server optimizer"},
	{flag: "server-lr", training: true, field: "server LR"},
	{flag: "clients-per-round", training: true, field: "Training.ClientsPerRound"},
	{flag: "over-select", training: true, field: "Training.OverSelect"},
	{flag: "min-clients", training: true, field: "Training.MinClients"},
	{flag: "checkin-window", training: true, field: "Training.CheckInWindow"},
	{flag: "round-timeout", training: true, field: "Training.RoundTimeout"},
	{flag: "keep-models", training: true, field: "Training.KeepModels"},
	{flag: "noise-multiplier", training: true, field: "Training.NoiseMultiplier"},
	{flag: "secagg", training: true, field: "Training.SecAgg"},
	{flag: "secagg-phase", training: true, field: "Training.SecAggPhase"},
	{flag: "secagg-signed", training: true, field: "Training.SecAggSigned"},
	{flag: "secagg-colluders", training: true, field: "Training.SecAggColluders"},
	{flag: "secagg-roster", training: true, field: "Training.SecAggRoster"},
	{flag: "population", training: true, field: "Training.Population"},
	{flag: "dp", training: true, field: "Training.Noise"},
	{flag: "adaptive-clip", training: true, field: "Training.AdaptiveClip"},
	{flag: "clip-quantile", training: true, field: "Training.ClipQuantile"},
	{flag: "clip-lr", training: true, field: "Training.ClipLearningRate"},
	{flag: "clip-count-std", training: true, field: "Training.ClipCountStddev"},
	{flag: "upload-bits", training: true, field: "Training.UploadBits"},
}

func (s setting) key() string {
	k := strings.ReplaceAll(s.flag, "-", "_")
	if s.training {
		return "training." + k
	}
	return k
}

func (s setting) env() string {
	return "FEDREC_" + strings.ToUpper(strings.ReplaceAll(s.flag, "-", "_"))
}

func settingByFlag(name string) (setting, bool) {
	i := slices.IndexFunc(settings, func(s setting) bool { return s.flag == name })
	if i < 0 {
		return setting{}, false
	}
	return settings[i], true
}

// defaultNodeConfig holds every default; bindConfig's flags show them.
func defaultNodeConfig() *nodeConfig {
	return &nodeConfig{
		RaftAddr: "127.0.0.1:8001", ClientAddr: "127.0.0.1:7001", Certs: "certs", LogLevel: "info", LogFormat: "text",
		ReadyLag:     2,
		MemoryBudget: coordinator.DefaultMemoryBudget, MaxUploadsPerDevice: coordinator.DefaultMaxUploadsPerDevice,
		MinUploadRate: coordinator.DefaultMinUploadRate, MaxDeviceMemory: coordinator.DefaultMaxDeviceMemory,
		DeviceRequestRate: coordinator.DefaultDeviceRequestRate, DeviceRequestBurst: coordinator.DefaultDeviceRequestBurst,
		PaceMax:     coordinator.DefaultPaceMax,
		DatasetsDir: "data", Objective: "explicit",
		T: coordinator.Training{
			Rank: 32, Seed: 1, Train: model.DefaultTrainConfig(), Events: coordinator.DefaultEventWeights(),
			Optimizer:       aggregation.OptimizerConfig{Name: "fedadam", LR: 0.1},
			ClientsPerRound: 100, OverSelect: 0.3, MinClients: 10,
			CheckInWindow: 2 * time.Second, RoundTimeout: time.Minute, KeepModels: 5,
		},
	}
}

// bindConfig defines one flag per setting on fs, bound to c's fields with
// c's values as defaults.
func bindConfig(fs *flag.FlagSet, c *nodeConfig) {
	fs.StringVar(&c.ID, "id", c.ID, "node id, stable across restarts (required)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the Raft log and snapshots (required)")
	fs.StringVar(&c.RaftAddr, "raft-addr", c.RaftAddr, "TCP address for Raft traffic (mutual TLS)")
	fs.StringVar(&c.AdvertiseRaftAddr, "advertise-raft-addr", c.AdvertiseRaftAddr, "Raft address other nodes dial, e.g. a stable DNS name (default: --raft-addr)")
	fs.StringVar(&c.ClientAddr, "client-addr", c.ClientAddr, "UDP address of the QUIC client protocol")
	fs.StringVar(&c.AdvertiseClientAddr, "advertise-client-addr", c.AdvertiseClientAddr, "client address other nodes give clients (default: --client-addr)")
	fs.StringVar(&c.WebTransportAddr, "webtransport-addr", c.WebTransportAddr, "UDP address of the client protocol over HTTP/3 WebTransport, for browsers (devices authenticate with device tokens verified by --certs' device-token.pem); empty: off")
	fs.BoolVar(&c.Bootstrap, "bootstrap", c.Bootstrap, "found a new cluster with this node (ignored if it has state)")
	fs.StringVar(&c.Join, "join", c.Join, "comma-separated client addresses of existing nodes to join")
	fs.StringVar(&c.Certs, "certs", c.Certs, "directory made by 'fedrec cert' (ca.pem, ID.pem, ID-key.pem)")
	fs.StringVar(&c.CertName, "cert-name", c.CertName, "certificate name in --certs (default: --id)")
	fs.BoolVar(&c.InsecureDevices, "insecure-devices", c.InsecureDevices, "development only: start without a device CA (--certs has no device-ca.pem) and serve any device under any client ID; without it such a node refuses to start")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "TCP address of the HTTPS admin API (health, readiness, metrics, status); empty: off")
	fs.StringVar(&c.AdminToken, "admin-token", c.AdminToken, "operator token for the admin API (prefer $FEDREC_ADMIN_TOKEN, which keeps it out of ps; never read from the config file)")
	fs.StringVar(&c.ReadToken, "read-token", c.ReadToken, "read-only token for the admin API: metrics, status, rounds, model and cluster list, nothing that changes the cluster (prefer $FEDREC_READ_TOKEN; never read from the config file)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", c.Heartbeat, "Raft heartbeat and election timeout (0: raft's default, 1s)")
	fs.Uint64Var(&c.ReadyLag, "ready-lag", c.ReadyLag, "ready (/readyz, 'fedrec status') only once the node has applied all but at most this many of the entries the leader committed")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text (logfmt) or json, one object a line")
	fs.Int64Var(&c.MemoryBudget, "memory-budget", c.MemoryBudget, "bytes of device traffic (request bodies and decoded messages) the node holds at once; requests beyond it wait, then get CodeUnavailable")
	fs.IntVar(&c.MaxUploadsPerDevice, "max-uploads-per-device", c.MaxUploadsPerDevice, "uploads one device certificate may have read at once")
	fs.Int64Var(&c.MaxDeviceMemory, "max-device-memory", c.MaxDeviceMemory, "bytes of --memory-budget one device certificate may hold at once; a request beyond it gets CodeUnavailable at once (raised to one upload of the model and 1 MiB when that is more)")
	fs.Int64Var(&c.MinUploadRate, "min-upload-rate", c.MinUploadRate, "bytes per second below which a request's body is cut off (CodeTooSlow), after a 10 s grace period")
	fs.Float64Var(&c.DeviceRequestRate, "device-request-rate", c.DeviceRequestRate, "requests a second one device certificate may send, after --device-request-burst; one more gets CodeUnavailable with the time until the next")
	fs.IntVar(&c.DeviceRequestBurst, "device-request-burst", c.DeviceRequestBurst, "requests one device certificate may send at once before --device-request-rate applies")
	fs.DurationVar(&c.PaceMin, "pace-min", c.PaceMin, "shortest retry time a node gives a device it did not select (pace steering: about its population × round period / its share of the cohort, ±50 %)")
	fs.DurationVar(&c.PaceMax, "pace-max", c.PaceMax, "longest retry time a node gives a device it did not select")

	t := &c.T
	fs.StringVar(&c.Dataset, "dataset", c.Dataset, "derive --items, --mean and --population from this data set (as 'fedrec sim --data'), e.g. ml-latest-small")
	fs.StringVar(&c.DatasetsDir, "datasets-dir", c.DatasetsDir, "directory of the named data sets")
	fs.StringVar(&c.Catalogue, "catalogue", c.Catalogue, "file of the app's item IDs, one a line, in the model's order (sets --items): every model download carries its digest, so that a device with another catalogue refuses the model; --dataset gives the data set's")
	fs.StringVar(&c.Objective, "objective", c.Objective, "what the model learns from: explicit (ratings, predicted as ratings) or implicit (views, clicks, carts, purchases, weighted by --event-weights; scored as preferences)")
	fs.IntVar(&t.Items, "items", t.Items, "number of items of the model (required unless --dataset)")
	fs.Float64Var(&t.Mean, "mean", t.Mean, "explicit objective: global mean rating of the initial model")
	fs.IntVar(&t.Rank, "rank", t.Rank, "rank of the factorization")
	fs.Uint64Var(&t.Seed, "seed", t.Seed, "seed of the initial model (and of --dataset's train/test split)")
	fs.Float64Var(&t.Train.LR, "lr", t.Train.LR, "client learning rate")
	fs.Float64Var(&t.Train.Reg, "reg", t.Train.Reg, "L2 regularization per observation")
	fs.IntVar(&t.Train.Epochs, "local-epochs", t.Train.Epochs, "local SGD passes per round")
	fs.Float64Var(&t.Train.Alpha, "alpha", t.Train.Alpha, "implicit objective: confidence scale, an item's confidence is 1 + alpha × its strength")
	fs.Var(eventWeightsValue{&t.Events}, "event-weights", "implicit objective: comma-separated kind=weight `pairs`, kinds view, click, cart, purchase; a device gives an item the strength log2(1 + Σ the weights of its events); kinds not named keep their default")
	fs.Float64Var(&t.Clip, "clip", t.Clip, "L2 clip norm of each update (0 = none)")
	fs.StringVar(&t.Optimizer.Name, "server-opt", t.Optimizer.Name, "server optimizer: fedavg, fedadam, fedyogi")
	fs.Float64Var(&t.Optimizer.LR, "server-lr", t.Optimizer.LR, "server learning rate")
	fs.IntVar(&t.ClientsPerRound, "clients-per-round", t.ClientsPerRound, "updates wanted per round")
	fs.Float64Var(&t.OverSelect, "over-select", t.OverSelect, "select this fraction more clients to make up for dropouts")
	fs.IntVar(&t.MinClients, "min-clients", t.MinClients, "abandon a round with fewer updates")
	fs.DurationVar(&t.CheckInWindow, "checkin-window", t.CheckInWindow, "how long to gather check-ins before selecting a cohort")
	fs.DurationVar(&t.RoundTimeout, "round-timeout", t.RoundTimeout, "deadline for uploads after selection")
	fs.IntVar(&t.KeepModels, "keep-models", t.KeepModels, "model versions every node retains")
	fs.Float64Var(&t.NoiseMultiplier, "noise-multiplier", t.NoiseMultiplier, "central DP: the leader adds Gaussian noise of std noise-multiplier × clip to each round's sum (needs --clip and --population or --dataset) and records it in the privacy ledger")
	fs.BoolVar(&t.SecAgg, "secagg", t.SecAgg, "secure aggregation: the leader learns only the sum of each round's updates (needs --clip > 0, --min-clients >= 3)")
	fs.DurationVar(&t.SecAggPhase, "secagg-phase", t.SecAggPhase, "deadline of each secure-aggregation phase after the first (0: 10s with --secagg)")
	fs.BoolVar(&t.SecAggSigned, "secagg-signed", t.SecAggSigned, "signed secure rounds, which resist a leader that lies: devices sign their key adverts with their device certificates' keys and confirm the survivor set to each other (needs --secagg and a device CA)")
	fs.IntVar(&t.SecAggColluders, "secagg-colluders", t.SecAggColluders, "with --secagg-signed, how many devices per neighbourhood may collude with a lying leader (0..--min-clients - 3)")
	fs.BoolVar(&t.SecAggRoster, "secagg-roster", t.SecAggRoster, "with --secagg-signed, admit only the devices listed in the device roster (certs/device-roster.bin, 'fedrec cert roster'), so that devices accept no certificate revoked before it")
	fs.Int64Var(&t.Population, "population", t.Population, "client population, for the ledger's sampling rate (0 = unknown; --dataset sets it)")
	fs.StringVar(&c.DP, "dp", c.DP, "who adds the noise of --noise-multiplier: off, central (the leader) or distributed (the clients, with --secagg); empty: central with a noise multiplier, else off")
	fs.BoolVar(&t.AdaptiveClip, "adaptive-clip", t.AdaptiveClip, "adapt the clip each round to a quantile of the update norms (Andrew et al. 2021); --clip is the initial clip")
	fs.Float64Var(&t.ClipQuantile, "clip-quantile", t.ClipQuantile, "target fraction of unclipped updates with --adaptive-clip (0: 0.5)")
	fs.Float64Var(&t.ClipLearningRate, "clip-lr", t.ClipLearningRate, "learning rate of the adaptive clip's geometric update (0: 0.2)")
	fs.Float64Var(&t.ClipCountStddev, "clip-count-std", t.ClipCountStddev, "std of the noise on the count of unclipped updates under central noise (0: clients-per-round/20)")
	fs.IntVar(&t.UploadBits, "upload-bits", t.UploadBits, "how devices send their updates: 8 (a byte a parameter quantized at a step --clip fixes; with --secagg, in a field of about 2 bytes) or 64 (float64; secure rounds: a 32-bit field); 0: 8 with --clip and without --dp distributed, else 64")
}

// eventWeightsValue is the flag.Value of --event-weights:
// "view=1,click=2,cart=4,purchase=8" (coordinator.ParseEventWeights).
type eventWeightsValue struct{ w *coordinator.EventWeights }

func (v eventWeightsValue) String() string {
	if v.w == nil {
		return "" // flag's zero-value probe
	}
	return v.w.String()
}

func (v eventWeightsValue) Set(s string) error {
	w, err := coordinator.ParseEventWeights(s)
	if err != nil {
		return err
	}
	*v.w = w
	return nil
}

// Get returns the flag's text, which is also how the file and 'fedrec
// config' write it.
func (v eventWeightsValue) Get() any { return v.String() }

// parseObjective reads --objective.
func parseObjective(s string) (model.Kind, error) {
	for _, k := range []model.Kind{model.Explicit, model.Implicit} {
		if s == k.String() {
			return k, nil
		}
	}
	return 0, fmt.Errorf("objective %q, want explicit or implicit", s)
}

// configFlags defines the flags of a command that takes the node's
// configuration: --config and one per setting. Call resolveConfig after
// parsing.
func configFlags(fs *flag.FlagSet) *string {
	file := fs.String("config", "", "YAML configuration file (default $FEDREC_CONFIG); FEDREC_* variables and flags override it")
	bindConfig(fs, defaultNodeConfig())
	return file
}

// resolveConfig builds the effective configuration: defaults, then the
// file (file, else $FEDREC_CONFIG), then FEDREC_* variables from env,
// then the flags set on fs (nil: none).
func resolveConfig(fs *flag.FlagSet, file string, env func(string) (string, bool)) (*nodeConfig, error) {
	c := defaultNodeConfig()
	c.src = map[string]string{}
	eff := flag.NewFlagSet("effective", flag.ContinueOnError)
	bindConfig(eff, c)
	if file == "" {
		file, _ = env("FEDREC_CONFIG")
	}
	if file != "" {
		c.file = file
		if err := readConfigFile(file, eff, c.src); err != nil {
			return nil, err
		}
	}
	for _, s := range settings {
		// An empty variable counts as unset, as FEDREC_ADMIN_TOKEN always has.
		if v, ok := env(s.env()); ok && v != "" {
			if err := set(eff, s.flag, v); err != nil {
				return nil, fmt.Errorf("config: %s: %w", s.env(), err)
			}
			c.src[s.flag] = "env " + s.env()
		}
	}
	if fs != nil {
		var err error
		fs.Visit(func(f *flag.Flag) {
			if _, ok := settingByFlag(f.Name); !ok || err != nil {
				return
			}
			if e := set(eff, f.Name, f.Value.String()); e != nil {
				err = fmt.Errorf("config: --%s: %w", f.Name, e)
			}
			c.src[f.Name] = "flag --" + f.Name
		})
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// set parses raw into the setting's value; the error names the type it
// wants.
func set(eff *flag.FlagSet, name, raw string) error {
	f := eff.Lookup(name)
	if err := f.Value.Set(raw); err != nil {
		want := "a string"
		if _, ok := f.Value.(eventWeightsValue); ok {
			return fmt.Errorf("invalid value %q: want kind=weight pairs, kinds view, click, cart and purchase, such as view=1,click=2,cart=4,purchase=8", raw)
		}
		switch f.Value.(flag.Getter).Get().(type) {
		case bool:
			want = "true or false"
		case int, int64:
			want = "an integer"
		case uint64:
			want = "a non-negative integer"
		case float64:
			want = "a number"
		case time.Duration:
			want = "a duration such as 500ms, 30s or 2m"
		}
		return fmt.Errorf("invalid value %q: want %s", raw, want)
	}
	return nil
}

// readConfigFile applies a YAML file's keys to eff. Unknown keys, keys set
// twice, the admin token, and values that do not parse are errors naming
// the file, line and key.
func readConfigFile(file string, eff *flag.FlagSet, src map[string]string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	byKey := map[string]setting{}
	for _, s := range settings {
		byKey[s.key()] = s
	}
	seen := map[string]int{}
	var walk func(m *yaml.Node, prefix string) error
	walk = func(m *yaml.Node, prefix string) error {
		at := func(n *yaml.Node, format string, args ...any) error {
			return fmt.Errorf("config %s:%d: "+format, append([]any{file, n.Line}, args...)...)
		}
		if m.Kind != yaml.MappingNode {
			return at(m, "want a mapping of keys to values")
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			if line, dup := seen[key]; dup {
				return at(k, "%s set twice (first on line %d)", key, line)
			}
			seen[key] = k.Line
			if key == "training" {
				if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
					continue
				}
				if err := walk(v, "training."); err != nil {
					return err
				}
				continue
			}
			s, ok := byKey[key]
			if !ok {
				hint := ""
				if _, ok := byKey["training."+key]; ok {
					hint = fmt.Sprintf(" (did you mean training.%s?)", key)
				} else if _, ok := byKey[strings.TrimPrefix(key, "training.")]; ok {
					hint = fmt.Sprintf(" (%s is not a training setting)", strings.TrimPrefix(key, "training."))
				}
				return at(k, "unknown key %q%s; docs/configuration.md lists them", key, hint)
			}
			if s.secret {
				return at(k, "%s is a secret and is not read from a file: set %s", key, s.env())
			}
			var raw string
			switch {
			case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
				continue // "key:" with no value keeps the default
			case v.Kind == yaml.ScalarNode:
				raw = v.Value
			case v.Kind == yaml.MappingNode && s.flag == "event-weights":
				// {view: 1, purchase: 8} reads as view=1,purchase=8.
				var pairs []string
				for j := 0; j+1 < len(v.Content); j += 2 {
					kind, w := v.Content[j], v.Content[j+1]
					if kind.Kind != yaml.ScalarNode || w.Kind != yaml.ScalarNode {
						return at(w, "%s: want kind: weight pairs", key)
					}
					pairs = append(pairs, kind.Value+"="+w.Value)
				}
				raw = strings.Join(pairs, ",")
			case v.Kind == yaml.SequenceNode && s.flag == "join":
				var items []string
				for _, e := range v.Content {
					if e.Kind != yaml.ScalarNode {
						return at(e, "%s: want a list of addresses", key)
					}
					items = append(items, e.Value)
				}
				raw = strings.Join(items, ",")
			default:
				return at(v, "%s: want a single value", key)
			}
			if err := set(eff, s.flag, raw); err != nil {
				return at(v, "%s: %v", key, err)
			}
			src[s.flag] = fmt.Sprintf("%s:%d", file, k.Line)
		}
		return nil
	}
	return walk(doc.Content[0], "")
}

// source says where a setting's value came from.
func (c *nodeConfig) source(flagName string) string {
	if s, ok := c.src[flagName]; ok {
		return s
	}
	return "default"
}

// training is the Training the bootstrapping node commits.
func (c *nodeConfig) training() coordinator.Training {
	t := c.T
	t.Optimizer = aggregation.OptimizerConfig{Name: t.Optimizer.Name, LR: t.Optimizer.LR, Tau: 1e-3}
	if c.DP != "" {
		t.Noise, _ = coordinator.ParseNoiseMode(c.DP) // checked by validate
	}
	t.Kind, _ = parseObjective(c.Objective) // checked by validate
	if t.UploadBits == 0 && t.Clip > 0 && t.Noise != coordinator.NoiseDistributed {
		t.UploadBits = 8
	}
	if t.Kind != model.Implicit {
		t.Events = coordinator.EventWeights{} // explicit models have none
		return t
	}
	// The flags' defaults are the explicit model's; an implicit cluster
	// starts from the implicit ones (model.Defaults) where not set.
	def, h := defaultNodeConfig().T, model.Defaults(model.Implicit)
	if !c.given("rank", t.Rank == def.Rank) {
		t.Rank = h.Rank
	}
	if !c.given("reg", t.Train.Reg == def.Train.Reg) {
		t.Train.Reg = h.Train.Reg
	}
	if !c.given("alpha", t.Train.Alpha == def.Train.Alpha) {
		t.Train.Alpha = h.Train.Alpha
	}
	if !c.given("server-lr", t.Optimizer.LR == def.Optimizer.LR) {
		t.Optimizer.LR = h.ServerLR
	}
	return t
}

// given reports whether the user set a setting: by a flag or a variable,
// or by the file to a value other than the default (the file 'fedrec
// config' prints holds every setting, those that do not apply too).
func (c *nodeConfig) given(flagName string, isDefault bool) bool {
	switch src := c.source(flagName); {
	case src == "default":
		return false
	case strings.HasPrefix(src, "flag ") || strings.HasPrefix(src, "env "):
		return true
	}
	return !isDefault
}

// validate checks what 'fedrec coordinator' would refuse, naming the
// setting (key, flag, variable) and where its value came from. With a
// data set, the items and population are known only once it is read:
// they are checked then.
func (c *nodeConfig) validate() error {
	bad := func(flagName, format string, args ...any) error {
		s, _ := settingByFlag(flagName)
		return fmt.Errorf("config: %s (--%s, %s; from %s): %s", s.key(), s.flag, s.env(), c.source(flagName), fmt.Sprintf(format, args...))
	}
	var level slog.Level
	switch {
	case c.ID == "" || len(c.ID) > wire.MaxIDLen:
		return bad("id", "%q, want 1..%d bytes (required)", c.ID, wire.MaxIDLen)
	case c.DataDir == "":
		return bad("data-dir", "required")
	case c.RaftAddr == "":
		return bad("raft-addr", "required")
	case level.UnmarshalText([]byte(c.LogLevel)) != nil:
		return bad("log-level", "%q, want debug, info, warn or error", c.LogLevel)
	case c.LogFormat != "text" && c.LogFormat != "json":
		return bad("log-format", "%q, want text or json", c.LogFormat)
	case c.Heartbeat < 0:
		return bad("heartbeat", "%v, want >= 0", c.Heartbeat)
	case c.MemoryBudget <= 0:
		return bad("memory-budget", "%d, want > 0 bytes", c.MemoryBudget)
	case c.MaxUploadsPerDevice <= 0:
		return bad("max-uploads-per-device", "%d, want > 0", c.MaxUploadsPerDevice)
	case c.MaxDeviceMemory <= 0:
		return bad("max-device-memory", "%d, want > 0 bytes", c.MaxDeviceMemory)
	case c.MinUploadRate <= 0:
		return bad("min-upload-rate", "%d, want > 0 bytes per second", c.MinUploadRate)
	case !(c.DeviceRequestRate > 0) || math.IsInf(c.DeviceRequestRate, 0):
		return bad("device-request-rate", "%v, want > 0 requests a second", c.DeviceRequestRate)
	case c.DeviceRequestBurst <= 0:
		return bad("device-request-burst", "%d, want > 0", c.DeviceRequestBurst)
	case c.PaceMin < 0:
		return bad("pace-min", "%v, want >= 0", c.PaceMin)
	case c.PaceMax <= 0 || c.PaceMax < c.PaceMin:
		return bad("pace-max", "%v, want > 0 and >= pace_min (%v)", c.PaceMax, c.PaceMin)
	case c.AdminAddr != "" && c.AdminToken == "":
		return bad("admin-token", "required with admin_addr %s", c.AdminAddr)
	case c.ReadToken != "" && c.AdminAddr == "":
		return bad("read-token", "set without admin_addr: there is no admin API to read")
	case c.ReadToken != "" && c.ReadToken == c.AdminToken:
		return bad("read-token", "equals the admin token: a read-only token must be a different secret")
	case c.Bootstrap && c.Join != "":
		return bad("join", "%q with bootstrap: a node founds a cluster or joins one", c.Join)
	}
	if _, err := coordinator.ParseNoiseMode(c.DP); c.DP != "" && err != nil {
		return bad("dp", "%q, want off, central or distributed", c.DP)
	}
	kind, err := parseObjective(c.Objective)
	if err != nil {
		return bad("objective", "%q, want explicit or implicit", c.Objective)
	}
	if !c.Bootstrap {
		return nil // training settings are the founder's
	}
	// Settings of the other objective would be silently ignored.
	def := defaultNodeConfig().T
	switch {
	case kind == model.Explicit && c.given("event-weights", c.T.Events == def.Events):
		return bad("event-weights", "%s with objective explicit: event weights apply only to --objective implicit (an explicit model learns from ratings)", c.T.Events)
	case kind == model.Explicit && c.given("alpha", c.T.Train.Alpha == def.Train.Alpha):
		return bad("alpha", "%v with objective explicit: the confidence scale applies only to --objective implicit", c.T.Train.Alpha)
	case kind == model.Implicit && c.given("mean", c.T.Mean == def.Mean):
		return bad("mean", "%v with objective implicit: an implicit model scores preferences and has no mean rating", c.T.Mean)
	}
	t := c.training()
	if c.Dataset != "" || c.Catalogue != "" {
		// Stand-ins for what the data set or catalogue gives at start
		// (checked then).
		t.Items = max(t.Items, 1)
		if t.Population == 0 {
			t.Population = 1
		}
	}
	return c.checkTraining(t)
}

// checkTraining validates t as the coordinator will, and names the
// setting a validation error is about.
func (c *nodeConfig) checkTraining(t coordinator.Training) error {
	err := t.WithDefaults().Validate()
	if err == nil {
		return nil
	}
	for _, s := range settings {
		if s.field != "" && (strings.Contains(err.Error(), s.field+" =") || strings.Contains(err.Error(), s.field+" ")) {
			return fmt.Errorf("config: %s (--%s, %s; from %s): %w", s.key(), s.flag, s.env(), c.source(s.flag), err)
		}
	}
	return fmt.Errorf("config: training: %w", err)
}

const configUsage = `usage: fedrec config [--config FILE] [--json] [coordinator flags…]

Prints the configuration 'fedrec coordinator' would run with, given the same
file, FEDREC_* environment variables and flags (in increasing precedence),
with where each value that is not a default comes from; the admin token is
never printed. The YAML output is itself a valid configuration file.
docs/configuration.md lists every setting.

Exit status: 0 valid, 1 invalid (the configuration is still printed, the
error names the setting), 2 usage error.

flags:`

func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of YAML")
	file := configFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, configUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fedrec config: unexpected argument %q\n\n", fs.Arg(0))
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
	if *asJSON {
		err = printJSON(stdout, c.jsonValue())
	} else {
		err = c.writeYAML(stdout)
	}
	if err != nil {
		return err
	}
	return c.validate()
}

// values returns each setting's flag.Value bound to c.
func (c *nodeConfig) values() map[string]flag.Value {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	bindConfig(fs, c) // each field's default is its own value: nothing changes
	out := map[string]flag.Value{}
	fs.VisitAll(func(f *flag.Flag) { out[f.Name] = f.Value })
	return out
}

// jsonValue is the configuration as nested JSON values, durations as
// strings ("2s"), without the admin token.
func (c *nodeConfig) jsonValue() map[string]any {
	vals := c.values()
	out := map[string]any{}
	train := map[string]any{}
	for _, s := range settings {
		if s.secret {
			continue
		}
		v := vals[s.flag].(flag.Getter).Get()
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		if s.flag == "join" {
			v = splitList(c.Join)
		}
		k := strings.ReplaceAll(s.flag, "-", "_")
		if s.training {
			train[k] = v
		} else {
			out[k] = v
		}
	}
	out["training"] = train
	out["admin_token_set"] = c.AdminToken != ""
	out["read_token_set"] = c.ReadToken != ""
	return out
}

// writeYAML prints the configuration as a configuration file, each value
// that is not a default commented with its source.
func (c *nodeConfig) writeYAML(w io.Writer) error {
	vals := c.values()
	root := &yaml.Node{Kind: yaml.MappingNode}
	train := &yaml.Node{Kind: yaml.MappingNode}
	for _, s := range settings {
		if s.secret {
			continue
		}
		v := vals[s.flag].(flag.Getter).Get()
		val := &yaml.Node{Kind: yaml.ScalarNode, Value: vals[s.flag].String()}
		switch v.(type) {
		case bool:
			val.Tag = "!!bool"
		case int, int64, uint64:
			val.Tag = "!!int"
		case float64:
			val.Tag = "!!float"
			// "0" would read back as an integer: keep it a float.
			if !strings.ContainsAny(val.Value, ".eIN") {
				val.Value += ".0"
			}
		default:
			val.Tag = "!!str"
		}
		if s.flag == "join" {
			val = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, a := range splitList(c.Join) {
				val.Content = append(val.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: a})
			}
		}
		if src := c.source(s.flag); src != "default" {
			val.LineComment = "from " + src
		}
		key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.ReplaceAll(s.flag, "-", "_")}
		if s.training {
			train.Content = append(train.Content, key, val)
		} else {
			root.Content = append(root.Content, key, val)
		}
	}
	tk := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "training",
		HeadComment: "Used only by the bootstrapping node, which replicates it to the cluster."}
	root.Content = append(root.Content, tk, train)
	tok := "not set"
	if c.AdminToken != "" {
		tok = "set, from " + c.source("admin-token")
	}
	if c.ReadToken != "" {
		tok += "; read-only token: set, from " + c.source("read-token")
	}
	file := "none"
	if c.file != "" {
		file = c.file
	}
	root.HeadComment = fmt.Sprintf("fedrec coordinator: effective configuration (file %s).\nadmin token: %s.", file, tok)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return err
	}
	return enc.Close()
}

// otherEnv are FEDREC_ variables that are not settings: the configuration
// file, the systemd example's flags, and the test suites' knobs, which
// reach the nodes the tests start.
var otherEnv = []string{"FEDREC_CONFIG", "FEDREC_ARGS", "FEDREC_TEST_LOG", "FEDREC_FAULT_KILLS", "FEDREC_FAULT_PROC_KILLS", "FEDREC_SYNCTEST_SEEDS", "FEDREC_IDLE_NODE_DIR"}

// checkEnvNames refuses a FEDREC_ variable that is no setting: a typo
// (FEDREC_NOISE_MULTIPLER) would otherwise be ignored silently.
func checkEnvNames(environ []string) error {
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "FEDREC_") || slices.Contains(otherEnv, name) ||
			slices.ContainsFunc(settings, func(s setting) bool { return s.env() == name }) {
			continue
		}
		best, dist := "", 4
		for _, s := range settings {
			if d := editDistance(name, s.env()); d < dist {
				best, dist = s.env(), d
			}
		}
		hint := ""
		if best != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", best)
		}
		return fmt.Errorf("config: unknown environment variable %s%s; docs/configuration.md lists the FEDREC_* variables", name, hint)
	}
	return nil
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
