// Types of fedrec.js, the fedrec SDK in a web page (docs/sdk.md, "In a web
// page").

/** The device's privacy policy (client.Policy); unset fields keep the SDK's defaults. */
export interface Policy {
  /** Fewest devices a round may aggregate together. Default 100. */
  minCohort: number;
  /** Smallest noise a round may add (std over the clip norm). Default 1. */
  minNoiseMultiplier: number;
  /** Largest L2 norm of an update the device sends. Default 1. */
  maxClipNorm: number;
  /** Lifetime privacy budget (ε, δ). Defaults 10 and 1e-6. */
  epsilon: number;
  delta: number;
  /** Decline rounds whose noise the coordinator alone adds. */
  requireDistributedNoise: boolean;
  /** Charge rounds at the sampling rate they announce. */
  trustSamplingRate: boolean;
  /** Bound on one round's download and upload, bytes; 0: none. */
  maxRoundBytes: number;
}

export interface OpenOptions {
  /** URL of fedrec.wasm; default "./fedrec.wasm" beside fedrec.js. */
  wasmURL?: string;
  /** IndexedDB database name, default "fedrec". */
  db?: string;
  /** Node WebTransport addresses "host:port"; none: the device never trains and never syncs. */
  addrs: string[];
  /** Device token from the shop's backend (base64url); called for each new session. */
  token: () => Promise<string>;
  /** The shop's catalogue, in the model's order (item i of the model is items[i]); required with addrs. */
  items?: string[];
  /** The device's client ID; default the device in the token. */
  clientID?: string;
  /** SHA-256 (hex) of development server certificates (serverCertificateHashes). */
  certHashes?: string[];
  /** A 32-byte key of the page's own to seal the data key; default a non-extractable WebCrypto key the SDK keeps in the database. */
  key?: Uint8Array;
  /** Device policy overrides. */
  policy?: Partial<Policy>;
  /** Log the SDK's debug lines to the console. */
  debug?: boolean;
}

export type EventKind = "view" | "click" | "cart" | "purchase";

export interface Recommendation {
  item: string;
  score: number;
}

/** An error of the SDK: a rejected promise's reason. */
export interface FedrecError extends Error {
  /** The SDK's error code, as in the mobile SDK: "invalid", "no_model", "not_opted_in", "budget_exhausted", "unavailable", "unauthenticated", "catalogue_mismatch", "wrong_key", "corrupt", "locked", "closed", "aborted", "internal", ... */
  code: string;
}

/** One round the device gave an update to (client.RoundReport). */
export interface RoundReport {
  round: number;
  model_version: number;
  time: string;
  bytes_sent: number;
  params: number;
  clip_norm: number;
  noise_multiplier: number;
  device_noise_std: number;
  sampling_rate: number;
  epsilon: number;
  epsilon_total: number;
  acknowledged: boolean;
  mechanism: "gaussian" | "skellam";
}

export interface DeclinedRound {
  round: number;
  model_version: number;
  time: string;
  reason: string;
}

/** The transparency report (client.Report). */
export interface Report {
  opted_in: boolean;
  interactions_stored: number;
  retention_days: number;
  rounds: RoundReport[] | null;
  declined: DeclinedRound[] | null;
  totals: {
    rounds: number;
    bytes_sent: number;
    epsilon: number;
    delta: number;
    epsilon_budget: number;
    epsilon_remaining: number;
    declined: number;
    epsilon_carried?: number;
  };
}

export function open(o: OpenOptions): Promise<Device>;

/** Starts downloading, compiling and starting fedrec.wasm without waiting: a page calls it first and overlaps it with fetching its configuration and token. Optional (open loads the module itself); a failure is reported by open. */
export function preload(o?: { wasmURL?: string }): void;

/** Deletes the store in a database that open refuses ("corrupt", "wrong_key"), to start over; fails with "locked" while a device has it open. */
export function remove(o?: { db?: string; wasmURL?: string }): Promise<void>;

export interface Device {
  record(item: string, kind: EventKind, time?: Date): Promise<void>;
  recommend(n: number, opts?: { exclude?: string[] }): Promise<Recommendation[]>;
  /** Fetches the committed model if newer. */
  sync(): Promise<{ version: number }>;
  optIn(): Promise<void>;
  optOut(): Promise<void>;
  /** Wipes the IndexedDB data and keys; the device stays open, empty and opted out. */
  deleteMyData(): Promise<void>;
  report(): Promise<Report>;
  /** Joins training rounds while opted in, until it gave updates to `rounds` (default 1) or the signal aborts. */
  participate(o?: { rounds?: number; signal?: AbortSignal }): Promise<{ rounds: number }>;
  /** Bytes the device keeps, for the dashboard. */
  storedBytes(): Promise<number>;
  close(): Promise<void>;
}
