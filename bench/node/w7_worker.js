'use strict';
// W7 worker: the trivial task, returned as it came.
const work = (x) => x;
process.on('message', (msg) => {
  process.send({ id: msg.id, ok: true, value: work(msg.task) });
});
