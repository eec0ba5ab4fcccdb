package store_test

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/store/storetest"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func TestTrainingEventsValidate(t *testing.T) {
	custom := store.EventWeights{View: 0.5, Cart: 3, Purchase: 10}
	tests := []struct {
		name  string
		tr    store.Training
		want  store.EventWeights // after the defaults
		field string             // "" = valid
	}{
		{"explicit has none", storetest.Training(), store.EventWeights{}, ""},
		{"implicit defaults", storetest.Implicit(store.EventWeights{}), store.DefaultEventWeights(), ""},
		{"implicit custom", storetest.Implicit(custom), custom, ""},
		{"explicit with weights", func() store.Training { tr := storetest.Training(); tr.Events = custom; return tr }(), custom, "Training.Events"},
		{"negative", storetest.Implicit(store.EventWeights{View: -1, Purchase: 8}), store.EventWeights{View: -1, Purchase: 8}, "Training.Events"},
		{"nan", storetest.Implicit(store.EventWeights{Click: math.NaN()}), store.EventWeights{Click: math.NaN()}, "Training.Events"},
		{"inf", storetest.Implicit(store.EventWeights{Cart: math.Inf(1)}), store.EventWeights{Cart: math.Inf(1)}, "Training.Events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tr.Events; got.String() != tt.want.String() {
				t.Errorf("Events = %v, want %v", got, tt.want)
			}
			err := tt.tr.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestParseEventWeights(t *testing.T) {
	tests := []struct {
		in   string
		want string // String() of the result; "" = an error
	}{
		{"view=1,click=2,cart=4,purchase=8", "view=1,click=2,cart=4,purchase=8"},
		{"purchase=20", "view=1,click=2,cart=4,purchase=20"},
		{" Cart = 0.5 , view=0 ", "view=0,click=2,cart=0.5,purchase=8"},
		{"purchase=1e3", "view=1,click=2,cart=4,purchase=1000"},
		{"", ""},
		{"rating=5", ""},
		{"view", ""},
		{"view=x", ""},
		{"view=1,view=2", ""},
		{"view=1,", ""},
		{"view=0,click=0,cart=0,purchase=0", ""},
	}
	for _, tt := range tests {
		w, err := store.ParseEventWeights(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("store.ParseEventWeights(%q) = %v, want an error", tt.in, w)
		case tt.want != "" && (err != nil || w.String() != tt.want):
			t.Errorf("store.ParseEventWeights(%q) = %v, %v; want %s", tt.in, w, err, tt.want)
		}
	}
	if w, err := store.ParseEventWeights(store.DefaultEventWeights().String()); err != nil || w != store.DefaultEventWeights() {
		t.Errorf("store.ParseEventWeights(store.DefaultEventWeights().String()) = %v, %v", w, err)
	}
}

// An implicit cluster's event weights go through the log and snapshots
// into every node's state and into its plans' training parameters; a
// configuration written without them means the defaults.
func TestEventWeightsReplicated(t *testing.T) {
	custom := store.EventWeights{View: 0.5, Click: 1, Cart: 3, Purchase: 10}
	tr := storetest.Implicit(custom)
	f := storetest.NewFSM()
	for i, c := range storetest.InitCommands(t, tr) {
		if res := storetest.Apply(t, f, uint64(i+1), c); res != nil {
			t.Fatalf("apply %T: %v", c, res)
		}
	}
	cfg, _ := f.State().Config()
	if cfg.Events != custom {
		t.Errorf("replicated Events = %v, want %v", cfg.Events, custom)
	}
	if p := cfg.TrainParams(); p.Events == nil || *p.Events != custom.ToWire() || p.Alpha != tr.Train.Alpha {
		t.Errorf("plan training parameters %+v, want the events %v", p, custom)
	}
	var buf bytes.Buffer
	if err := f.State().WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	st, err := store.ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Config(); got.Events != custom {
		t.Errorf("Events after a snapshot = %v, want %v", got.Events, custom)
	}

	old := tr.ToWire()
	old.Train.Events = nil
	got, err := store.TrainingFromWire(&old)
	if err != nil || got.Events != store.DefaultEventWeights() {
		t.Errorf("implicit configuration without events = %v, %v; want the defaults", got.Events, err)
	}
	if w := storetest.Training().ToWire(); w.Train.Events != nil {
		t.Errorf("explicit configuration carries events %+v", *w.Train.Events)
	}
	bad := tr.ToWire()
	bad.Train.Events = &wire.EventWeights{}
	if err, _ := store.NewState().Apply(&wire.SetConfig{Config: bad}).(error); err == nil {
		t.Error("SetConfig with all-zero event weights accepted")
	}
}
