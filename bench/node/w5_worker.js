'use strict';
// W5 worker: count {seq: i} messages; on {op: 'end'} reply {count: n} and
// start over. Checks the order too. Ends when the parent disconnects.
let count = 0;
process.on('message', (msg) => {
  if (msg.op === 'end') {
    process.send({ count });
    count = 0;
  } else {
    count++;
    if (msg.seq !== count) throw new Error('message out of order');
  }
});
