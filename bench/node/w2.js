'use strict';
// W2: run `/bin/echo hello` capturing stdout, 2000 times in sequence.
// promisify(execFile) resolves to {stdout, stderr}, like brood.exec_file
// without a callback.
const util = require('util');
const execFile = util.promisify(require('child_process').execFile);

const N = Number(process.argv[2] || 2000);
const WARMUP = 20; // untimed: the first runs pay for lazy loading and JIT

async function once() {
  const { stdout } = await execFile('/bin/echo', ['hello']);
  if (stdout !== 'hello\n') throw new Error(`unexpected stdout ${JSON.stringify(stdout)}`);
}

async function main() {
  for (let i = 0; i < WARMUP; i++) await once();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await once();
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(`RATE ${(N / (ns / 1e9)).toFixed(1)}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
