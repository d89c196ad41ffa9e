// Drives pomelo-go-client, installed in this directory's node_modules as a
// user's project installs it, against the server of ../client_test.go:
//
//   node client.mjs <frontend-ws-url> <scenario>
//
// It imports the package by name, and passes no WebSocket in the "session"
// scenario: node 20 has no global one, so the client must find the ws
// package itself. It prints one JSON line per check
// ({"event":"ok","what":...}) and ends with {"event":"done"} (exit 0) or
// {"event":"fail","message":...} (exit 1).
import { PomeloClient, PomeloError, ClientError } from 'pomelo-go-client';
import WebSocket from 'ws';
import { check, eq, next, nextPush, rejection, run } from './check.mjs';

const [url, scenario] = process.argv.slice(2);

async function session() {
  check('node has no global WebSocket', typeof globalThis.WebSocket === 'undefined', typeof globalThis.WebSocket);
  const c = new PomeloClient({ type: 'pomelo-go-js-test', version: '1.2.3' });
  check('not connected before connect', !c.connected);

  // Handshake, with the ws package found by the client itself.
  const reply = await c.connect(url, { from: 'client.mjs' });
  check('handshake', c.connected);
  check("handshake reply's user", eq(reply, { from: 'client.mjs' }), reply);
  check('heartbeat from the handshake', c.heartbeat > 0, c.heartbeat);
  const again = await rejection(c.connect(url));
  check('connect twice rejects ALREADY_CONNECTED', again instanceof PomeloError && again.name === ClientError.ALREADY_CONNECTED, again.name);

  // Request and response, on the frontend and forwarded to a backend.
  const login = await c.request('connector.entry.login', { uid: 'ann' });
  check('login', eq(login, { uid: 'ann' }), login);
  const body = { hello: 'world', n: 42, list: [1, 'two', true, null], nested: { a: { b: 'c' } }, text: 'héllo ✓ 😀' };
  const echoed = await c.request('room.h.echo', body);
  check('forwarded echo', eq(echoed, body), echoed);
  const [a, b] = await Promise.all([c.request('room.h.echo', { i: 1 }), c.request('room.h.echo', { i: 2 })]);
  check('concurrent requests paired by id', a.i === 1 && b.i === 2, [a, b]);

  // Error bodies: a named application error and a framework error.
  const denied = await rejection(c.request('room.h.fail', {}));
  check('named error rejects with a PomeloError', denied instanceof PomeloError && denied instanceof Error);
  check('named error: code, stable name, message', denied.code === 403 && denied.name === 'NOT_ALLOWED' && denied.message === 'not for ann',
    { code: denied.code, name: denied.name, message: denied.message });
  check('named error: body', denied.body && denied.body.error === 'NOT_ALLOWED' && denied.body.code === 403, denied.body);
  const unknown = await rejection(c.request('room.h.nope', {}));
  check('unknown route: UNKNOWN_ROUTE 500', unknown instanceof PomeloError && unknown.name === 'UNKNOWN_ROUTE' && unknown.code === 500,
    { code: unknown.code, name: unknown.name });

  // Pushes: one a request makes, and one a notify makes.
  const pushed = nextPush(c, 'onPush');
  const answer = await c.request('room.h.push', { news: 'fresh' });
  check('push request answered', eq(answer, { pushed: true }), answer);
  const push = await pushed;
  check('push body and route', eq(push.body, { news: 'fresh' }) && push.route === 'onPush', push);

  const notified = nextPush(c, 'onNotify');
  c.notify('connector.entry.note', { text: 'via notify' });
  check('notify runs its handler, which pushes', eq((await notified).body, { text: 'via notify' }));

  // Listeners: off() and the function on() returns.
  let calls = 0;
  const counter = () => { calls++; };
  c.on('onPush', counter);
  c.off('onPush', counter);
  const stillPushed = nextPush(c, 'onPush', 'onPush after off');
  await c.request('room.h.push', { news: 'again' });
  await stillPushed;
  check('off unregisters', calls === 0, calls);

  // Kick: the event with the server's reason, then close; then CLOSED.
  const kicked = next(c, 'kick', 'the kick');
  const closed = next(c, 'close', 'the close');
  c.notify('connector.entry.kickMe', { reason: 'by-test' });
  check('kick event with the reason', eq(await kicked, { reason: 'by-test' }));
  const ev = await closed;
  check('close event after the kick', ev.kicked === 'by-test', ev);
  check('not connected after the kick', !c.connected);
  const after = await rejection(c.request('room.h.echo', {}));
  check('request after close rejects CLOSED', after instanceof PomeloError && after.name === ClientError.CLOSED, after.name);
  let threw = null;
  try { c.notify('room.h.echo', {}); } catch (err) { threw = err; }
  check('notify after close throws CLOSED', threw instanceof PomeloError && threw.name === ClientError.CLOSED);
}

async function option() {
  // The WebSocket option wins over the ws package the client would import.
  let made = 0;
  class Counted extends WebSocket {
    constructor(...args) { super(...args); made++; }
  }
  const c = new PomeloClient({ WebSocket: Counted, timeout: 300 });
  await c.connect(url);
  check('connected through the WebSocket option', c.connected && made === 1, made);
  const timedOut = await rejection(c.request('room.h.hang', {}));
  check('no answer rejects TIMEOUT', timedOut instanceof PomeloError && timedOut.name === ClientError.TIMEOUT && timedOut.code === 0, timedOut.name);
  const closed = next(c, 'close', 'the close');
  const pending = rejection(c.request('room.h.hang', {}));
  c.disconnect();
  const ev = await closed;
  check('close event after disconnect', ev.kicked === null, ev);
  const err = await pending;
  check('pending request rejects CLOSED on disconnect', err instanceof PomeloError && err.name === ClientError.CLOSED, err.name);
}

async function refused() {
  const c = new PomeloClient({ version: '0.0.1' });
  const err = await rejection(c.connect(url));
  check('old client refused: OLD_CLIENT 501', err instanceof PomeloError && err.name === ClientError.OLD_CLIENT && err.code === 501,
    { code: err.code, name: err.name });
  check('not connected after a refusal', !c.connected);
  const down = await rejection(new PomeloClient({ version: '1.0.0' }).connect('ws://127.0.0.1:1/'));
  check('no server: CONNECT_FAILED', down instanceof PomeloError && down.name === ClientError.CONNECT_FAILED, down.name);
}

run({ session, option, refused }, scenario);
