package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), nil, &out, &errb); !errors.Is(err, errUsage) {
		t.Errorf("run() = %v, want errUsage", err)
	}
	if err := run(t.Context(), []string{"nope"}, &out, &errb); !errors.Is(err, errUsage) || !strings.Contains(errb.String(), `unknown command "nope"`) {
		t.Errorf("run(nope) = %v, stderr %q", err, errb.String())
	}
}

func TestSimCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var out, errb bytes.Buffer
	args := []string{"--users", "120", "--items", "60", "--rounds", "6", "--eval-every", "3", "--clients-per-round", "20", "--rank", "4", "--out", dir}
	if err := run(t.Context(), append([]string{"sim"}, args...), &out, &errb); err != nil {
		t.Fatalf("fedrec sim: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"federated (round 6)", "centralized iALS", "EASE", "most popular", "Recall@20", "catalogue@10", "× most popular's", "peak heap"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errb.String(), "round 3/6") {
		t.Errorf("progress lacks plain round lines:\n%s", errb.String())
	}
	for _, f := range []string{"metrics.csv", "summary.json", "ndcg_at_10.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	err := run(t.Context(), []string{"sim", "--data", "ml-1m", "--data-dir", t.TempDir()}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "ratings.dat") {
		t.Errorf("sim on a missing ml-1m = %v, want a message naming ratings.dat", err)
	}
}

// Flags that do not apply are refused, never ignored.
func TestSimRefusesMeaninglessFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--objective", "explicit", "--alpha", "2"}, "Alpha"},
		{[]string{"--implicit", "--objective", "explicit"}, "contradicts"},
		{[]string{"--objective", "ranking"}, "Objective"},
		{[]string{"--train", "a.csv"}, "both or neither"},
		{[]string{"--train", "a.csv", "--test", "b.csv", "--data", "ml-latest-small"}, "--data does not apply"},
		{[]string{"--train", "a.csv", "--test", "b.csv", "--split", "time"}, "--split does not apply"},
		{[]string{"--split", "time"}, "timestamps"},
		{[]string{"--split", "sideways"}, "Split"},
		{[]string{"--ease", "off", "--ease-lambda", "100"}, "--ease-lambda"},
		{[]string{"--ease", "maybe"}, "--ease"},
		{[]string{"--data", "ml-latest-small", "--users", "10"}, "only apply to --data synthetic"},
		{[]string{"--coordinators", "127.0.0.1:1", "--split", "time"}, "--coordinators"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(t.Context(), append([]string{"sim", "--quiet", "--rounds", "1"}, tt.args...), &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("fedrec sim %v = %v, want an error mentioning %q", tt.args, err, tt.want)
			}
		})
	}
}

// fedrec sim --train --test evaluates on a split made elsewhere and says
// how many test rows it could not score.
func TestSimTrainTestFiles(t *testing.T) {
	dir := t.TempDir()
	var train, test strings.Builder
	train.WriteString("user,item,rating\n")
	for u := range 40 {
		for i := range 12 {
			if (u+i)%3 != 0 {
				fmt.Fprintf(&train, "u%d,i%d,%d\n", u, (u/4+i)%20, 1+i%5)
			}
		}
		fmt.Fprintf(&test, "u%d,i%d,5\n", u, (u/4+13)%20)
	}
	test.WriteString("stranger,i1,5\nu1,unknown-item,4\n")
	trainPath, testPath := filepath.Join(dir, "train.csv"), filepath.Join(dir, "test.csv")
	if err := os.WriteFile(trainPath, []byte(train.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(testPath, []byte(test.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	args := []string{"sim", "--quiet", "--train", trainPath, "--test", testPath, "--rounds", "4", "--eval-every", "2", "--clients-per-round", "10", "--rank", "4"}
	if err := run(t.Context(), args, &out, &errb); err != nil {
		t.Fatalf("fedrec sim --train --test: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"data: train (implicit feedback), 40 users", "files split", "dropped", "federated (round 4)", "most popular"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPrivacyCommand(t *testing.T) {
	tests := []struct {
		args    []string
		field   string
		want    float64
		wantErr bool
	}{
		// TF Privacy's compute_dp_sgd_privacy reference (N=60000, batch 256,
		// 60 epochs, z=1.1), with the improved RDP-to-DP conversion.
		{args: []string{"--sampling-rate", "0.004266666666666667", "--noise-multiplier", "1.1", "--rounds", "14062", "--delta", "1e-5"}, field: "epsilon", want: 2.6},
		{args: []string{"--sampling-rate", "0.01", "--target-epsilon", "4", "--rounds", "300"}, field: "epsilon", want: 4},
		{args: []string{"--sampling-rate", "0.01", "--rounds", "300"}, wantErr: true},
		{args: []string{"--sampling-rate", "1.5", "--noise-multiplier", "1", "--rounds", "3"}, wantErr: true},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"privacy", "--json"}, tt.args...), &out, &errb)
		if tt.wantErr {
			if err == nil {
				t.Errorf("privacy %v succeeded, want an error", tt.args)
			}
			continue
		}
		if err != nil {
			t.Fatalf("privacy %v: %v", tt.args, err)
		}
		var got map[string]float64
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if d := got[tt.field] - tt.want; d > 0.005 || d < -0.005 {
			t.Errorf("privacy %v: %s = %v, want %v", tt.args, tt.field, got[tt.field], tt.want)
		}
		if _, ok := got["noise_multiplier"]; !ok {
			t.Errorf("JSON lacks noise_multiplier: %s", out.String())
		}
	}
}

// fedrec bench's secure-round flags are refused without --secagg (and a
// negative phase always), before any node starts.
func TestBenchSecureFlagsNeedSecAgg(t *testing.T) {
	for _, args := range [][]string{
		{"--signed"},
		{"--secagg-phase", "30s"},
		{"--secagg", "--secagg-phase", "-1s"},
	} {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"bench", "--clients", "3"}, args...), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "--secagg") {
			t.Errorf("fedrec bench %v = %v, want an error naming --secagg", args, err)
		}
	}
	for _, args := range [][]string{{"--roster=false"}, {"--secagg", "--roster"}} {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"bench", "--clients", "3"}, args...), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "--roster applies only with --signed") {
			t.Errorf("fedrec bench %v = %v, want an error naming --roster", args, err)
		}
	}
}
