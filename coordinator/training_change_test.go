package coordinator

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

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
