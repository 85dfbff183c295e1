'use strict';
// W6N: W6 without waiting for backpressure: 200 messages of 1 MiB
// ({seq: i, payload: <the same 1 MiB string>}) sent in one go, then
// {op: 'end'}; the child (w6_worker.js) replies with the total payload
// bytes it received. Rate = MiB/s, timed from the first send to the
// reply. Prints the parent's peak RSS too (VmHWM).
const fs = require('fs');
const path = require('path');
const { fork } = require('child_process');

const N = Number(process.argv[2] || 200);
const WARMUP = 10; // untimed batch: the first messages pay for start-up and JIT
const MIB = 1 << 20;
const PAYLOAD = '0123456789abcdef'.repeat(MIB / 16);

const child = fork(path.join(__dirname, 'w6_worker.js'));

function batch(n) {
  return new Promise((resolve, reject) => {
    child.once('message', (reply) => {
      if (reply.bytes === n * MIB) resolve();
      else reject(new Error(`the child got ${reply.bytes} bytes`));
    });
    for (let i = 1; i <= n; i++) child.send({ seq: i, payload: PAYLOAD });
    child.send({ op: 'end' });
  });
}

function peakRssKb() {
  try {
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const m = /VmHWM:\s*(\d+)/.exec(status);
    return m ? m[1] : 'n/a';
  } catch (e) {
    return 'n/a';
  }
}

async function main() {
  await batch(WARMUP);
  const t0 = process.hrtime.bigint();
  await batch(N);
  const ns = Number(process.hrtime.bigint() - t0);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.disconnect();
  const code = await exited;
  if (code !== 0) throw new Error(`worker exited with ${code}`);
  console.log(`RATE ${(N / (ns / 1e9)).toFixed(1)}`);
  console.log(`PEAK_RSS_KB ${peakRssKb()}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
