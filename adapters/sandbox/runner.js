// Runs inside the cage, as `node runner.js RESULT_FD` under an unprivileged user: reads
// {"code", "inputs"} as JSON on stdin, defines the code, calls main(inputs) (awaiting a
// promise) and writes {"outputs": ...} or {"error", "kind"} as JSON to RESULT_FD (what the
// program prints goes to stdout and stays there). The cage is the boundary.
'use strict';
const fs = require('fs');

const resultFd = Number(process.argv[2]);
const request = JSON.parse(fs.readFileSync(0, 'utf8'));

function answer(payload) {
  fs.writeSync(resultFd, payload);
  fs.closeSync(resultFd);
}

// `Type: message`, with the line of the program where it was thrown (new Function puts
// two lines of its own before the program's).
function describe(error) {
  if (!(error instanceof Error)) return String(error);
  const text = `${error.name}: ${error.message}`;
  const at = /<anonymous>:(\d+):\d+/.exec(String(error.stack));
  return at ? `${text} (line ${Number(at[1]) - 2})` : text;
}

async function run() {
  const define = new Function('require',
    `${request.code}\n;return typeof main === 'function' ? main : undefined;`);
  const main = define(require);
  if (main === undefined) throw new ReferenceError('the code defines no function `main`');
  const outputs = await main(request.inputs);
  if (outputs === null || typeof outputs !== 'object' || Array.isArray(outputs)) {
    throw new TypeError(`main must return an object, got ${outputs === null ? 'null' : typeof outputs}`);
  }
  return JSON.stringify({ outputs });
}

run().then(
  answer,
  (error) => {
    const kind = error instanceof RangeError && /allocation failed|memory/i.test(String(error.message))
      ? 'memory' : 'error';
    answer(JSON.stringify({ error: describe(error), kind }));
  },
);
