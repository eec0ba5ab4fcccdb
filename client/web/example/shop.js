// The example shop: every view, add-to-cart and purchase is recorded on
// the device (it never leaves it); "Recommended for you" ranks the
// catalogue with the cluster's model and the device's own history. While
// the shopper opts in, the device joins training rounds in the background
// and fetches each newer model.
//
// For tests and measurements the page sets data attributes on <body>:
// data-ready once the first recommendations show, data-first-rec-ms (page
// start to first recommendation, performance.now()), data-model-version,
// data-rounds (rounds this page's device gave an update to) and
// data-recorded (events recorded); performance marks "shop:config",
// "shop:open", "shop:recommend" and "shop:sync" (the model download,
// before the first recommendations on a first visit, after them later)
// time the start.
import { config, openDevice, products, showError } from "./device.js";

const $ = (id) => document.getElementById(id);
let device, names, participation, recorded = 0, rounds = 0;

async function main() {
	const cfg = await config();
	const ps = products(cfg);
	names = new Map(ps.map((p) => [p.item, p.name]));
	performance.mark("shop:config");
	device = await openDevice(cfg);
	performance.mark("shop:open");
	// Show what the model kept on the device recommends at once; only a
	// first visit, with none, waits for the download. A newer model
	// replaces it in the background.
	let synced = false;
	try {
		await refresh();
	} catch (err) {
		if (err.code !== "no_model") throw err;
		document.body.dataset.modelVersion = String((await device.sync()).version);
		performance.mark("shop:sync");
		synced = true;
		await refresh();
	}
	performance.mark("shop:recommend");
	document.body.dataset.firstRecMs = performance.now().toFixed(1);
	document.body.dataset.ready = "1";
	renderProducts(ps.slice(0, 12));
	const optin = $("optin");
	optin.checked = (await device.report()).opted_in;
	optin.disabled = false;
	optin.addEventListener("change", () => setOptIn(optin.checked).catch(showError));
	if (optin.checked) participate();
	if (!synced) {
		const { version } = await device.sync();
		document.body.dataset.modelVersion = String(version);
		await refresh();
		performance.mark("shop:sync");
	}
}

function renderProducts(ps) {
	const grid = $("products");
	for (const p of ps) {
		const card = document.createElement("div");
		card.className = "card";
		card.dataset.item = p.item;
		card.innerHTML = `<div class="name"></div><div class="price"></div>`;
		card.querySelector(".name").textContent = p.name;
		card.querySelector(".price").textContent = `€${p.price}`;
		for (const [kind, label] of [["view", "View"], ["cart", "Add to cart"], ["purchase", "Buy"]]) {
			const b = document.createElement("button");
			b.textContent = label;
			b.dataset.kind = kind;
			b.addEventListener("click", () => record(p.item, kind).catch(showError));
			card.append(b);
		}
		grid.append(card);
	}
}

async function record(item, kind) {
	await device.record(item, kind);
	document.body.dataset.recorded = String(++recorded);
	await refresh();
}

// refresh shows the newest model's recommendations.
async function refresh() {
	const recs = await device.recommend(10);
	const ol = $("recs");
	ol.replaceChildren(...recs.map((r) => {
		const li = document.createElement("li");
		li.dataset.item = r.item;
		li.textContent = names.get(r.item) ?? r.item;
		return li;
	}));
}

async function setOptIn(on) {
	if (on) {
		await device.optIn();
		participate();
		return;
	}
	participation?.abort();
	participation = undefined;
	await device.optOut();
	status();
}

// participate joins rounds until the shopper opts out, fetching each newer
// model after a round.
async function participate() {
	if (participation) return;
	const ctl = new AbortController();
	participation = ctl;
	status();
	while (!ctl.signal.aborted) {
		try {
			const r = await device.participate({ rounds: 1, signal: ctl.signal });
			rounds += r.rounds;
			const { version } = await device.sync();
			document.body.dataset.modelVersion = String(version);
			await refresh();
			status();
		} catch (err) {
			if (ctl.signal.aborted) break;
			showError(err);
			await new Promise((res) => setTimeout(res, 2000)); // back off, then try again
		}
	}
}

function status() {
	const v = document.body.dataset.modelVersion;
	document.body.dataset.rounds = String(rounds);
	$("status").textContent = (participation ? `Taking part in training: ${rounds} round(s) joined on this page.` : "Not taking part in training.") +
		(v ? ` Model version ${v}.` : "");
}

main().catch(showError);
