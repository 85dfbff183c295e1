'use strict';
// W7: Node's side of bench/brood/w7.lua: a process pool of 2
// child_process.fork workers, 20000 trivial tasks. The pool is what a Node
// user writes or gets from a worker-pool package: run(task) returns a
// Promise; a task goes as {id, task}, the result comes back as
// {id, ok, value}; a FIFO queue (head index, no shift()) and a Map of the
// tasks in flight. Unwindowed: one task in flight per worker (RATE);
// pipelined: up to 64 (RATE_PIPELINED). PEAK_RSS_KB: the parent's peak
// RSS (VmHWM) at the end.
const path = require('path');
const fs = require('fs');
const { fork } = require('child_process');

const N = Number(process.argv[2] || 20000);
const WARMUP = 500; // untimed: the workers start and warm up (JIT)
const SIZE = 2;

class Pool {
  constructor(file, size, concurrency) {
    this.queue = [];
    this.head = 0;
    this.pending = new Map();
    this.nextId = 1;
    this.concurrency = concurrency;
    this.workers = [];
    for (let i = 0; i < size; i++) {
      const w = fork(file);
      w.inflight = 0;
      w.on('message', (msg) => {
        const t = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        w.inflight--;
        this.feed(w);
        if (msg.ok) t.resolve(msg.value);
        else t.reject(new Error(msg.message));
      });
      this.workers.push(w);
    }
  }

  run(task) {
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, task, resolve, reject });
      for (const w of this.workers) this.feed(w);
    });
  }

  feed(w) {
    while (w.inflight < this.concurrency && this.head < this.queue.length) {
      const t = this.queue[this.head];
      this.queue[this.head++] = undefined;
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      }
      this.pending.set(t.id, t);
      w.inflight++;
      w.send({ id: t.id, task: t.task });
    }
  }

  map(tasks) {
    return Promise.all(tasks.map((t) => this.run(t)));
  }

  close() {
    for (const w of this.workers) w.disconnect();
  }
}

async function rate(concurrency, tasks) {
  const pool = new Pool(path.join(__dirname, 'w7_worker.js'), SIZE,
                        concurrency);
  await pool.map(tasks.slice(0, WARMUP));
  const t0 = process.hrtime.bigint();
  const results = await pool.map(tasks);
  const ns = Number(process.hrtime.bigint() - t0);
  for (let i = 0; i < N; i += 997) {
    if (results[i] !== i + 1) throw new Error('wrong result');
  }
  pool.close();
  return N / (ns / 1e9);
}

async function main() {
  const tasks = Array.from({ length: N }, (_, i) => i + 1);
  const unwindowed = await rate(1, tasks);
  const pipelined = await rate(64, tasks);
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  console.log(`RATE ${unwindowed.toFixed(1)}`);
  console.log(`RATE_PIPELINED ${pipelined.toFixed(1)}`);
  console.log(`PEAK_RSS_KB ${(status.match(/VmHWM:\s*(\d+)/) || [])[1]}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
