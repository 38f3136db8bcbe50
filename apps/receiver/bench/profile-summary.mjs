// Where a receiver's CPU went, from a V8 CPU profile written with BENCH_PROFILE=<dir>: each sample is
// charged to the nearest frame (leaf to root) of a known component; node internals and native code
// are charged to the component that called them. Prints shares of the busy (non-idle) time.
//
//   node bench/profile-summary.mjs <dir>/CPU.*.cpuprofile
import { readFileSync } from 'node:fs';

const COMPONENTS = [
  [/^node:(net|_http_outgoing|internal\/stream_base_commons)/, 'socket writes (HTTP answers, Redis commands)'],
  [/pino|sonic-boom|logger\.js|request-context/, 'the log line and request context'],
  [/forges\//, 'inspectWebhook (@slipway/forges): verify, scan, parse, validate, match'],
  [/job-store|deploy-queue/, 'job records: CREATE_JOBS arguments, DeployQueue batching'],
  [/bullmq|msgpackr/, "BullMQ's add"],
  [/ioredis|redis-parser|denque|standard-as-callback|cluster-key-slot/, 'ioredis (encoding, replies)'],
  [/feedback\//, 'metrics'],
  [/receiver\/dist\/read-body/, 'body reading'],
  [/receiver\/dist\/create-receiver/, "the receiver's handler"],
  [/express|router|send\/|finalhandler|parseurl|mime|content-type|on-finished|type-is|accepts|statuses|qs\//, 'express'],
];

const SPECIAL = new Map([['(idle)', 'idle'], ['(garbage collector)', 'garbage collection'], ['(program)', 'V8, unattributed'], ['(root)', null]]);

const profile = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
const memo = new Map();
function componentOf(id) {
  if (memo.has(id)) return memo.get(id);
  const { url, functionName } = nodes.get(id).callFrame;
  let found = SPECIAL.has(functionName) ? SPECIAL.get(functionName) : undefined;
  if (found === undefined) found = COMPONENTS.find(([pattern]) => pattern.test(url))?.[1];
  if (found === undefined) found = parent.has(id) ? componentOf(parent.get(id)) : null;
  found ??= "node's HTTP parsing and request/response objects";
  memo.set(id, found);
  return found;
}
const totals = new Map();
profile.samples.forEach((id, i) => {
  const c = componentOf(id);
  totals.set(c, (totals.get(c) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const busy = [...totals].filter(([c]) => c !== 'idle').reduce((sum, [, t]) => sum + t, 0);
console.log(`busy ${(busy / 1e3).toFixed(0)} ms`);
for (const [c, t] of [...totals].filter(([c]) => c !== 'idle').sort((a, b) => b[1] - a[1])) console.log(`${((100 * t) / busy).toFixed(1).padStart(5)} %  ${c}`);
