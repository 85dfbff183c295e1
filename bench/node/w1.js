'use strict';
// W1: spawn /bin/true and wait for 'close', 2000 times in sequence.
// Default stdio ('pipe' x3), as brood.spawn's default, so both pay for pipes.
const { spawn } = require('child_process');

const N = Number(process.argv[2] || 2000);
const WARMUP = 20; // untimed: the first spawns pay for lazy loading and JIT

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

async function main() {
  for (let i = 0; i < WARMUP; i++) await once();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await once();
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(`RATE ${(N / (ns / 1e9)).toFixed(1)}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
