'use strict';
// W3: 200 concurrent spawns of /bin/true, 10 rounds: start 200, wait for
// all 200 to 'close', repeat. Rate counts spawns, not rounds.
const { spawn } = require('child_process');

const ROUNDS = Number(process.argv[2] || 10);
const BATCH = 200;

function once() {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/true');
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`/bin/true exited with ${code ?? signal}`));
    });
  });
}

function round() {
  const all = [];
  for (let i = 0; i < BATCH; i++) all.push(once());
  return Promise.all(all);
}

async function main() {
  await round(); // untimed warm-up round
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < ROUNDS; r++) await round();
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(`RATE ${((ROUNDS * BATCH) / (ns / 1e9)).toFixed(1)}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
