'use strict';
// W6 worker: add up the payload bytes of each message; on {op: 'end'}
// reply {bytes: total} and start over. Ends when the parent disconnects.
let bytes = 0;
process.on('message', (msg) => {
  if (msg.op === 'end') {
    process.send({ bytes });
    bytes = 0;
  } else {
    bytes += msg.payload.length;
  }
});
