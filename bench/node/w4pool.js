'use strict';
// W4X4: pool-shaped IPC ping-pong. The parent forks 4 workers
// (w4_worker.js) and ping-pongs with each at once, one message in flight
// per worker, 5000 round trips each: 5 processes share the machine's CPUs
// (bench/run pins them to two). Rate = round trips/s, all workers summed.
const path = require('path');
const { fork } = require('child_process');

const N = Number(process.argv[2] || 20000); // round trips in all
const K = 4;
const WARMUP = 200; // untimed, per worker

const children = [];
const WORKER = path.join(__dirname, 'w4_worker.js');
for (let k = 0; k < K; k++) children.push(fork(WORKER));

// n round trips with one worker: a reply triggers the next ping.
function pingPong(child, n) {
  return new Promise((resolve, reject) => {
    let i = 1;
    const onMessage = (reply) => {
      if (reply.id !== i || reply.op !== 'pong') {
        child.off('message', onMessage);
        reject(new Error(`unexpected reply ${JSON.stringify(reply)}`));
        return;
      }
      if (i === n) {
        child.off('message', onMessage);
        resolve();
        return;
      }
      i++;
      child.send({ id: i, op: 'ping', payload: 'x' });
    };
    child.on('message', onMessage);
    child.send({ id: i, op: 'ping', payload: 'x' });
  });
}

async function main() {
  await Promise.all(children.map((c) => pingPong(c, WARMUP)));
  const per = Math.floor(N / K);
  const t0 = process.hrtime.bigint();
  await Promise.all(children.map((c) => pingPong(c, per)));
  const ns = Number(process.hrtime.bigint() - t0);
  for (const child of children) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.disconnect();
    const code = await exited;
    if (code !== 0) throw new Error(`worker exited with ${code}`);
  }
  console.log(`RATE ${(per * K / (ns / 1e9)).toFixed(1)}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
