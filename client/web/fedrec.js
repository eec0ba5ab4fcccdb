// fedrec.js: the fedrec SDK in a web page (ES module). It loads the Go
// runtime's wasm_exec.js and fedrec.wasm from beside this file (see
// docs/sdk.md, "In a web page": make web builds both) and wraps the
// device the WebAssembly module opens. Types: fedrec.d.ts.

const kinds = new Set(["view", "click", "cart", "purchase"]);

let loaded = null; // the module, loaded once per page

function load(wasmURL) {
  if (!loaded) {
    loaded = (async () => {
      if (!globalThis.Go) {
        await import(new URL("./wasm_exec.js", import.meta.url).href);
      }
      const go = new globalThis.Go();
      const url = wasmURL ?? new URL("./fedrec.wasm", import.meta.url).href;
      const { instance } = await WebAssembly.instantiateStreaming(fetch(url), go.importObject);
      go.run(instance); // runs main until it waits for calls; it never exits
      if (!globalThis.fedrec?.open) {
        throw new Error("fedrec: fedrec.wasm did not start");
      }
      return globalThis.fedrec;
    })();
    loaded.catch(() => { loaded = null; }); // let a later open try again
  }
  return loaded;
}

function invalid(message) {
  const e = new Error("fedrec: " + message);
  e.code = "invalid";
  return e;
}

export async function open(o) {
  if (!o || typeof o !== "object") throw invalid("open: want an options object");
  const addrs = o.addrs ?? [];
  if (!Array.isArray(addrs)) throw invalid("addrs: want an array of \"host:port\"");
  if (addrs.length > 0 && typeof o.token !== "function") {
    throw invalid("token: want a function returning a Promise of the device token");
  }
  const fedrec = await load(o.wasmURL);
  const d = await fedrec.open({
    db: o.db ?? "fedrec",
    addrs,
    token: o.token,
    certHashes: o.certHashes,
    items: o.items,
    clientID: o.clientID,
    key: o.key,
    policy: o.policy,
    debug: !!o.debug,
  });
  return new Device(d);
}

class Device {
  #d;
  constructor(d) { this.#d = d; }

  record(item, kind, time) {
    if (!kinds.has(kind)) return Promise.reject(invalid(`record: kind ${kind}, want view, click, cart or purchase`));
    return this.#d.record(String(item), kind, time instanceof Date ? time.getTime() : undefined);
  }
  recommend(n, opts) { return this.#d.recommend(n, opts?.exclude); }
  sync() { return this.#d.sync(); }
  optIn() { return this.#d.optIn(); }
  optOut() { return this.#d.optOut(); }
  deleteMyData() { return this.#d.deleteMyData(); }
  report() { return this.#d.report(); }
  participate(o) { return this.#d.participate(o?.rounds ?? 1, o?.signal); }
  storedBytes() { return this.#d.storedBytes(); }
  close() { return this.#d.close(); }
}
