// The privacy dashboard: what the device keeps and what it shared, from
// device.report() and device.storedBytes(), with working opt-out and
// delete-my-data buttons. For tests it sets on <body> data-ready (the
// number of renders: 1 once shown, one more after each button's effect),
// data-report (the report's JSON) and data-stored-bytes.
import { config, openDevice, showError } from "./device.js";

const $ = (id) => document.getElementById(id);
let device, renders = 0;

async function main() {
	device = await openDevice(await config());
	await render();
	$("optout").addEventListener("click", () => act(() => device.optOut(), "You no longer take part in training.").catch(showError));
	$("delete").addEventListener("click", () => act(() => device.deleteMyData(), "Everything this device kept about you is deleted.").catch(showError));
}

async function act(f, done) {
	for (const b of document.querySelectorAll("button")) b.disabled = true;
	try {
		await f();
		$("done").textContent = done;
	} finally {
		for (const b of document.querySelectorAll("button")) b.disabled = false;
	}
	await render();
}

async function render() {
	const [r, bytes] = await Promise.all([device.report(), device.storedBytes()]);
	const t = r.totals;
	$("interactions").textContent = String(r.interactions_stored);
	$("retention").textContent = `${r.retention_days} days`;
	$("bytes").textContent = bytes < 1024 ? `${bytes} bytes` : `${(bytes / 1024).toFixed(1)} KiB`;
	$("optedin").textContent = r.opted_in ? "yes" : "no";
	$("optout").disabled = !r.opted_in;
	$("delta").textContent = String(t.delta);
	$("spent").textContent = `ε = ${t.epsilon.toFixed(3)} of ${t.epsilon_budget}`;
	$("left").textContent = `ε = ${t.epsilon_remaining.toFixed(3)}`;
	$("budget").value = t.epsilon_budget > 0 ? t.epsilon / t.epsilon_budget : 0;
	const rows = (r.rounds ?? []).map((x) => row([
		x.round, x.model_version, new Date(x.time).toLocaleString(), `${(x.bytes_sent / 1024).toFixed(1)} KiB`,
		x.clip_norm, x.noise_multiplier.toFixed(2), x.device_noise_std.toPrecision(3), x.epsilon.toFixed(3), x.acknowledged ? "yes" : "not confirmed",
	]));
	$("rounds").replaceChildren(...(rows.length ? rows : [row(["None yet"], 9)]));
	$("declined").textContent = t.declined ? `${t.declined} round(s) declined: their privacy terms fell short of this device's policy.` : "";
	document.body.dataset.report = JSON.stringify(r);
	document.body.dataset.storedBytes = String(bytes);
	document.body.dataset.ready = String(++renders);
}

function row(cells, span) {
	const tr = document.createElement("tr");
	for (const c of cells) {
		const td = document.createElement("td");
		td.textContent = String(c);
		if (span) {
			td.colSpan = span;
			td.className = "muted";
		}
		tr.append(td);
	}
	return tr;
}

main().catch(showError);
