// Package client is the fedrec SDK an app embeds: the user's interactions
// kept on the device, encrypted; recommendations computed on the device;
// and, only if the user opts in, participation in federated training under
// a privacy policy the device enforces itself.
//
// A Client is made with New from a Config whose zero value means sensible
// defaults, apart from the directory and the key:
//
//	c, err := client.New(client.Config{Dir: dir, Key: key})
//	...
//	err = c.Record(ctx, client.Interaction{Item: "sku-42", Kind: client.Purchase})
//	recs, err := c.Recommend(ctx, 10, client.Filter{})
//
// # Data
//
// Interactions (item, kind, value, time to the hour) live in Config.Dir,
// encrypted with AES-256-GCM under a data key that is itself sealed with
// the app's key. Writes are crash-safe (an append-only log with per-record
// checksums, folded into atomically renamed snapshots). The store keeps at
// most Config.MaxInteractions interactions for at most Config.Retention.
// A damaged store is reported with ErrCorrupt and never used. Compiled for
// a browser (GOOS=js GOARCH=wasm), the same store keeps the same bytes in
// an IndexedDB database named by Config.Dir, its data key sealed by a
// non-extractable WebCrypto key unless the page passes Config.Key.
//
// # Recommendations
//
// The coordinator ships the global model (item factors) with an item
// catalogue mapping its items to the app's IDs (a Release). Recommend
// scores every item with the user's own factor, which is fitted on the
// device from the user's interactions and never leaves it. An explicit
// model learns from ratings; an implicit one from views, clicks, carts
// and purchases, weighted by the cluster's EventWeights, so that a shop
// that records only events gets recommendations (Example_shop).
//
// # Consent and privacy
//
// Participation is off until OptIn. OptOut stops it at once, abandoning a
// round under way; DeleteMyData also wipes the user's data, factor, ledger
// and data key. Before joining a round, the device checks the round's
// announced terms (an Offer) against its Policy, and its own ledger of
// the privacy spent stops participation at the lifetime budget. Report
// says what was shared.
//
// # Network
//
// The Client never opens a connection itself: a Federation (Config) does
// the network side, and calls back into the Client through a Contribution
// at the two points where the device decides: Accept (may I join this
// round?) and Update (train and release the update).
//
// A Dialer reaches the cluster: it races the configured coordinators,
// remembers which failed (DialerConfig.StateDir) and fails a call with
// ErrUnavailable once its budget is spent.
//
// # Integrity
//
// One Client per directory (ErrLocked). A store whose files were removed
// is refused (ErrMissing), and with an Anchor kept outside the directory
// so is one restored from an older copy (ErrRolledBack), whose ledger
// would give back privacy already spent; Reset starts over, keeping it.
// Apps exclude Config.Dir from OS backups (docs/sdk.md).
//
// Package client/mobile wraps the SDK for gomobile bind, and client/web
// for a web page (fedrec.js, over WebTransport). Package
// client/crowd runs simulated devices (fedrec client, the remote
// simulator, the coordinator's tests) over a Dialer; apps do not use it.
package client
