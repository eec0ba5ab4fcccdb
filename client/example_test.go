package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math"
	"os"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/model"
)

// A release as the coordinator ships it: a tiny explicit model over four
// books and its item catalogue. Books 0 and 1 are novels, 2 and 3 cookbooks.
func bookRelease() client.Release {
	return client.Release{
		Version: 1,
		Model: &model.Model{Kind: model.Explicit, Items: 4, Rank: 2, Params: []float64{
			1, 0, 0.1, // novel-a: factor (1, 0), bias 0.1
			1, 0, 0.0, // novel-b
			0, 1, 0.3, // cookbook-a
			0, 1, 0.2, // cookbook-b
			3.5, // global mean rating
		}},
		Items: []string{"novel-a", "novel-b", "cookbook-a", "cookbook-b"},
	}
}

// exampleConfig returns a config for a temporary directory. A real app
// keeps the key in the platform key store and the data in its files
// directory.
func exampleConfig() (client.Config, func()) {
	dir, err := os.MkdirTemp("", "fedrec-example")
	if err != nil {
		log.Fatal(err)
	}
	key := make([]byte, client.KeySize) // use 32 random bytes from the key store
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return client.Config{Dir: dir, Key: key, Clock: func() time.Time { return now }},
		func() { os.RemoveAll(dir) }
}

// The app records what the user does and asks for recommendations; nothing
// leaves the device.
func Example() {
	cfg, cleanup := exampleConfig()
	defer cleanup()
	ctx := context.Background()

	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.SetModel(ctx, bookRelease()); err != nil {
		log.Fatal(err)
	}
	c.Record(ctx, client.Interaction{Item: "novel-a", Kind: client.Rating, Value: 5})
	c.Record(ctx, client.Interaction{Item: "cookbook-b", Kind: client.Rating, Value: 2})

	recs, err := c.Recommend(ctx, 2, client.Filter{})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range recs {
		fmt.Printf("%s %.2f\n", r.Item, r.Score)
	}
	// Output:
	// novel-b 4.61
	// cookbook-a 2.41
}

// A shop's release: a tiny implicit model, trained on views, carts and
// purchases, over five products, with the event weights of its cluster.
// The tent, sleeping bag and stove are camping gear, the lipstick and
// mascara make-up.
func shopRelease() client.Release {
	return client.Release{
		Version: 1,
		Model: &model.Model{Kind: model.Implicit, Items: 5, Rank: 2, Params: []float64{
			1, 0, 0.1, // tent: factor (1, 0), bias 0.1
			1, 0, 0.1, // sleeping-bag
			1, 0, 0.1, // stove
			0, 1, 0.1, // lipstick
			0, 1, 0.1, // mascara
			0, // implicit models have no global mean
		}},
		Items: []string{"tent", "sleeping-bag", "stove", "lipstick", "mascara"},
		// As the cluster sets them (fedrec coordinator --objective implicit
		// --event-weights view=1,click=2,cart=5,purchase=20); over the
		// network they come with the model.
		EventWeights: client.EventWeights{View: 1, Click: 2, Cart: 5, Purchase: 20},
	}
}

// A shop records what the user browses, puts in the cart and buys; an
// implicit model turns those events into recommendations on the device.
// Ratings are refused outside the model's scale.
func Example_shop() {
	cfg, cleanup := exampleConfig()
	defer cleanup()
	ctx := context.Background()
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.SetModel(ctx, shopRelease()); err != nil {
		log.Fatal(err)
	}
	// A look at a lipstick weighs less than buying a tent.
	for _, in := range []client.Interaction{
		{Item: "lipstick", Kind: client.View},
		{Item: "tent", Kind: client.View},
		{Item: "sleeping-bag", Kind: client.Cart},
		{Item: "tent", Kind: client.Purchase},
	} {
		if err := c.Record(ctx, in); err != nil {
			log.Fatal(err)
		}
	}
	recs, err := c.Recommend(ctx, 2, client.Filter{})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range recs {
		fmt.Printf("%s %.2f\n", r.Item, r.Score)
	}

	err = c.Record(ctx, client.Interaction{Item: "stove", Kind: client.Rating, Value: 99})
	fmt.Println(errors.Is(err, client.ErrInvalidInteraction))
	// Output:
	// stove 0.83
	// mascara 0.55
	// true
}

func ExampleClient_Recommend() {
	cfg, cleanup := exampleConfig()
	defer cleanup()
	ctx := context.Background()
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.SetModel(ctx, bookRelease())
	c.Record(ctx, client.Interaction{Item: "novel-a", Kind: client.Purchase})

	// Items already seen are left out unless IncludeSeen; Allow filters
	// candidates, here by stock.
	inStock := map[string]bool{"novel-b": false, "cookbook-a": true, "cookbook-b": true}
	recs, err := c.Recommend(ctx, 1, client.Filter{Allow: func(id string) bool { return inStock[id] }})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(recs[0].Item)
	// Output:
	// cookbook-a
}

// toyFederation stands in for the network side: it offers one round on the
// model the device holds and "sends" the update by printing its size.
type toyFederation struct{ offer client.Offer }

func (f toyFederation) Latest(ctx context.Context, have uint64) (*client.Release, error) {
	return nil, nil
}

func (f toyFederation) Join(ctx context.Context, k *client.Contribution) error {
	if err := k.Accept(f.offer); err != nil {
		return err
	}
	p, err := k.Update(ctx, nil) // the device holds the round's model
	if err != nil {
		return err
	}
	fmt.Printf("sending %d parameters\n", len(p.Delta))
	return nil
}

// With the user's consent, the device takes part in a round whose terms
// meet its policy, and accounts for the privacy it spends.
func ExampleClient_Participate() {
	cfg, cleanup := exampleConfig()
	defer cleanup()
	cfg.Federation = toyFederation{client.Offer{
		Round: 12, ModelVersion: 1, CohortSize: 500, NoiseMultiplier: 3, ClipNorm: 0.5,
	}}
	ctx := context.Background()
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.SetModel(ctx, bookRelease())
	c.Record(ctx, client.Interaction{Item: "novel-a", Kind: client.Rating, Value: 5})

	if _, err := c.Participate(ctx); errors.Is(err, client.ErrNotOptedIn) {
		fmt.Println("not without consent")
	}
	if err := c.OptIn(); err != nil {
		log.Fatal(err)
	}
	rep, err := c.Participate(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("round %d: ε spent %.2f\n", rep.Round, rep.Epsilon)
	// Output:
	// not without consent
	// sending 13 parameters
	// round 12: ε spent 1.56
}

// A round announcing weaker protection than the app's policy is declined
// before anything is downloaded or sent.
func ExampleDeclineError() {
	cfg, cleanup := exampleConfig()
	defer cleanup()
	cfg.Policy = client.Policy{MinCohort: 1000}
	cfg.Federation = toyFederation{client.Offer{
		Round: 13, ModelVersion: 1, CohortSize: 500, NoiseMultiplier: 3, ClipNorm: 0.5,
	}}
	ctx := context.Background()
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.SetModel(ctx, bookRelease())
	c.Record(ctx, client.Interaction{Item: "novel-a", Kind: client.View})
	c.OptIn()

	_, err = c.Participate(ctx)
	var d *client.DeclineError
	if errors.As(err, &d) {
		fmt.Println(d.Reason, "-", d.Detail)
	}
	// Output:
	// cohort_too_small - cohort of 500 < 1000
}

// The transparency report is a Go value that marshals to JSON for a privacy
// dashboard; it says nothing about which items the user touched.
func ExampleClient_Report() {
	cfg, cleanup := exampleConfig()
	defer cleanup()
	cfg.Federation = toyFederation{client.Offer{
		Round: 12, ModelVersion: 1, CohortSize: 500, NoiseMultiplier: 3, ClipNorm: 0.5,
	}}
	ctx := context.Background()
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.SetModel(ctx, bookRelease())
	c.Record(ctx, client.Interaction{Item: "novel-a", Kind: client.Rating, Value: 5})
	c.OptIn()
	c.Participate(ctx)

	rep, err := c.Report()
	if err != nil {
		log.Fatal(err)
	}
	// Dashboards show ε rounded.
	rep.Totals.Epsilon = math.Round(rep.Totals.Epsilon*100) / 100
	rep.Totals.Remaining = math.Round(rep.Totals.Remaining*100) / 100
	b, err := json.MarshalIndent(rep.Totals, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	// Output:
	// sending 13 parameters
	// {
	//   "rounds": 1,
	//   "bytes_sent": 104,
	//   "epsilon": 1.56,
	//   "delta": 0.000001,
	//   "epsilon_budget": 10,
	//   "epsilon_remaining": 8.44,
	//   "declined": 0
	// }
}

// DeleteMyData wipes the user's data, factor, ledger and keys from the
// device; the Client carries on, empty and opted out.
func ExampleClient_DeleteMyData() {
	cfg, cleanup := exampleConfig()
	defer cleanup()
	ctx := context.Background()
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.Record(ctx, client.Interaction{Item: "novel-a", Kind: client.View})
	c.OptIn()

	if err := c.DeleteMyData(ctx); err != nil {
		log.Fatal(err)
	}
	files, _ := os.ReadDir(cfg.Dir)
	rep, _ := c.Report()
	fmt.Println(len(files), "files,", rep.Interactions, "interactions, opted in:", c.OptedIn())
	// Output:
	// 0 files, 0 interactions, opted in: false
}

// A store that fails its checks is reported, never used; the app can start
// over with Remove.
func ExampleRemove() {
	cfg, cleanup := exampleConfig()
	defer cleanup()
	c, _ := client.New(cfg)
	c.Record(context.Background(), client.Interaction{Item: "novel-a", Kind: client.View})
	c.Close()

	cfg.Key[0] ^= 1 // the app lost its key
	_, err := client.New(cfg)
	fmt.Println(errors.Is(err, client.ErrWrongKey))
	if errors.Is(err, client.ErrCorrupt) || errors.Is(err, client.ErrWrongKey) {
		client.Remove(cfg.Dir)
	}
	c, err = client.New(cfg)
	fmt.Println(err)
	c.Close()
	// Output:
	// true
	// <nil>
}
