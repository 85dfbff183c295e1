'use strict';
// W9 worker: send one message as soon as it starts, then disconnect once
// it is written, and exit.
process.send({ op: 'ready' }, () => process.disconnect());
