// fedrec.js: the fedrec SDK in a web page (ES module). It loads the Go
// runtime's wasm_exec.js and fedrec.wasm from beside this file (see
// docs/sdk.md, "In a web page": make web builds both) and wraps the
// device the WebAssembly module opens. Types: fedrec.d.ts.

const kinds = new Set(["view", "click", "cart", "purchase"]);

let loaded = null; // the module, loaded once per page

function load(wasmURL) {
  if (!loaded) {
    loaded = (async () => {
      // The download starts first; the Go runtime's glue comes meanwhile.
      const wasm = fetch(wasmURL ?? new URL("./fedrec.wasm", import.meta.url).href);
      wasm.catch(() => {}); // reported by instantiateStreaming below
      if (!globalThis.Go) {
        await import(new URL("./wasm_exec.js", import.meta.url).href);
      }
      const go = new globalThis.Go();
      // Compiles while it downloads (the server must send
      // application/wasm); the browser may keep the compiled code for
      // the next visit.
      const { instance } = await WebAssembly.instantiateStreaming(wasm, go.importObject);
      go.run(instance); // runs main until it waits for calls; it never exits
      if (!globalThis.fedrec?.open) {
        throw new Error("fedrec: fedrec.wasm did not start");
      }
      performance.mark("fedrec:wasm");
      return globalThis.fedrec;
    })();
    loaded.catch(() => { loaded = null; }); // let a later open try again
  }
  return loaded;
}

// preload starts downloading, compiling and starting fedrec.wasm, so that
// a page can overlap it with its own start (fetching its configuration
// and the device token) before it calls open. A failure is reported by
// open.
export function preload(o) {
  load(o?.wasmURL).catch(() => {});
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
    items: catalogue(o.items),
    clientID: o.clientID,
    key: o.key,
    policy: o.policy,
    debug: !!o.debug,
  });
  performance.mark("fedrec:open");
  return new Device(d);
}

// catalogue passes the catalogue as one string, so that thousands of IDs
// cross into the module in one call: the IDs one a line, which the module
// splits far faster than it decodes JSON, or JSON when an ID holds a line
// break. undefined and non-arrays go as they are, for the module to refuse.
function catalogue(items) {
  if (!Array.isArray(items)) return items;
  let lines = true;
  for (const id of items) {
    if (typeof id !== "string") throw invalid("items: want an array of item IDs (strings)");
    if (lines && id.includes("\n")) lines = false;
  }
  return lines ? { lines: items.join("\n"), n: items.length } : JSON.stringify(items);
}

// remove deletes the store in a database that open refuses with the code
// "corrupt" or "wrong_key", to start over; no device may have it open.
export async function remove(o) {
  const fedrec = await load(o?.wasmURL);
  return fedrec.remove(o?.db ?? "fedrec");
}

function closed() {
  const e = new Error("fedrec: the device is closed");
  e.code = "closed";
  return e;
}

class Device {
  #d;
  constructor(d) { this.#d = d; }

  // call runs a method of the module's device; after close, whose
  // functions the module released, it rejects with the code "closed".
  #call(name, ...args) {
    return this.#d ? this.#d[name](...args) : Promise.reject(closed());
  }

  record(item, kind, time) {
    if (!kinds.has(kind)) return Promise.reject(invalid(`record: kind ${kind}, want view, click, cart or purchase`));
    return this.#call("record", String(item), kind, time instanceof Date ? time.getTime() : undefined);
  }
  recommend(n, opts) { return this.#call("recommend", n, opts?.exclude); }
  sync() { return this.#call("sync"); }
  optIn() { return this.#call("optIn"); }
  optOut() { return this.#call("optOut"); }
  deleteMyData() { return this.#call("deleteMyData"); }
  report() { return this.#call("report"); }
  participate(o) { return this.#call("participate", o?.rounds ?? 1, o?.signal); }
  storedBytes() { return this.#call("storedBytes"); }
  close() {
    const d = this.#d;
    this.#d = null;
    return d ? d.close() : Promise.resolve();
  }
}
