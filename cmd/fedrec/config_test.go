package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/model"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// resolve parses args as 'fedrec coordinator' would and resolves them.
func resolve(t *testing.T, args []string, env map[string]string) (*nodeConfig, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := configFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return resolveConfig(fs, *file, envMap(env))
}

func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, `
id: from-file
data_dir: /var/lib/fedrec
join: [10.0.0.1:7001, 10.0.0.2:7001]
heartbeat: 500ms
training:
  clip: 0.5
  min_clients: 20
  round_timeout: 30s
  secagg: true
`)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		get  func(c *nodeConfig) any
		want any
		src  string // flag name whose source is checked
		from string
	}{
		{"default", nil, nil, func(c *nodeConfig) any { return c.T.ClientsPerRound }, 100, "clients-per-round", "default"},
		{"file over default", []string{"--config", file}, nil, func(c *nodeConfig) any { return c.T.MinClients }, 20, "min-clients", file + ":8"},
		{"file via FEDREC_CONFIG", nil, map[string]string{"FEDREC_CONFIG": file}, func(c *nodeConfig) any { return c.ID }, "from-file", "id", file + ":2"},
		{"file duration", []string{"--config", file}, nil, func(c *nodeConfig) any { return c.T.RoundTimeout }, 30 * time.Second, "round-timeout", file + ":9"},
		{"file list", []string{"--config", file}, nil, func(c *nodeConfig) any { return c.Join }, "10.0.0.1:7001,10.0.0.2:7001", "join", file + ":4"},
		{"env over file", []string{"--config", file}, map[string]string{"FEDREC_CLIP": "0.7"}, func(c *nodeConfig) any { return c.T.Clip }, 0.7, "clip", "env FEDREC_CLIP"},
		{"flag over env over file", []string{"--config", file, "--clip", "0.9"}, map[string]string{"FEDREC_CLIP": "0.7"}, func(c *nodeConfig) any { return c.T.Clip }, 0.9, "clip", "flag --clip"},
		{"flag set to the default still wins", []string{"--config", file, "--min-clients", "10"}, nil, func(c *nodeConfig) any { return c.T.MinClients }, 10, "min-clients", "flag --min-clients"},
		{"flag false over file true", []string{"--config", file, "--secagg=false"}, nil, func(c *nodeConfig) any { return c.T.SecAgg }, false, "secagg", "flag --secagg"},
		{"empty env is unset", []string{"--config", file}, map[string]string{"FEDREC_ID": ""}, func(c *nodeConfig) any { return c.ID }, "from-file", "id", file + ":2"},
		{"admin token from env", nil, map[string]string{"FEDREC_ADMIN_TOKEN": "s3cret"}, func(c *nodeConfig) any { return c.AdminToken }, "s3cret", "admin-token", "env FEDREC_ADMIN_TOKEN"},
		{"env without file", nil, map[string]string{"FEDREC_RAFT_ADDR": "10.0.0.3:8001"}, func(c *nodeConfig) any { return c.RaftAddr }, "10.0.0.3:8001", "raft-addr", "env FEDREC_RAFT_ADDR"},
		{"flag over FEDREC_CONFIG file", []string{"--id", "n9"}, map[string]string{"FEDREC_CONFIG": file}, func(c *nodeConfig) any { return c.ID }, "n9", "id", "flag --id"},
		{"objective from env", nil, map[string]string{"FEDREC_OBJECTIVE": "implicit"}, func(c *nodeConfig) any { return c.training().Kind }, model.Implicit, "objective", "env FEDREC_OBJECTIVE"},
		{"event weights flag", []string{"--event-weights", "cart=5,purchase=20"}, nil, func(c *nodeConfig) any { return c.T.Events },
			coordinator.EventWeights{View: 1, Click: 2, Cart: 5, Purchase: 20}, "event-weights", "flag --event-weights"},
		{"event weights as a mapping in the file", []string{"--config", writeFile(t, "training:\n  objective: implicit\n  event_weights: {view: 0.5, purchase: 20}\n")}, nil,
			func(c *nodeConfig) any { return c.training().Events }, coordinator.EventWeights{View: 0.5, Click: 2, Cart: 4, Purchase: 20}, "event-weights", ""},
		{"explicit has no event weights", nil, nil, func(c *nodeConfig) any { return c.training().Events }, coordinator.EventWeights{}, "event-weights", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := resolve(t, tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.get(c); got != tt.want {
				t.Errorf("value = %v, want %v", got, tt.want)
			}
			if got := c.source(tt.src); tt.from != "" && got != tt.from {
				t.Errorf("source(%s) = %q, want %q", tt.src, got, tt.from)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		file string // YAML; "" for none
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"unknown key", "id: a\ndata_dir: d\nrank: 8\n", nil, nil, []string{":3:", `unknown key "rank"`, "did you mean training.rank?"}},
		{"unknown nested key", "training:\n  clips: 1\n", nil, nil, []string{":2:", `"training.clips"`}},
		{"node key under training", "training:\n  id: a\n", nil, nil, []string{":2:", "id is not a training setting"}},
		{"bad int", "training:\n  min_clients: many\n", nil, nil, []string{":2:", "training.min_clients", "invalid value"}},
		{"bad duration", "training:\n  round_timeout: 30\n", nil, nil, []string{":2:", "training.round_timeout", `invalid value "30": want a duration`}},
		{"twice", "id: a\nid: b\n", nil, nil, []string{":2:", "id set twice (first on line 1)"}},
		{"mapping for a value", "id: {a: 1}\n", nil, nil, []string{":1:", "id: want a single value"}},
		{"secret in file", "admin_token: hunter2\n", nil, nil, []string{":1:", "FEDREC_ADMIN_TOKEN"}},
		{"not yaml", "id: [\n", nil, nil, []string{"node.yaml", "yaml"}},
		{"bad env", "", nil, map[string]string{"FEDREC_KEEP_MODELS": "x"}, []string{"FEDREC_KEEP_MODELS", "invalid value"}},
		{"missing file", "", []string{"--config", "/nonexistent/fedrec.yaml"}, nil, []string{"/nonexistent/fedrec.yaml"}},
		{"unknown event kind", "training:\n  event_weights: rating=5\n", nil, nil, []string{":2:", "training.event_weights", `invalid value "rating=5": want kind=weight pairs`}},
		{"event weight not a number", "", nil, map[string]string{"FEDREC_EVENT_WEIGHTS": "view=lots"}, []string{"FEDREC_EVENT_WEIGHTS", "invalid value"}},
		{"all event weights zero", "", nil, map[string]string{"FEDREC_EVENT_WEIGHTS": "view=0,click=0,cart=0,purchase=0"}, []string{"FEDREC_EVENT_WEIGHTS", "invalid value"}},
		{"event weights mapping of lists", "training:\n  event_weights: {view: [1]}\n", nil, nil, []string{":2:", "want kind: weight pairs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append(args, "--config", writeFile(t, tt.file))
			}
			_, err := resolve(t, args, tt.env)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	base := []string{"--id", "a", "--data-dir", "d", "--bootstrap", "--items", "50"}
	tests := []struct {
		name string
		file string
		args []string
		env  map[string]string
		want string // "" for valid
	}{
		{"valid", "", base, nil, ""},
		{"valid with a data set and no items", "", []string{"--id", "a", "--data-dir", "d", "--bootstrap", "--dataset", "ml-latest-small"}, nil, ""},
		{"noise with a data set and no population", "", []string{"--id", "a", "--data-dir", "d", "--bootstrap", "--dataset", "ml-latest-small", "--noise-multiplier", "1", "--clip", "0.5"}, nil, ""},
		{"noise without a population", "", append(base, "--noise-multiplier", "1", "--clip", "0.5"), nil, "training.population (--population, FEDREC_POPULATION; from default)"},
		{"follower ignores training", "", []string{"--id", "a", "--data-dir", "d", "--join", "x:1", "--min-clients", "0"}, nil, ""},
		{"no id", "", []string{"--data-dir", "d"}, nil, "id (--id, FEDREC_ID; from default)"},
		{"no data dir", "", []string{"--id", "a"}, nil, "data_dir (--data-dir, FEDREC_DATA_DIR; from default): required"},
		{"bad log level", "", append(base, "--log-level", "loud"), nil, "log_level"},
		{"admin without token", "", append(base, "--admin-addr", ":9001"), nil, "admin_token (--admin-token, FEDREC_ADMIN_TOKEN"},
		{"read token without admin", "", base, map[string]string{"FEDREC_READ_TOKEN": "r"}, "read_token (--read-token, FEDREC_READ_TOKEN; from env FEDREC_READ_TOKEN): set without admin_addr"},
		{"read token equal to admin token", "", append(base, "--admin-addr", ":9001"), map[string]string{"FEDREC_ADMIN_TOKEN": "same", "FEDREC_READ_TOKEN": "same"}, "read_token (--read-token, FEDREC_READ_TOKEN; from env FEDREC_READ_TOKEN): equals the admin token"},
		{"admin and read tokens", "", append(base, "--admin-addr", ":9001"), map[string]string{"FEDREC_ADMIN_TOKEN": "a", "FEDREC_READ_TOKEN": "r"}, ""},
		{"bootstrap and join", "", append(base, "--join", "x:1"), nil, "join (--join, FEDREC_JOIN; from flag --join)"},
		{"no items", "", []string{"--id", "a", "--data-dir", "d", "--bootstrap"}, nil, "training.items (--items, FEDREC_ITEMS; from default): coordinator: Training.Items = 0"},
		{"min clients from the file", "training:\n  min_clients: 500\n", base, nil, "training.min_clients (--min-clients, FEDREC_MIN_CLIENTS; from "},
		{"clip from env", "", base, map[string]string{"FEDREC_CLIP": "-1"}, "training.clip (--clip, FEDREC_CLIP; from env FEDREC_CLIP): coordinator: Training.Clip = -1"},
		{"client lr", "", append(base, "--lr", "0"), nil, "training.lr (--lr, FEDREC_LR; from flag --lr): model: TrainConfig.LR = 0"},
		{"server optimizer", "", append(base, "--server-opt", "sgd"), nil, "training.server_opt (--server-opt, FEDREC_SERVER_OPT; from flag --server-opt)"},
		{"server lr", "", append(base, "--server-lr", "-1"), nil, "training.server_lr"},
		{"secagg needs clip", "", append(base, "--secagg"), nil, "training.clip (--clip, FEDREC_CLIP; from default): coordinator: Training.Clip = 0, want > 0 with SecAgg"},
		{"bad dp", "", append(base, "--dp", "local"), nil, "training.dp (--dp, FEDREC_DP; from flag --dp)"},
		{"signed secagg", "", append(base, "--secagg", "--clip", "1", "--min-clients", "5", "--secagg-signed", "--secagg-colluders", "2"), nil, ""},
		{"signed needs secagg", "", append(base, "--secagg-signed"), nil, "training.secagg_signed (--secagg-signed, FEDREC_SECAGG_SIGNED; from flag --secagg-signed)"},
		{"roster needs signed", "", append(base, "--secagg", "--clip", "1", "--secagg-roster"), nil, "training.secagg_roster (--secagg-roster, FEDREC_SECAGG_ROSTER; from flag --secagg-roster)"},
		{"signed roster", "", append(base, "--secagg", "--clip", "1", "--secagg-signed", "--secagg-roster"), nil, ""},
		{"colluders need signed", "", append(base, "--secagg", "--clip", "1", "--secagg-colluders", "1"), map[string]string{}, "training.secagg_colluders (--secagg-colluders, FEDREC_SECAGG_COLLUDERS; from flag --secagg-colluders)"},
		{"too many colluders", "", append(base, "--secagg", "--clip", "1", "--min-clients", "5", "--secagg-signed"), map[string]string{"FEDREC_SECAGG_COLLUDERS": "3"}, "training.secagg_colluders (--secagg-colluders, FEDREC_SECAGG_COLLUDERS; from env FEDREC_SECAGG_COLLUDERS)"},
		{"distributed needs secagg", "", append(base, "--dp", "distributed", "--noise-multiplier", "1", "--clip", "1", "--population", "100"), nil, "training.secagg"},
		{"adaptive clip needs a clip", "", append(base, "--adaptive-clip"), nil, "training.clip"},
		{"clip quantile without adaptive clip", "", append(base, "--clip-quantile", "0.3"), nil, "training.adaptive_clip"},
		{"valid adaptive clip with central noise", "", append(base, "--adaptive-clip", "--clip", "1", "--noise-multiplier", "1", "--population", "1000", "--dp", "central"), nil, ""},
		{"implicit", "", append(base, "--objective", "implicit"), nil, ""},
		{"implicit with its settings", "", append(base, "--objective", "implicit", "--alpha", "40", "--event-weights", "view=1,click=2,cart=4,purchase=8"), nil, ""},
		{"implicit from a data set", "", []string{"--id", "a", "--data-dir", "d", "--bootstrap", "--dataset", "ml-latest-small", "--objective", "implicit"}, nil, ""},
		{"bad objective", "", append(base, "--objective", "ratings"), nil, `training.objective (--objective, FEDREC_OBJECTIVE; from flag --objective): "ratings", want explicit or implicit`},
		{"bad objective on a follower", "", []string{"--id", "a", "--data-dir", "d", "--join", "x:1", "--objective", "both"}, nil, "training.objective"},
		{"event weights with explicit", "", append(base, "--event-weights", "purchase=20"), nil,
			"training.event_weights (--event-weights, FEDREC_EVENT_WEIGHTS; from flag --event-weights): view=1,click=2,cart=4,purchase=20 with objective explicit: event weights apply only to --objective implicit"},
		{"default event weights flag with explicit", "", append(base, "--event-weights", "view=1,click=2,cart=4,purchase=8"), nil, "training.event_weights"},
		{"event weights from env with explicit", "", base, map[string]string{"FEDREC_EVENT_WEIGHTS": "view=2"}, "training.event_weights (--event-weights, FEDREC_EVENT_WEIGHTS; from env FEDREC_EVENT_WEIGHTS)"},
		{"event weights from the file with explicit", "training:\n  event_weights: view=2\n", base, nil, "training.event_weights"},
		{"default settings of implicit in the file with explicit", "training:\n  objective: explicit\n  alpha: 10\n  event_weights: view=1,click=2,cart=4,purchase=8\n", base, nil, ""},
		{"alpha with explicit", "", append(base, "--alpha", "40"), nil, "training.alpha (--alpha, FEDREC_ALPHA; from flag --alpha): 40 with objective explicit"},
		{"mean with implicit", "", append(base, "--objective", "implicit", "--mean", "3.5"), nil, "training.mean (--mean, FEDREC_MEAN; from flag --mean): 3.5 with objective implicit"},
		{"negative event weight", "", append(base, "--objective", "implicit", "--event-weights", "view=-1"), nil,
			"training.event_weights (--event-weights, FEDREC_EVENT_WEIGHTS; from flag --event-weights): coordinator: Training.Events = view=-1,click=2,cart=4,purchase=8, want finite weights >= 0"},
		{"negative alpha", "", append(base, "--objective", "implicit", "--alpha", "-1"), nil, "training.alpha (--alpha, FEDREC_ALPHA; from flag --alpha): model: TrainConfig.Alpha = -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append(args, "--config", writeFile(t, tt.file))
			}
			c, err := resolve(t, args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			err = c.validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// fedrec config prints YAML that reads back as the same configuration,
// and JSON for scripts; it exits 1 on an invalid configuration.
func TestConfigCommand(t *testing.T) {
	file := writeFile(t, "id: a\ndata_dir: /d\nbootstrap: true\ntraining:\n  items: 40\n  clip: 0.25\n")
	t.Setenv("FEDREC_ADMIN_TOKEN", "s3cret")
	t.Setenv("FEDREC_CONFIG", "")
	t.Setenv("FEDREC_KEEP_MODELS", "7")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"config", "--config", file, "--rank", "16", "--join", ""}, &out, &errb); err != nil {
		t.Fatalf("fedrec config: %v\n%s", err, errb.String())
	}
	y := out.String()
	for _, want := range []string{"clip: 0.25 # from " + file + ":6", "rank: 16 # from flag --rank", "keep_models: 7 # from env FEDREC_KEEP_MODELS", "admin token: set, from env FEDREC_ADMIN_TOKEN", "checkin_window: 2s\n"} {
		if !strings.Contains(y, want) {
			t.Errorf("YAML lacks %q:\n%s", want, y)
		}
	}
	if strings.Contains(y, "s3cret") {
		t.Error("fedrec config printed the admin token")
	}
	// The output is a configuration file that gives the same values.
	again, err := resolve(t, []string{"--config", writeFile(t, y)}, nil)
	if err != nil {
		t.Fatalf("the printed YAML does not read back: %v\n%s", err, y)
	}
	orig, _ := resolve(t, []string{"--config", file, "--rank", "16"}, map[string]string{"FEDREC_KEEP_MODELS": "7"})
	again.src, orig.src, again.file, orig.file = nil, nil, "", ""
	if a, b := again.jsonValue(), orig.jsonValue(); !jsonEqual(a, b) {
		t.Errorf("read back %v, want %v", a, b)
	}

	// So does an implicit configuration, its event weights as one value.
	out.Reset()
	if err := run(t.Context(), []string{"config", "--config", file, "--objective", "implicit", "--event-weights", "cart=5,purchase=20", "--alpha", "40"}, &out, &errb); err != nil {
		t.Fatalf("fedrec config (implicit): %v\n%s", err, errb.String())
	}
	if y := out.String(); !strings.Contains(y, "event_weights: view=1,click=2,cart=5,purchase=20 # from flag --event-weights") || !strings.Contains(y, "objective: implicit # from flag --objective") {
		t.Errorf("YAML lacks the implicit settings:\n%s", y)
	}
	imp, err := resolve(t, []string{"--config", writeFile(t, out.String())}, nil)
	if err != nil || imp.validate() != nil {
		t.Fatalf("the printed implicit YAML does not read back: %v, %v\n%s", err, imp.validate(), out.String())
	}
	if tr := imp.training(); tr.Kind != model.Implicit || tr.Train.Alpha != 40 || tr.Events != (coordinator.EventWeights{View: 1, Click: 2, Cart: 5, Purchase: 20}) {
		t.Errorf("read back %v, alpha %v, events %v", tr.Kind, tr.Train.Alpha, tr.Events)
	}

	out.Reset()
	if err := run(t.Context(), []string{"config", "--config", file, "--json"}, &out, &errb); err != nil {
		t.Fatalf("fedrec config --json: %v", err)
	}
	var js struct {
		ID       string `json:"id"`
		Token    bool   `json:"admin_token_set"`
		Training struct {
			Clip          float64 `json:"clip"`
			CheckInWindow string  `json:"checkin_window"`
			KeepModels    int     `json:"keep_models"`
		} `json:"training"`
	}
	if err := json.Unmarshal(out.Bytes(), &js); err != nil || js.ID != "a" || !js.Token || js.Training.Clip != 0.25 || js.Training.CheckInWindow != "2s" || js.Training.KeepModels != 7 {
		t.Errorf("config --json = %+v, %v\n%s", js, err, out.String())
	}

	out.Reset()
	err = run(t.Context(), []string{"config", "--config", file, "--min-clients", "1000"}, &out, &errb)
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "training.min_clients") || out.Len() == 0 {
		t.Errorf("invalid config = %v (printed %d bytes), want exit 1 naming training.min_clients", err, out.Len())
	}
	if err := run(t.Context(), []string{"config", "stray"}, &out, &errb); !errors.Is(err, errUsage) {
		t.Errorf("config stray = %v, want errUsage", err)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// Every setting has a flag, and docs/configuration.md names its key, flag
// and variable.
func TestConfigDocumented(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	bindConfig(fs, defaultNodeConfig())
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := settingByFlag(f.Name); !ok {
			t.Errorf("flag --%s is not a setting", f.Name)
		}
	})
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if fs.Lookup(s.flag) == nil {
			t.Errorf("setting %s has no flag", s.flag)
		}
		for _, name := range []string{"`" + s.key() + "`", "`--" + s.flag + "`", "`" + s.env() + "`"} {
			if !bytes.Contains(doc, []byte(name)) {
				t.Errorf("docs/configuration.md does not mention %s", name)
			}
		}
	}
}

// A FEDREC_ variable that is no setting is refused, with the setting it
// probably meant.
func TestConfigUnknownEnv(t *testing.T) {
	if err := checkEnvNames([]string{"FEDREC_MIN_CLIENTS=3", "FEDREC_CONFIG=x.yaml", "PATH=/bin", "FEDREC_ARGS=--id n1"}); err != nil {
		t.Errorf("checkEnvNames(known) = %v", err)
	}
	err := checkEnvNames([]string{"FEDREC_NOISE_MULTIPLER=1"})
	if err == nil || !strings.Contains(err.Error(), "FEDREC_NOISE_MULTIPLER") || !strings.Contains(err.Error(), "did you mean FEDREC_NOISE_MULTIPLIER?") {
		t.Errorf("checkEnvNames(typo) = %v", err)
	}
	t.Setenv("FEDREC_MIN_CLENTS", "3")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"config", "--id", "a", "--data-dir", "a"}, &out, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "FEDREC_MIN_CLENTS") {
		t.Errorf("fedrec config with FEDREC_MIN_CLENTS set = %v", err)
	}
}
