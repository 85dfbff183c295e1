'use strict';
// W9: fork -> first message back -> exit, 200 times in sequence. The child
// sends one message as it starts, then disconnects and exits; the parent
// receives the message, then waits for the child to exit. Rate = forks/s.
// Unlike X1, Node's start-up is part of what is timed here.
const path = require('path');
const { fork } = require('child_process');

const N = Number(process.argv[2] || 200);
const WARMUP = 5; // untimed: the first forks pay for page faults and caches
const WORKER = path.join(__dirname, 'w9_worker.js');

function once() {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER);
    let ready = false;
    child.on('error', reject);
    child.once('message', (msg) => {
      if (msg.op === 'ready') ready = true;
      else reject(new Error(`unexpected first message ${JSON.stringify(msg)}`));
    });
    child.on('close', (code, signal) => {
      if (!ready) reject(new Error('worker exited before its first message'));
      else if (code === 0) resolve();
      else reject(new Error(`worker exited with ${code ?? signal}`));
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
