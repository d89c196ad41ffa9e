// What the node test scripts share (client.mjs, resume.mjs, frontend.mjs
// here, and the chat example's testdata/jsclient.mjs): one JSON line per
// check on stdout ({"event":"ok","what":...}), ending with {"event":"done"}
// (exit 0) or {"event":"fail","message":...} (exit 1), which the Go tests
// read; and bounded waits, which only keep a broken run from hanging.

/** Prints one event line. */
export function emit(ev) { process.stdout.write(JSON.stringify(ev) + '\n'); }

/** Ends the run as failed. */
export function fail(message) {
  emit({ event: 'fail', message: String(message) });
  process.exit(1);
}

/** Passes the check what, or fails the run with detail. */
export function check(what, cond, detail) {
  if (!cond) fail(what + (detail === undefined ? '' : ': ' + JSON.stringify(detail)));
  emit({ event: 'ok', what });
}

/** Compares JSON values, ignoring the order of object keys. */
export function eq(a, b) {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => eq(v, b[i]));
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return eq(ka, kb) && ka.every((k) => eq(a[k], b[k]));
  }
  return a === b;
}

/** Resolves as promise does, or rejects once ms have passed without it. */
export function within(promise, what, ms = 20000) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timed out waiting for ' + what)), ms); }),
  ]);
}

/** Resolves with the first argument of the next call of client's listener for name. */
export function next(client, name, what = name) {
  return within(new Promise((resolve) => {
    const off = client.on(name, (v) => { off(); resolve(v); });
  }), what);
}

/** Resolves with the body and route of the next push of route. */
export function nextPush(client, route, what = route) {
  return within(new Promise((resolve) => {
    const off = client.on(route, (body, r) => { off(); resolve({ body, route: r }); });
  }), what);
}

/** Resolves with what promise rejects with, or {resolved: value}. */
export async function rejection(promise) {
  try {
    return { resolved: await promise };
  } catch (err) {
    return err;
  }
}

/** Runs scenarios[name] and ends the run with its outcome. */
export function run(scenarios, name) {
  process.on('unhandledRejection', (err) => fail('unhandled rejection: ' + (err && err.stack || err)));
  if (!scenarios[name]) fail('unknown scenario ' + name);
  scenarios[name]().then(() => { emit({ event: 'done' }); process.exit(0); }, (err) => fail(err && err.stack || err));
}
