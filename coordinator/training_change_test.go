package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

func TestStateChangeTraining(t *testing.T) {
	noisy := testTraining()
	noisy.NoiseMultiplier, noisy.Clip = 1, 0.5
	tests := []struct {
		name  string
		base  Training
		c     wire.ChangeTraining
		check func(t Training) bool // nil: refused
	}{
		{"nothing", testTraining(), wire.ChangeTraining{Operator: "a", Reason: "r"}, nil},
		{"negative", testTraining(), wire.ChangeTraining{ClientsPerRound: -1}, nil},
		{"NaN noise", noisy, wire.ChangeTraining{NoiseMultiplier: math.NaN()}, nil},
		{"infinite noise", noisy, wire.ChangeTraining{NoiseMultiplier: math.Inf(1)}, nil},
		{"noise on", testTraining(), wire.ChangeTraining{NoiseMultiplier: 1}, nil},
		{"secagg phase without secagg", testTraining(), wire.ChangeTraining{SecAggPhaseMs: 5000}, nil},
		{"min above cohort", testTraining(), wire.ChangeTraining{MinClients: 4}, nil},
		{"long reason", testTraining(), wire.ChangeTraining{MinClients: 1, Reason: string(make([]byte, maxReasonLen+1))}, nil},
		{"cohort", testTraining(), wire.ChangeTraining{ClientsPerRound: 5, MinClients: 4}, func(t Training) bool { return t.ClientsPerRound == 5 && t.MinClients == 4 }},
		{"deadlines", testTraining(), wire.ChangeTraining{CheckInWindowMs: 10, RoundTimeoutMs: 9000}, func(t Training) bool {
			return t.CheckInWindow == 10*time.Millisecond && t.RoundTimeout == 9*time.Second
		}},
		{"more noise", noisy, wire.ChangeTraining{NoiseMultiplier: 1.5}, func(t Training) bool { return t.NoiseMultiplier == 1.5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState()
			for _, c := range initCommands(t, tt.base) {
				if err, ok := s.Apply(c).(error); ok {
					t.Fatal(err)
				}
			}
			s.lastRound = 4
			err, _ := s.Apply(&tt.c).(error)
			got, _ := s.Config()
			if tt.check == nil {
				if !errors.Is(err, ErrBadCommand) || got != tt.base || len(s.Changes()) != 0 {
					t.Fatalf("Apply = %v, config changed %v, %d changes; want a refusal that changes nothing", err, got != tt.base, len(s.Changes()))
				}
				return
			}
			if err != nil || !tt.check(got) {
				t.Fatalf("Apply = %v, config %+v", err, got)
			}
			if ch := s.Changes(); len(ch) != 1 || ch[0].AfterRound != 4 || ch[0].Change != tt.c {
				t.Errorf("changes = %+v", ch)
			}
			// The change and the settings it made survive a snapshot.
			var buf bytes.Buffer
			if err := s.WriteSnapshot(&buf); err != nil {
				t.Fatal(err)
			}
			r, err := ReadSnapshot(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if rc, _ := r.Config(); rc != got || !reflect.DeepEqual(r.Changes(), s.Changes()) {
				t.Errorf("after a snapshot: config %+v, changes %+v", rc, r.Changes())
			}
		})
	}
}

// An operator changes the cohort size through the admin API; the next
// rounds select the new number of clients, every node holds the change
// and its audit trail, and a bad change is refused with the reason.
func TestAdminChangeTraining(t *testing.T) {
	c := newAdminCluster(t, 3, testTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	l := c.leader(ctx)
	var follower *Node
	for _, n := range c.nodes {
		if n != l {
			follower = n
		}
	}
	post := func(n *Node, q url.Values, tok string) (int, []byte) {
		return c.do(n, "POST", "/v1/training?"+q.Encode(), tok)
	}
	for _, tt := range []struct {
		name string
		n    *Node
		q    url.Values
		tok  string
		code int
	}{
		{"read-only token", l, url.Values{"clients_per_round": {"2"}, "reason": {"x"}}, testReadToken, http.StatusForbidden},
		{"no reason", l, url.Values{"clients_per_round": {"2"}}, testToken, http.StatusBadRequest},
		{"unknown setting", l, url.Values{"rank": {"8"}, "reason": {"x"}}, testToken, http.StatusBadRequest},
		{"not a number", l, url.Values{"clients_per_round": {"many"}, "reason": {"x"}}, testToken, http.StatusBadRequest},
		{"bad duration", l, url.Values{"round_timeout": {"soon"}, "reason": {"x"}}, testToken, http.StatusBadRequest},
		{"noise on a cluster without noise", l, url.Values{"noise_multiplier": {"1"}, "reason": {"x"}}, testToken, http.StatusBadRequest},
		{"invalid result", l, url.Values{"min_clients": {"9"}, "reason": {"x"}}, testToken, http.StatusBadRequest},
		{"follower", follower, url.Values{"clients_per_round": {"2"}, "reason": {"x"}}, testToken, http.StatusConflict},
	} {
		if code, body := post(tt.n, tt.q, tt.tok); code != tt.code {
			t.Errorf("%s: POST /v1/training = %d %s, want %d", tt.name, code, body, tt.code)
		}
	}

	code, body := post(l, url.Values{"clients_per_round": {"2"}, "round_timeout": {"3s"}, "operator": {"alice"}, "reason": {"fewer devices at night"}}, testToken)
	var doc wire.TrainingDoc
	if err := json.Unmarshal(body, &doc); code != http.StatusOK || err != nil {
		t.Fatalf("POST /v1/training = %d %s", code, body)
	}
	if doc.Settings.ClientsPerRound != 2 || doc.Settings.RoundTimeout != "3s" || len(doc.Changes) != 1 {
		t.Fatalf("after the change: %+v", doc)
	}
	ch := doc.Changes[0]
	if ch.Operator != "alice" || ch.Reason != "fewer devices at night" || ch.Set["clients_per_round"] != float64(2) || ch.Set["round_timeout"] != "3s" || time.Since(ch.Time) > time.Minute {
		t.Errorf("audit entry %+v", ch)
	}
	// Every node holds it, readable with the read-only token.
	c.waitAll(ctx, func(s *State) bool { return len(s.Changes()) == 1 })
	for _, n := range c.nodes {
		code, body := c.do(n, "GET", "/v1/training", testReadToken)
		var d wire.TrainingDoc
		if err := json.Unmarshal(body, &d); code != http.StatusOK || err != nil || !reflect.DeepEqual(d, doc) {
			t.Errorf("%s: GET /v1/training = %d %s, want %+v", n.ID(), code, body, doc)
		}
	}
	// Rounds opened from now on select two clients (plus over-selection).
	var last uint64
	l.View(func(s *State) { last = s.LastRound() })
	c.runRounds(ctx, 4)
	l = c.leader(ctx)
	l.View(func(s *State) {
		for _, r := range s.Rounds() {
			if r.Round > last+1 && r.Cohort > 3 {
				t.Errorf("round %d selected %d clients after the cohort went to 2", r.Round, r.Cohort)
			}
		}
	})
}
