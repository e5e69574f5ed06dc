#!/usr/bin/env node
// A plain nats.js client of twsbus, written only from the generated reference (docs/MESSAGES.md).
//
//   node tools/natsjs/every_kind.mjs nats://127.0.0.1:4222 [--reference docs/MESSAGES.md]
//        [--prefix tws] [--conid 265598] [--messages 3] [--wait 4] [--trade] [--kinds a,b]
//
// It reads the reference itself: the subscription kinds (every `tws.sub.<kind>` request), each
// kind's subscribe request type, image type and data subject, the message types published there
// and every type's field table. For every kind it subscribes to the data subject (a wildcard form
// of the subject pattern, before the subscribe request, so no message can slip between the reply
// and the subscription), sends `tws.sub.<kind>` with what the request type asks for (a contract
// {"conId": 265598}, the account from `tws.req.status`), decodes the image and the messages and
// checks each against its field table (required fields present, every field of the listed type,
// no field the table does not list), `seq` +1 per message from the reply's `seq`, `epoch` the
// reply's; then renews the lease (`tws.lease.renew`), releases it (`tws.unsub`) and checks both
// replies (and that a renewal after the release lists the lease as unknown). Kinds that publish
// only on a change (positions) stay quiet without one: --trade, against a simulator or a paper
// account only, buys 1 share of the contract (`tws.req.place_order`) once every kind is
// subscribed. A kind whose request requires a parameter the script cannot know is skipped.
//
// It prints one JSON line: {"ok", "kinds": {kind: {messages, types, image, renewed, released,
// checksFailed, failed: [the first 20]}}, "checksFailed", "skipped", ...}
// and exits 1 when any check failed (2 on a usage or connection error).

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "nats";

const here = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const opts = {
    url: null,
    reference: resolve(here, "../../docs/MESSAGES.md"),
    prefix: "tws",
    conId: 265598,
    messages: 3, // messages to decode per kind before moving on (or 1 s without one)
    wait: 4, // seconds to wait for them
    kinds: null, // only these kinds (default: every kind of the reference)
    trade: false, // place a 1-share market order once every kind is subscribed (a simulator!)
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--reference") opts.reference = value();
    else if (a === "--prefix") opts.prefix = value();
    else if (a === "--conid") opts.conId = Number(value());
    else if (a === "--messages") opts.messages = Number(value());
    else if (a === "--wait") opts.wait = Number(value());
    else if (a === "--trade") opts.trade = true;
    else if (a === "--kinds") opts.kinds = value().split(",").filter(Boolean);
    else if (a === "-h" || a === "--help") usage();
    else if (!opts.url) opts.url = a;
    else usage(`unexpected argument ${a}`);
  }
  if (!opts.url) usage("the NATS url is missing");
  return opts;
}

function usage(problem) {
  const head = readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 5);
  if (problem) console.error(`every_kind: ${problem}`);
  console.error(head.map((l) => l.replace(/^\/\/ ?/, "")).join("\n"));
  process.exit(2);
}

// ---------------------------------------------------------------- the reference

// Everything the script knows about the surface comes from here.
function readReference(path) {
  const text = readFileSync(path, "utf8");
  const sections = {}; // "## X" -> [lines]
  let current = null;
  for (const line of text.split("\n")) {
    const m = /^## (.+)$/.exec(line);
    if (m) {
      current = m[1].trim();
      sections[current] = [];
    } else if (current) sections[current].push(line);
  }
  for (const name of ["Requests", "Published subjects", "Types"]) {
    if (!sections[name]) throw new Error(`the reference has no "## ${name}" section`);
  }
  return {
    requests: parseBlocks(sections["Requests"]),
    published: parseBlocks(sections["Published subjects"]),
    types: parseTypes(sections["Types"]),
  };
}

// "### `subject`" blocks: {subject: {description, items: [{name, type}]}}
function parseBlocks(lines) {
  const blocks = {};
  let block = null;
  for (const line of lines) {
    const h = /^### `([^`]+)`\s*$/.exec(line);
    if (h) {
      block = { description: "", items: [] };
      blocks[h[1]] = block;
      continue;
    }
    if (!block) continue;
    const item = /^- ([^:]+): (.*?)(?: \(([^()]*)\))?\s*$/.exec(line);
    if (item) block.items.push({ name: item[1].trim(), type: item[2].trim(), note: item[3] ?? "" });
    else if (line.trim() && !block.description) block.description = line.trim();
  }
  return blocks;
}

// "### Name" + optional description + "| `field`? | type |" rows
function parseTypes(lines) {
  const types = {};
  let t = null;
  for (const line of lines) {
    const h = /^### (\S+)\s*$/.exec(line);
    if (h) {
      t = { name: h[1], description: "", fields: {} };
      types[h[1]] = t;
      continue;
    }
    if (!t) continue;
    const cells = line.startsWith("| `") ? line.trim().split(/(?<!\\)\|/).slice(1, -1) : [];
    const name = /^ `([^`]+)`(\?)? $/.exec(cells[0] ?? "");
    if (name) {
      t.fields[name[1]] = {
        required: !name[2],
        type: parseTypeExpr(cells[1]),
        default: cells[2]?.trim().replace(/^`|`$/g, "").replace(/\\\|/g, "|") || undefined,
      };
    } else if (line.trim() && !line.startsWith("|") && !t.description) {
      t.description = line.trim();
    }
  }
  return types;
}

// The reference's type notation: `a \| b`, `[Name](#name)`, `X[]`, `map of X`, `` `literal` ``,
// number, integer, string, boolean, null, object, any. Returns a tree checked by matches().
function parseTypeExpr(src) {
  src = src.trim();
  const alts = splitTop(src, " \\| ");
  if (alts.length > 1) return { union: alts.map(parseTypeExpr) };
  if (src.startsWith("map of ")) return { map: parseTypeExpr(src.slice("map of ".length)) };
  if (src.endsWith("[]")) return { array: parseTypeExpr(src.slice(0, -2)) };
  let m = /^\[([^\]]+)\]\(#[^)]*\)$/.exec(src);
  if (m) return { ref: m[1] };
  m = /^`([^`]*)`$/.exec(src);
  if (m) return { literal: m[1] };
  if (["number", "integer", "string", "boolean", "null", "object", "any"].includes(src)) {
    return { prim: src };
  }
  if (src.startsWith("{")) return { prim: "object", inline: src }; // an inline shape
  return { unknown: src };
}

function splitTop(src, sep) {
  // separators inside `...` or {...} do not split
  const parts = [];
  let depth = 0, tick = false, last = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === "`") tick = !tick;
    else if (!tick && c === "{") depth++;
    else if (!tick && c === "}") depth--;
    else if (!tick && depth === 0 && src.startsWith(sep, i)) {
      parts.push(src.slice(last, i));
      i += sep.length - 1;
      last = i + 1;
    }
  }
  parts.push(src.slice(last));
  return parts.map((p) => p.trim());
}

// ---------------------------------------------------------------- checking against the tables

class Checker {
  constructor(types) {
    this.types = types;
  }

  // problems of `value` as type `name`, each "path: what"
  object(value, name, path = name) {
    const t = this.types[name];
    if (!t) return [`${path}: the reference has no type ${name}`];
    if (!isObject(value)) return [`${path}: not an object (${describe(value)})`];
    const problems = [];
    for (const [field, spec] of Object.entries(t.fields)) {
      if (spec.required && !(field in value)) problems.push(`${path}.${field}: required, missing`);
    }
    // "any other tick name may appear" (TicksFields, Ticks): other fields are allowed there,
    // with "a value of those types"; everywhere else a field the table does not list is a finding.
    const open = /any other .* may appear/.test(t.description) || name === "Ticks";
    for (const [field, v] of Object.entries(value)) {
      const spec = t.fields[field];
      if (!spec) {
        if (open) {
          if (!(v === null || typeof v === "number" || typeof v === "string" || isObject(v))) {
            problems.push(`${path}.${field}: unlisted field of type ${describe(v)}`);
          }
        } else problems.push(`${path}.${field}: not in the reference's table`);
        continue;
      }
      problems.push(...this.value(v, spec.type, `${path}.${field}`));
    }
    return problems;
  }

  value(v, type, path) {
    return this.matches(v, type, path) ? [] : [`${path}: ${describe(v)} is not ${show(type)}`];
  }

  matches(v, type, path) {
    if (type.union) return type.union.some((t) => this.matches(v, t, path));
    if (type.literal !== undefined) return v === type.literal || String(v) === type.literal;
    if (type.array) return Array.isArray(v) && v.every((x, i) => this.matches(x, type.array, `${path}[${i}]`));
    if (type.map) return isObject(v) && Object.values(v).every((x) => this.matches(x, type.map, path));
    if (type.ref) return this.object(v, type.ref, path).length === 0;
    switch (type.prim) {
      case "number": return typeof v === "number";
      case "integer": return Number.isInteger(v);
      case "string": return typeof v === "string";
      case "boolean": return typeof v === "boolean";
      case "null": return v === null;
      case "object": return isObject(v);
      case "any": return true;
    }
    return false; // a notation this script does not understand
  }
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function describe(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "number") return Number.isInteger(v) ? `integer ${v}` : `number ${v}`;
  if (typeof v === "string") return `string ${JSON.stringify(v.slice(0, 40))}`;
  return typeof v;
}

function show(type) {
  if (type.union) return type.union.map(show).join(" | ");
  if (type.literal !== undefined) return JSON.stringify(type.literal);
  if (type.array) return `${show(type.array)}[]`;
  if (type.map) return `map of ${show(type.map)}`;
  if (type.ref) return type.ref;
  return type.prim ?? type.unknown;
}

// ---------------------------------------------------------------- the surface, as the reference says

function kindsOf(ref) {
  // Every `tws.sub.<kind>` request is a subscription kind.
  const kinds = {};
  for (const [subject, block] of Object.entries(ref.requests)) {
    const m = /^tws\.sub\.(.+)$/.exec(subject);
    if (!m) continue;
    const kind = m[1];
    const request = refName(itemType(block, "request"));
    const reply = itemType(block, "reply") ?? "";
    // "[SubscribeReply](#subscribereply) & {`image`: [TicksFields](#ticksfields)}"
    const image = /`image`: \[([^\]]+)\]/.exec(reply)?.[1] ?? null;
    const replyType = refName(reply.split(" & ")[0]);
    // The data subject: "published on `tws.ticks.{conId}`" in the entry, or the published
    // subject whose description is "the <kind> stream's messages".
    let pattern = /published on `([^`]+)`/.exec(block.description)?.[1] ?? null;
    for (const [subj, pub] of Object.entries(ref.published)) {
      if (!pattern && pub.description.startsWith(`the ${kind} stream's messages`)) pattern = subj;
    }
    kinds[kind] = { kind, subject, request, replyType, image, pattern };
  }
  return kinds;
}

function itemType(block, name) {
  return block.items.find((i) => i.name === name)?.type ?? null;
}

function refName(src) {
  return src ? /^\[([^\]]+)\]/.exec(src.trim())?.[1] ?? null : null;
}

// The message types published on a subject pattern, by their `type` literal.
function messageTypes(ref, pattern) {
  const byLiteral = {};
  for (const item of ref.published[pattern]?.items ?? []) {
    const name = refName(item.type);
    const literal = ref.types[name]?.fields.type?.type.literal;
    if (name && literal !== undefined) byLiteral[literal] = name;
  }
  return byLiteral;
}

// ---------------------------------------------------------------- talking to the daemon

const enc = new TextEncoder();
const dec = new TextDecoder();

async function ask(nc, subject, body, timeout = 10000) {
  const msg = await nc.request(subject, enc.encode(JSON.stringify(body)), { timeout });
  let data;
  try {
    data = JSON.parse(dec.decode(msg.data));
  } catch (e) {
    throw new Error(`${subject}: the reply is not JSON (${e.message})`);
  }
  const code = msg.headers?.get("Nats-Service-Error-Code");
  if (code || (isObject(data) && data.error)) {
    const err = new Error(`${subject}: error ${code || data.error?.code}: ${data.error?.message ?? msg.headers?.get("Nats-Service-Error")}`);
    err.reply = data;
    throw err;
  }
  return data;
}

async function accountOf(nc, prefix) {
  // The status's TWS link lists the accounts (TwsLink.accounts); managed_accounts as a fallback
  // (its accountsList is IB's comma-separated string).
  try {
    const status = await ask(nc, `${prefix}.req.status`, {});
    if (status?.tws?.accounts?.length) return status.tws.accounts[0];
  } catch { /* fall through */ }
  const reply = await ask(nc, `${prefix}.req.managed_accounts`, {});
  return String(reply.accountsList ?? "").split(",").map((a) => a.trim()).filter(Boolean)[0] ?? null;
}

function withPrefix(subject, prefix) {
  return prefix === "tws" ? subject : subject.replace(/^tws\./, `${prefix}.`);
}

async function runKind(nc, ref, check, spec, opts, account, gate, notes) {
  const result = { messages: 0, types: {}, image: false, checksFailed: 0, failed: [] };
  const fail = (what) => { // every failure counted, the first 20 told
    if (result.checksFailed++ < 20) result.failed.push(what);
  };
  const t0 = Date.now();
  const reqType = ref.types[spec.request];
  if (!reqType) {
    fail(`the reference names no request type for tws.sub.${spec.kind}`);
    return result;
  }
  // A required parameter this script cannot know a value for: skipped, and said so.
  const unknown = Object.entries(reqType.fields)
    .filter(([f, s]) => s.required && !["contract", "account"].includes(f)).map(([f]) => f);
  if (unknown.length) {
    result.skipped = `${spec.request} requires ${unknown.join(", ")}, which this script cannot fill in`;
    return result;
  }
  // The body: what the request type asks for that this script can give.
  const body = {};
  if ("contract" in reqType.fields) body.contract = { conId: opts.conId };
  if ("account" in reqType.fields) {
    if (!account) {
      fail("no account: neither tws.req.status nor tws.req.managed_accounts named one");
      return result;
    }
    body.account = account;
  }
  result.body = body;
  const byLiteral = spec.pattern ? messageTypes(ref, spec.pattern) : {};
  if (!spec.pattern) fail(`the reference publishes no subject for kind ${spec.kind}`);

  // Listen first, on the pattern with every {token} a wildcard: the exact subject is known only
  // from the reply, and a message published between the reply and a later subscription would
  // be lost.
  const wildcard = spec.pattern
    ? withPrefix(spec.pattern, opts.prefix).replace(/\{[^}]+\}$/, ">").replace(/\{[^}]+\}/g, "*")
    : `${opts.prefix}.>`;
  const early = [];
  let deliver = (m) => early.push(m);
  const sub = nc.subscribe(wildcard, { callback: (err, m) => { if (!err) deliver(m); } });
  await nc.flush();

  let reply;
  try {
    reply = await ask(nc, withPrefix(spec.subject, opts.prefix), body);
  } catch (e) {
    sub.unsubscribe();
    fail(`subscribe: ${e.message}`);
    return result;
  }
  for (const p of check.object(reply, spec.replyType ?? "SubscribeReply", "reply")
    .filter((p) => !p.startsWith("reply.image"))) fail(p);
  if (spec.image) {
    for (const p of check.object(reply.image, spec.image, `image(${spec.image})`)) fail(p);
    result.image = true;
  }
  result.subject = reply.subject;
  result.subscribeMs = Date.now() - t0;
  result.state = reply.state;
  if (spec.pattern) {
    const re = new RegExp(
      "^" + withPrefix(spec.pattern, opts.prefix).replace(/\./g, "\\.")
        .replace(/\{[^}]+\}$/, ".+").replace(/\{[^}]+\}/g, "[^.]+") + "$");
    if (!re.test(reply.subject)) fail(`reply.subject ${reply.subject} does not fit ${spec.pattern}`);
  }

  // Decode and check the messages on the reply's subject; those at or before the reply's seq are
  // already in the image. `ts` is an integer (ns since the epoch, which JSON.parse may round).
  let lastSeq = reply.seq;
  let done;
  const enough = new Promise((r) => { done = r; });
  const onMessage = (m) => {
    if (m.subject !== reply.subject) return;
    let msg;
    try {
      msg = JSON.parse(dec.decode(m.data));
    } catch (e) {
      fail(`message on ${m.subject} is not JSON: ${e.message}`);
      return;
    }
    if (Number.isInteger(msg?.seq) && msg.seq <= reply.seq) return; // covered by the image
    result.messages++;
    const typeName = byLiteral[msg?.type];
    if (!typeName) fail(`message type ${JSON.stringify(msg?.type)} is not published on ${spec.pattern}`);
    else {
      result.types[msg.type] = (result.types[msg.type] ?? 0) + 1;
      for (const p of check.object(msg, typeName, `${msg.type}#${msg.seq}`)) fail(p);
    }
    if (msg.seq !== lastSeq + 1) fail(`seq ${msg.seq} after ${lastSeq} (expected ${lastSeq + 1})`);
    lastSeq = msg.seq;
    if (msg.epoch !== reply.epoch) fail(`epoch ${msg.epoch} is not the reply's ${reply.epoch}`);
    if (Number.isInteger(msg.ts) && !Number.isSafeInteger(msg.ts)) notes.tsAboveSafeInteger = true;
    if (result.messages >= opts.messages) done();
    // a kind that publishes on change only (positions) may send just one: 1 s of quiet ends it
    clearTimeout(settle);
    settle = setTimeout(done, 1000);
  };
  let settle;
  deliver = onMessage;
  early.splice(0).forEach(onMessage);
  gate.arrive();
  await gate.open; // every kind subscribed (and, with --trade, the order placed)
  const timer = setTimeout(done, opts.wait * 1000);
  await enough;
  clearTimeout(timer);
  clearTimeout(settle);
  result.ms = Date.now() - t0;
  if (result.messages === 0) {
    fail(`no message on ${reply.subject} within ${opts.wait}s` +
      (opts.trade ? "" : " (a kind that publishes on change only: --trade provokes one)"));
  }

  // Renew, release, and check that the released lease is gone.
  const leases = { leases: [reply.lease] };
  try {
    const renewed = await ask(nc, `${opts.prefix}.lease.renew`, leases);
    for (const p of check.object(renewed, "LeasesReply", "renew")) fail(p);
    if (!renewed.renewed?.includes(reply.lease)) fail(`renew: ${reply.lease} not in renewed ${JSON.stringify(renewed)}`);
    if (renewed.unknown?.includes(reply.lease)) fail(`renew: ${reply.lease} unknown`);
    result.renewed = Boolean(renewed.renewed?.includes(reply.lease));
  } catch (e) {
    fail(`renew: ${e.message}`);
  }
  try {
    const released = await ask(nc, `${opts.prefix}.unsub`, leases);
    for (const p of check.object(released, "LeasesReply", "unsub")) fail(p);
    if (!released.released?.includes(reply.lease)) fail(`unsub: ${reply.lease} not in released ${JSON.stringify(released)}`);
    if (released.unknown?.includes(reply.lease)) fail(`unsub: ${reply.lease} unknown`);
    result.released = Boolean(released.released?.includes(reply.lease));
    const again = await ask(nc, `${opts.prefix}.lease.renew`, leases);
    if (!again.unknown?.includes(reply.lease)) fail(`renew after unsub: ${reply.lease} not unknown ${JSON.stringify(again)}`);
  } catch (e) {
    fail(`unsub: ${e.message}`);
  }
  sub.unsubscribe();
  return result;
}

// A 1-share market order (the reference's PlaceOrder), to make the account kinds publish.
async function placeOrder(nc, check, opts) {
  const result = { checksFailed: 0, failed: [] };
  const body = {
    contract: { conId: opts.conId },
    order: { action: "BUY", totalQuantity: 1, orderType: "MKT" },
  };
  try {
    result.reply = await ask(nc, `${opts.prefix}.req.place_order`, body, 15000);
    result.failed.push(...check.object(result.reply, "PlaceReply", "place_order"));
  } catch (e) {
    result.failed.push(`place_order: ${e.message}`);
  }
  result.checksFailed = result.failed.length;
  return result;
}

// Every kind arrives once it has subscribed (or given up); `open` lets them all go on.
function makeGate(n) {
  let count = 0, reached, release;
  const all = new Promise((r) => { reached = r; });
  const open = new Promise((r) => { release = r; });
  if (n === 0) reached();
  return {
    all,
    release,
    ticket() {
      let used = false;
      return {
        open,
        arrive() {
          if (!used) {
            used = true;
            if (++count === n) reached();
          }
        },
      };
    },
  };
}

// ---------------------------------------------------------------- main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let ref;
  try {
    ref = readReference(opts.reference);
  } catch (e) {
    console.error(`every_kind: cannot read the reference ${opts.reference}: ${e.message}`);
    process.exit(2);
  }
  const check = new Checker(ref.types);
  const kinds = kindsOf(ref);
  for (const k of opts.kinds ?? []) {
    if (!kinds[k]) {
      console.error(`every_kind: the reference has no kind ${k} (${Object.keys(kinds).join(", ")})`);
      process.exit(2);
    }
  }
  if (opts.kinds) for (const k of Object.keys(kinds)) if (!opts.kinds.includes(k)) delete kinds[k];
  // Notations of the subscription types this script cannot check would make checks vacuous.
  const unknownNotation = [];
  for (const t of Object.values(ref.types)) {
    for (const [f, s] of Object.entries(t.fields)) {
      if (JSON.stringify(s.type).includes('"unknown"')) unknownNotation.push(`${t.name}.${f}`);
    }
  }

  let nc;
  try {
    nc = await connect({ servers: opts.url, name: "twsbus-every-kind" });
  } catch (e) {
    console.error(`every_kind: cannot connect to ${opts.url}: ${e.message}`);
    process.exit(2);
  }
  const account = await accountOf(nc, opts.prefix).catch(() => null);
  const results = {};
  const notes = {};
  const gate = makeGate(Object.keys(kinds).length);
  const runs = Object.values(kinds).map(async (spec) => {
    const ticket = gate.ticket();
    try {
      results[spec.kind] = await runKind(nc, ref, check, spec, opts, account, ticket, notes);
    } catch (e) {
      results[spec.kind] = { messages: 0, types: {}, checksFailed: 1, failed: [`crashed: ${e.stack ?? e}`] };
    } finally {
      ticket.arrive();
    }
  });
  await gate.all;
  let trade = null;
  if (opts.trade) trade = await placeOrder(nc, check, opts);
  gate.release();
  await Promise.all(runs);
  await nc.drain();
  if (trade?.failed.length) results["(trade)"] = trade;

  const ordered = Object.fromEntries([...Object.keys(kinds), "(trade)"]
    .filter((k) => results[k]).map((k) => [k, results[k]]));
  const failed = Object.values(ordered).reduce((n, r) => n + (r.checksFailed ?? 0), 0);
  const summary = {
    ok: failed === 0 && Object.keys(kinds).length > 0,
    kinds: ordered,
    checksFailed: failed,
    skipped: Object.keys(ordered).filter((k) => ordered[k].skipped),
    account,
    trade: trade?.reply ?? null,
    notes,
    reference: opts.reference,
    notationNotUnderstood: unknownNotation,
  };
  console.log(JSON.stringify(summary));
  process.exit(summary.ok ? 0 : 1);
}

main().catch((e) => {
  console.error(`every_kind: ${e.stack ?? e}`);
  process.exit(2);
});
