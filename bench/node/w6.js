'use strict';
// W6: 200 messages of 1 MiB ({seq: i, payload: <1 MiB string>}) parent ->
// child, then an {op: 'end'} message; the child replies with the total
// payload bytes it received. Rate = MiB/s, timed from the first send to
// the reply. Default serialization ('json'), as a plain fork() uses.
// The sender respects backpressure as in W5: once child.send() returns
// false, the next message goes with a callback and sending resumes there.
const path = require('path');
const { fork } = require('child_process');

const N = Number(process.argv[2] || 200);
const WARMUP = 10; // untimed batch: the first messages pay for start-up and JIT
const MIB = 1 << 20;
const PAYLOAD = '0123456789abcdef'.repeat(MIB / 16);

const child = fork(path.join(__dirname, 'w6_worker.js'));

// Send n payloads, then the end marker, pausing on backpressure.
function sendAll(n) {
  let i = 0;
  let backlogged = false;
  function pump() {
    backlogged = false;
    while (i < n) {
      i++;
      if (backlogged) {
        child.send({ seq: i, payload: PAYLOAD }, pump);
        return;
      }
      backlogged = !child.send({ seq: i, payload: PAYLOAD });
    }
    child.send({ op: 'end' });
  }
  pump();
}

function batch(n) {
  return new Promise((resolve, reject) => {
    child.once('message', (reply) => {
      if (reply.bytes === n * MIB) resolve();
      else reject(new Error(`the child got ${reply.bytes} bytes`));
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
