'use strict';
// W8: encode + decode a 10-field message (integers, floats, short strings,
// a boolean, a 20-integer array) 1000000 times in-process, with
// JSON.stringify/JSON.parse: the serialization Node's fork() channel uses
// by default (brood's side uses its channel's codec, brood.msgpack).
// Rate = encode+decode pairs/s.
const assert = require('assert');

const N = Number(process.argv[2] || 1000000);
const WARMUP = 10000; // untimed: lets the JIT settle

const values = [];
for (let i = 1; i <= 20; i++) values.push(i * 1000);
const MSG = { id: 12345, op: 'update', ratio: 0.75, temp: -12.5,
              name: 'sensor-7', ok: true, count: 99999, tag: 'alpha',
              values, seq: 7 };

// Returns something of the result, so the work cannot be skipped.
function once() {
  const m = JSON.parse(JSON.stringify(MSG));
  return m.values[19];
}

assert.deepStrictEqual(JSON.parse(JSON.stringify(MSG)), MSG);

let sum = 0;
for (let i = 0; i < WARMUP; i++) sum += once();
const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i++) sum += once();
const ns = Number(process.hrtime.bigint() - t0);
assert.strictEqual(sum, (WARMUP + N) * 20000);
console.log(`RATE ${(N / (ns / 1e9)).toFixed(1)}`);
