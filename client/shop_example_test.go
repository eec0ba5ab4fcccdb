package client_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/model"
)

// shopCatalogue is the shop's item IDs in the model's order: the app's
// backend serves the same list to the coordinator (fedrec coordinator
// --catalogue) and to the app.
var shopCatalogue = []string{"tent", "sleeping-bag", "stove", "lantern", "lipstick", "mascara", "perfume", "nail-polish"}

// phone is the app's report of the device's state (client.Device): on
// Android ConnectivityManager and BatteryManager, on iOS NWPathMonitor and
// UIDevice.
type phone struct{}

func (phone) Conditions() client.Conditions {
	return client.Conditions{Unmetered: true, Charging: true, Idle: true}
}

// A shop, end to end: the app connects to the cluster, records what the
// user views, puts in the cart and buys, recommends on the device, and,
// with the user's consent, takes part in a training round on Wi-Fi while
// charging. docs/sdk.md walks through it.
func Example_shopEndToEnd() {
	// A one-node implicit cluster on loopback; an app gets the addresses
	// and the CA from its backend.
	addr, ca, stop := startShopCluster()
	defer stop()
	dir, _ := os.MkdirTemp("", "fedrec-shop")
	defer os.RemoveAll(dir)
	key := make([]byte, client.KeySize) // 32 random bytes from the platform key store
	ctx := context.Background()

	// Connect: the cluster's addresses and CA, the device's ID and the
	// shop's catalogue in the model's order.
	d, err := client.NewDialerConfig(client.DialerConfig{Addrs: []string{addr}, TLS: pki.ClientTLS(ca), StateDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	fed, err := client.NewNetwork(client.NetworkConfig{ClientID: "device-1", Dialer: d, Items: shopCatalogue})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	// Open the SDK with the shop's policy: rounds of at least 1 device
	// (a real app keeps the default, 100), on Wi-Fi while charging, of
	// at most 1 MB.
	c, err := client.New(client.Config{Dir: dir, Key: key, Federation: fed, Device: phone{},
		Policy: client.Policy{MinCohort: 1, RequireUnmetered: true, RequireCharging: true, MaxRoundBytes: 1 << 20}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// The cluster's model and its event weights.
	if _, err := c.Sync(ctx); err != nil {
		log.Fatal(err)
	}

	// The user browses tents, puts a sleeping bag in the cart, buys a tent.
	for _, in := range []client.Interaction{
		{Item: "tent", Kind: client.View},
		{Item: "lantern", Kind: client.View},
		{Item: "sleeping-bag", Kind: client.Cart},
		{Item: "tent", Kind: client.Purchase},
	} {
		if err := c.Record(ctx, in); err != nil {
			log.Fatal(err)
		}
	}

	// A "for you" shelf, computed on the device.
	recs, err := c.Recommend(ctx, 3, client.Filter{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("recommended:", len(recs), "items the user has not touched")

	// With consent, a background job takes part in a round.
	if err := c.OptIn(); err != nil {
		log.Fatal(err)
	}
	rep, err := c.Participate(ctx)
	for errors.Is(err, client.ErrNoRound) { // no round open yet: try again later
		time.Sleep(100 * time.Millisecond)
		rep, err = c.Participate(ctx)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("round %d: sent %d bytes, acknowledged %v\n", rep.Round, rep.BytesSent, rep.Acknowledged)

	// What was shared, for the app's privacy screen.
	r, err := c.Report()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("rounds taken part in: %d\n", len(r.Rounds))
	// Output:
	// recommended: 3 items the user has not touched
	// round 1: sent 328 bytes, acknowledged true
	// rounds taken part in: 1
}

// startShopCluster starts a one-node implicit cluster over QUIC on
// loopback that knows the shop's catalogue, and returns its client
// address and CA pool.
func startShopCluster() (string, *x509.CertPool, func()) {
	ca, err := pki.NewCA("shop CA", time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	b, err := ca.NodeBundle("n0")
	if err != nil {
		log.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("shop-0")
	n, err := coordinator.New(coordinator.Config{
		ID: "n0", InMemory: true, Transport: trans, ClientAddr: "127.0.0.1:0", TLS: b, Bootstrap: true, Seed: 1,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		Training: coordinator.Training{Kind: model.Implicit, Items: len(shopCatalogue), Rank: 4, Catalogue: coordinator.CatalogueOf(shopCatalogue),
			ClientsPerRound: 1, MinClients: 1, Clip: 0.5, NoiseMultiplier: 1.2, Population: 1000,
			CheckInWindow: 100 * time.Millisecond, RoundTimeout: 5 * time.Second},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current() != nil }); err != nil {
		log.Fatal(err)
	}
	return n.ClientAddr(), ca.Pool(), func() { n.Close() }
}
