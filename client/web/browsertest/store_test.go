//go:build !js

package browsertest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// storeJS runs JavaScript with fedrec.js imported as f and helpers: idb
// (a database's record counts and keys by store), code (an awaited
// promise's error code, "" when it resolves) and frame (runs a module
// script in a same-origin iframe, a second page of the site, and returns
// what it posts).
const storeJS = `(async () => {
	const f = await import("/fedrec.js");
	const req = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
	const idb = async (name) => {
		const db = await req(indexedDB.open(name)), out = {};
		for (const s of db.objectStoreNames) {
			const st = db.transaction(s).objectStore(s);
			out[s] = { count: await req(st.count()), keys: (await req(st.getAllKeys())).map(String) };
		}
		db.close();
		return out;
	};
	const code = async (p) => { try { await p; return ""; } catch (e) { return e.code ?? String(e); } };
	const frame = (script) => new Promise((res) => {
		const el = document.createElement("iframe");
		addEventListener("message", function h(e) { removeEventListener("message", h); el.remove(); res(e.data); });
		el.srcdoc = '<script type="module">const f = await import("/fedrec.js"); try { ' + script +
			' } catch (e) { parent.postMessage(e.code ?? String(e), "*"); }</' + 'script>';
		document.body.append(el);
	});
	%s
})()`

// storeEval evaluates body (see storeJS) in the tab and decodes its value.
func storeEval[T any](e *env, body string) T {
	e.t.Helper()
	return eval[T](e, fmt.Sprintf(storeJS, body))
}

// The device's IndexedDB store in Chromium, without a network: records
// survive closing and reopening, through the log's compaction; the data
// key is a non-extractable WebCrypto key; deleting the data empties both
// object stores; a store written with another page key is refused until
// removed; one page of the site holds a database at a time, released by
// close or by navigating away; a closed device refuses calls.
func TestIndexedDBStore(t *testing.T) {
	e := newBrowser(t)
	e.do(chromedp.Navigate(e.web.URL + "/example/"))

	type store struct {
		Count int      `json:"count"`
		Keys  []string `json:"keys"`
	}
	type counts struct {
		Stored, Reopened, Compacted int
		Bytes                       int
		Files, Keys                 store
		KEK                         string
		BytesAfterDelete            int
		AfterDelete                 map[string]store
		ClosedCode                  string
	}
	// 1,100 records: more than the log holds before the store compacts
	// it into the snapshot.
	got := storeEval[counts](e, `
	const out = {};
	let d = await f.open({ db: "s1" });
	await d.record("a", "view");
	await d.record("b", "cart", new Date(Date.now() - 3600e3));
	out.Stored = (await d.report()).interactions_stored;
	await d.close();
	d = await f.open({ db: "s1" });
	out.Reopened = (await d.report()).interactions_stored;
	for (let i = 0; i < 1100; i++) await d.record("i" + (i % 50), "view");
	await d.close();
	d = await f.open({ db: "s1" });
	out.Compacted = (await d.report()).interactions_stored;
	out.Bytes = await d.storedBytes();
	const before = await idb("s1");
	out.Files = before.files; out.Keys = before.keys;
	const kek = await new Promise((res, rej) => { const q = indexedDB.open("s1"); q.onerror = () => rej(q.error);
		q.onsuccess = () => { const g = q.result.transaction("keys").objectStore("keys").get("kek"); g.onsuccess = () => { q.result.close(); res(g.result); }; }; });
	out.KEK = kek instanceof CryptoKey ? kek.algorithm.name + " extractable=" + kek.extractable : String(kek);
	await d.deleteMyData();
	out.BytesAfterDelete = await d.storedBytes();
	out.AfterDelete = await idb("s1");
	await d.close();
	out.ClosedCode = await code(d.report());
	return out;`)
	if got.Stored != 2 || got.Reopened != 2 {
		t.Errorf("interactions stored %d, after reopening %d, want 2", got.Stored, got.Reopened)
	}
	if got.Compacted != 1102 || got.Bytes <= 0 {
		t.Errorf("after 1,100 more records and reopening: %d interactions, %d bytes stored, want 1102 interactions", got.Compacted, got.Bytes)
	}
	// The files store holds the sealed data key, the snapshot and the
	// log's records since the last compaction, keyed [file, offset].
	logRecords := 0
	for _, k := range got.Files.Keys {
		if strings.HasPrefix(k, "fedrec.log,") {
			logRecords++
		}
	}
	if !slices.Contains(got.Files.Keys, "fedrec.key,0") || !slices.Contains(got.Files.Keys, "fedrec.snap,0") || logRecords >= 1100 {
		t.Errorf("after 1,100 records the files store holds %v: want the key, a snapshot and a compacted log", got.Files.Keys)
	}
	if got.KEK != "AES-GCM extractable=false" {
		t.Errorf("the key-encryption key in IndexedDB is %q, want a non-extractable AES-GCM CryptoKey", got.KEK)
	}
	if got.BytesAfterDelete != 0 {
		t.Errorf("storedBytes after deleteMyData = %d, want 0", got.BytesAfterDelete)
	}
	for _, s := range []string{"files", "keys"} {
		if n := got.AfterDelete[s].Count; n != 0 {
			t.Errorf("after deleteMyData the %s store holds %d records (%v), want none", s, n, got.AfterDelete[s].Keys)
		}
	}
	if got.ClosedCode != "closed" {
		t.Errorf("report after close: code %q, want closed", got.ClosedCode)
	}

	// A page key: another key is refused, and remove starts over.
	keys := storeEval[map[string]any](e, `
	let d = await f.open({ db: "s2", key: new Uint8Array(32).fill(7) });
	await d.record("z", "purchase");
	await d.close();
	const out = { wrong: await code(f.open({ db: "s2", key: new Uint8Array(32).fill(8) })) };
	await f.remove({ db: "s2" });
	d = await f.open({ db: "s2", key: new Uint8Array(32).fill(8) });
	out.afterRemove = (await d.report()).interactions_stored;
	await d.close();
	return out;`)
	if keys["wrong"] != "wrong_key" || keys["afterRemove"] != 0.0 {
		t.Errorf("another page key: %v, want code wrong_key, then after remove an empty store", keys)
	}

	// One page at a time: a second page of the site (an iframe) cannot
	// open the database while this one holds it, nor remove it, and can
	// once it is closed.
	lock := storeEval[[]string](e, `
	const d = await f.open({ db: "s3" });
	const held = await frame('const d = await f.open({ db: "s3" }); await d.close(); parent.postMessage("opened", "*");');
	const removed = await frame('await f.remove({ db: "s3" }); parent.postMessage("removed", "*");');
	await d.close();
	return [held, removed, await frame('const d = await f.open({ db: "s3" }); await d.close(); parent.postMessage("opened", "*");')];`)
	if want := []string{"locked", "locked", "opened"}; !slices.Equal(lock, want) {
		t.Errorf("a second page opening, removing, then opening after close: %q, want %q", lock, want)
	}

	// A page that goes without closing its device releases the database
	// to the next page.
	storeEval[any](e, `const d = await f.open({ db: "s4" }); await d.record("n", "view"); return null;`)
	e.do(chromedp.Navigate(e.web.URL + "/example/"))
	if n := storeEval[int](e, `const d = await f.open({ db: "s4" }); const n = (await d.report()).interactions_stored; await d.close(); return n;`); n != 1 {
		t.Errorf("after navigating away from an open device, the next page opens it with %d interactions, want 1", n)
	}
}

// The catalogue crosses into the module as one string, its IDs one a
// line, or as JSON when an ID holds a line break: both reach the token
// check (which a made-up token fails with the code invalid), and an ID
// that is not a string is refused with the code invalid first.
func TestCatalogueCrossing(t *testing.T) {
	e := newBrowser(t)
	e.do(chromedp.Navigate(e.web.URL + "/example/"))
	got := storeEval[[]string](e, `
	const msg = async (p) => { try { (await p).close(); return ""; } catch (e) { return e.code + ": " + e.message; } };
	const o = { db: "s5", addrs: ["127.0.0.1:1"], token: async () => "not a token" };
	return [await msg(f.open({ ...o, items: ["a", "b"] })), await msg(f.open({ ...o, items: ["a\nb", "c"] })), await msg(f.open({ ...o, items: ["a", 2] }))];`)
	for i, want := range []string{"invalid: client: invalid argument: token", "invalid: client: invalid argument: token", "invalid: fedrec: items"} {
		if i >= len(got) || !strings.Contains(got[i], want) {
			t.Errorf("open with catalogue %d: %q, want an error naming %q", i, got, want)
		}
	}
}

// Options of the wrong type are refused with the code invalid; syscall/js
// would otherwise panic reading them and stop the module, so the module
// still answers afterwards.
func TestOptionsOfWrongType(t *testing.T) {
	e := newBrowser(t)
	e.do(chromedp.Navigate(e.web.URL + "/example/"))
	got := storeEval[[]string](e, `
	const msg = async (p) => { try { (await p).close(); return "opened"; } catch (e) { return e.code + ": " + e.message; } };
	const o = { db: "s6", items: ["a", "b"] };
	return [await msg(f.open({ ...o, policy: { minCohort: "5" } })), await msg(f.open({ ...o, policy: { trustSamplingRate: 1 } })),
		await msg(f.open({ ...o, key: "not a key" })), await msg(f.open(o))];`)
	for i, want := range []string{"invalid: client: invalid argument: policy.minCohort: want a number", "invalid: client: invalid argument: policy.trustSamplingRate: want true or false",
		"invalid: client: invalid argument: key: want a Uint8Array", "opened"} {
		if i >= len(got) || !strings.Contains(got[i], want) {
			t.Errorf("open %d: %q, want %q", i, got, want)
		}
	}
}
