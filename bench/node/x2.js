'use strict';
// X2: W1 (spawn /bin/true + wait) 100 times from a parent that holds 1 GiB.
// A fork()-based spawn copies page tables, so its cost grows with the
// parent's size; vfork/posix_spawn does not. This shows which one we pay.
const fs = require('fs');
const { spawn } = require('child_process');

const N = Number(process.argv[2] || 100);
const WARMUP = 5;
const MIB = 1 << 20;

// 1024 distinct 1 MiB Buffers; alloc with a fill value writes every page,
// so the memory is resident, not just reserved.
const hold = [];
for (let i = 0; i < 1024; i++) hold.push(Buffer.alloc(MIB, 65 + (i % 26)));

const rss = /VmRSS:\s*(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
console.error(`node parent VmRSS ${Math.round(Number(rss[1]) / 1024)} MiB`);

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
  if (hold.length !== 1024) throw new Error('lost the 1 GiB'); // keep it alive
  console.log(`RATE ${(N / (ns / 1e9)).toFixed(1)}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
