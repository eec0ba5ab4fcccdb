package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func settingsOf(t store.Training) wire.TrainingSettings {
	st := wire.TrainingSettings{
		Objective: t.Kind.String(), Items: t.Items, Rank: t.Rank, Clip: t.Clip, Population: t.Population,
		Noise: t.NoiseMode().String(), SecAgg: t.SecAgg,
		ClientsPerRound: t.ClientsPerRound, MinClients: t.MinClients,
		CheckInWindow: t.CheckInWindow.String(), RoundTimeout: t.RoundTimeout.String(), NoiseMultiplier: t.NoiseMultiplier,
	}
	if t.SecAgg {
		st.SecAggPhase = t.SecAggPhase.String()
	}
	return st
}

func changeOf(c wire.TrainingChange) wire.TrainingChangeJSON {
	x := c.Change
	set := map[string]any{}
	ms := func(v int64) string { return (time.Duration(v) * time.Millisecond).String() }
	for _, f := range []struct {
		key string
		on  bool
		v   any
	}{
		{"clients_per_round", x.ClientsPerRound != 0, x.ClientsPerRound},
		{"min_clients", x.MinClients != 0, x.MinClients},
		{"checkin_window", x.CheckInWindowMs != 0, ms(x.CheckInWindowMs)},
		{"round_timeout", x.RoundTimeoutMs != 0, ms(x.RoundTimeoutMs)},
		{"secagg_phase", x.SecAggPhaseMs != 0, ms(x.SecAggPhaseMs)},
		{"noise_multiplier", x.NoiseMultiplier != 0, x.NoiseMultiplier},
	} {
		if f.on {
			set[f.key] = f.v
		}
	}
	return wire.TrainingChangeJSON{AfterRound: c.AfterRound, Time: time.UnixMilli(x.TimeMs).UTC(), Operator: x.Operator, Reason: x.Reason, Set: set}
}

func (a *Server) trainingDoc() wire.TrainingDoc {
	var doc wire.TrainingDoc
	a.n.View(func(s *store.State) {
		t, _ := s.Config()
		doc.Settings = settingsOf(t)
		doc.Changes = []wire.TrainingChangeJSON{}
		for _, c := range s.Changes() {
			doc.Changes = append(doc.Changes, changeOf(c))
		}
	})
	return doc
}

func (a *Server) training(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.trainingDoc())
}

// changeTraining serves POST /v1/training?KEY=VALUE…&operator=…&reason=…
// with the keys of TrainingSettings that may change; a reason is required.
func (a *Server) changeTraining(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var c wire.ChangeTraining
	var errs []error
	for key := range q {
		v := q.Get(key)
		var err error
		switch key {
		case "clients_per_round":
			c.ClientsPerRound, err = strconv.Atoi(v)
		case "min_clients":
			c.MinClients, err = strconv.Atoi(v)
		case "checkin_window", "round_timeout", "secagg_phase":
			var d time.Duration
			if d, err = time.ParseDuration(v); err == nil && d < time.Millisecond {
				err = errors.New("want at least 1ms")
			}
			*map[string]*int64{"checkin_window": &c.CheckInWindowMs, "round_timeout": &c.RoundTimeoutMs, "secagg_phase": &c.SecAggPhaseMs}[key] = d.Milliseconds()
		case "noise_multiplier":
			c.NoiseMultiplier, err = strconv.ParseFloat(v, 64)
		case "operator":
			c.Operator = v
		case "reason":
			c.Reason = v
		default:
			err = errors.New("not a setting that may change (clients_per_round, min_clients, checkin_window, round_timeout, secagg_phase, noise_multiplier)")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", key, v, err))
		}
	}
	if c.Reason == "" {
		errs = append(errs, errors.New("reason: required (it goes into the audit trail)"))
	}
	if err := errors.Join(errs...); err != nil {
		a.clusterError(w, http.StatusBadRequest, err)
		return
	}
	if _, err := a.n.ChangeTraining(c); err != nil {
		code := 0
		if errors.Is(err, store.ErrBadCommand) {
			code = http.StatusBadRequest
		}
		a.clusterError(w, code, err)
		return
	}
	writeJSON(w, a.trainingDoc())
}
