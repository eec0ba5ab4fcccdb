// The example pages' device: both pages open the same one, kept in this
// browser's IndexedDB. The shop's backend serves, beside the pages,
// config.json (the nodes' WebTransport addresses, in development the
// SHA-256 hashes of their certificates, the catalogue and the device
// policy) and token (a short-lived device token for the shopper it has
// logged in; see docs/security.md, "Browsers").
import { open, preload } from "../fedrec.js";

// The module downloads, compiles and starts while the page fetches its
// configuration: whichever page imports this starts it at once.
preload();

// config fetches the shop's configuration.
export async function config() {
	const r = await fetch("config.json");
	if (!r.ok) throw new Error(`config.json: ${r.status} ${r.statusText}`);
	return r.json();
}

// openDevice opens this browser's device with the shop's configuration,
// and closes it when the shopper leaves the page, so that the next page
// gets the device's Web Lock at once (one page holds the device at a
// time; a second tab of the shop gets "locked").
export async function openDevice(cfg) {
	const device = await open({
		addrs: cfg.addrs,
		certHashes: cfg.certHashes,
		items: cfg.items,
		policy: cfg.policy,
		token: async () => {
			const r = await fetch("token");
			if (!r.ok) throw new Error(`token: ${r.status} ${r.statusText}`);
			return (await r.text()).trim();
		},
	});
	addEventListener("pagehide", () => device.close(), { once: true });
	return device;
}

// products are what the shop sells: cfg.products ({item, name, price}) or,
// without them, the catalogue's items by ID.
export function products(cfg) {
	return cfg.products ?? cfg.items.map((item, i) => ({ item, name: item, price: 5 + (i * 7) % 40 }));
}

// showError puts an error where the shopper (and a test) sees it.
export function showError(err) {
	const el = document.getElementById("error");
	el.textContent = err && err.message ? err.message : String(err);
	el.hidden = false;
	console.error(err);
}
