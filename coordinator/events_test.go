package coordinator

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

func implicitTraining(events EventWeights) Training {
	tr := testTraining()
	tr.Kind, tr.Mean, tr.Events = model.Implicit, 0, events
	return tr.withDefaults()
}

func TestTrainingEventsValidate(t *testing.T) {
	custom := EventWeights{View: 0.5, Cart: 3, Purchase: 10}
	tests := []struct {
		name  string
		tr    Training
		want  EventWeights // after the defaults
		field string       // "" = valid
	}{
		{"explicit has none", testTraining(), EventWeights{}, ""},
		{"implicit defaults", implicitTraining(EventWeights{}), DefaultEventWeights(), ""},
		{"implicit custom", implicitTraining(custom), custom, ""},
		{"explicit with weights", func() Training { tr := testTraining(); tr.Events = custom; return tr }(), custom, "Training.Events"},
		{"negative", implicitTraining(EventWeights{View: -1, Purchase: 8}), EventWeights{View: -1, Purchase: 8}, "Training.Events"},
		{"nan", implicitTraining(EventWeights{Click: math.NaN()}), EventWeights{Click: math.NaN()}, "Training.Events"},
		{"inf", implicitTraining(EventWeights{Cart: math.Inf(1)}), EventWeights{Cart: math.Inf(1)}, "Training.Events"},
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
		w, err := ParseEventWeights(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseEventWeights(%q) = %v, want an error", tt.in, w)
		case tt.want != "" && (err != nil || w.String() != tt.want):
			t.Errorf("ParseEventWeights(%q) = %v, %v; want %s", tt.in, w, err, tt.want)
		}
	}
	if w, err := ParseEventWeights(DefaultEventWeights().String()); err != nil || w != DefaultEventWeights() {
		t.Errorf("ParseEventWeights(DefaultEventWeights().String()) = %v, %v", w, err)
	}
}

// An implicit cluster's event weights go through the log and snapshots
// into every node's state and into its plans' training parameters; a
// configuration written without them means the defaults.
func TestEventWeightsReplicated(t *testing.T) {
	custom := EventWeights{View: 0.5, Click: 1, Cart: 3, Purchase: 10}
	tr := implicitTraining(custom)
	f := newFSM()
	for i, c := range initCommands(t, tr) {
		if res := fsmApply(t, f, uint64(i+1), c); res != nil {
			t.Fatalf("apply %T: %v", c, res)
		}
	}
	cfg, _ := f.st.Config()
	if cfg.Events != custom {
		t.Errorf("replicated Events = %v, want %v", cfg.Events, custom)
	}
	if p := cfg.trainParams(); p.Events == nil || *p.Events != custom.toWire() || p.Alpha != tr.Train.Alpha {
		t.Errorf("plan training parameters %+v, want the events %v", p, custom)
	}
	var buf bytes.Buffer
	if err := f.st.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	st, err := ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Config(); got.Events != custom {
		t.Errorf("Events after a snapshot = %v, want %v", got.Events, custom)
	}

	old := tr.toWire()
	old.Train.Events = nil
	got, err := trainingFromWire(&old)
	if err != nil || got.Events != DefaultEventWeights() {
		t.Errorf("implicit configuration without events = %v, %v; want the defaults", got.Events, err)
	}
	if w := testTraining().toWire(); w.Train.Events != nil {
		t.Errorf("explicit configuration carries events %+v", *w.Train.Events)
	}
	bad := tr.toWire()
	bad.Train.Events = &wire.EventWeights{}
	if err, _ := NewState().Apply(&wire.SetConfig{Config: bad}).(error); err == nil {
		t.Error("SetConfig with all-zero event weights accepted")
	}
}
