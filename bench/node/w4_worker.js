'use strict';
// W4 worker: answer each ping with a pong of the same id. Ends when the
// parent disconnects.
process.on('message', (msg) => {
  process.send({ id: msg.id, op: 'pong' });
});
