'use strict';
// W5: 200000 small messages ({seq: i}) parent -> child, then an {op: 'end'}
// message; the child replies with the count it received. Rate = messages/s,
// timed from the first send to the count reply.
// The sender respects backpressure: child.send() returns false once its
// backlog is too big, and a ChildProcess has no 'drain' event, so the next
// message goes with a callback (called once it is written, i.e. once the
// backlog ahead of it is written too) and sending resumes from there.
const path = require('path');
const { fork } = require('child_process');

const N = Number(process.argv[2] || 200000);
const WARMUP = 2000; // untimed batch: the first messages pay for start-up and JIT

const child = fork(path.join(__dirname, 'w5_worker.js'));

// Send {seq: 1..n}, then the end marker, pausing on backpressure.
function sendAll(n) {
  let i = 0;
  let backlogged = false;
  function pump() {
    backlogged = false;
    while (i < n) {
      i++;
      if (backlogged) {
        child.send({ seq: i }, pump);
        return;
      }
      backlogged = !child.send({ seq: i });
    }
    child.send({ op: 'end' });
  }
  pump();
}

function batch(n) {
  return new Promise((resolve, reject) => {
    child.once('message', (reply) => {
      if (reply.count === n) resolve();
      else reject(new Error(`the child counted ${reply.count}`));
    });
    sendAll(n);
  });
}

async function main() {
  await batch(WARMUP);
  const t0 = process.hrtime.bigint();
  await batch(N);
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
