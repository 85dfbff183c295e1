'use strict';
// W4: IPC ping-pong over fork's channel, 20000 round trips. The parent
// sends {id: i, op: 'ping', payload: 'x'}, the child replies {id: i, op:
// 'pong'}, and the parent waits for the reply before sending the next.
// Default serialization ('json'), as a plain fork() uses.
const path = require('path');
const { fork } = require('child_process');

const N = Number(process.argv[2] || 20000);
const WARMUP = 200; // untimed: the first round trips pay for start-up and JIT

const child = fork(path.join(__dirname, 'w4_worker.js'));

function roundTrip(i) {
  return new Promise((resolve, reject) => {
    child.once('message', (reply) => {
      if (reply.id === i && reply.op === 'pong') resolve();
      else reject(new Error(`unexpected reply ${JSON.stringify(reply)}`));
    });
    child.send({ id: i, op: 'ping', payload: 'x' });
  });
}

async function main() {
  for (let i = 1; i <= WARMUP; i++) await roundTrip(i);
  const t0 = process.hrtime.bigint();
  for (let i = 1; i <= N; i++) await roundTrip(i);
  const ns = Number(process.hrtime.bigint() - t0);
  // 'exit', not 'close': Node emits no 'close' once the parent itself
  // has disconnected the channel.
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.disconnect();
  const code = await exited;
  if (code !== 0) throw new Error(`worker exited with ${code}`);
  console.log(`RATE ${(N / (ns / 1e9)).toFixed(1)}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
