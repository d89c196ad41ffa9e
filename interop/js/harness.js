#!/usr/bin/env node
// Drives a pomelo-go frontend with the real, unmodified Pomelo JavaScript
// client (pomelo-jsclient-websocket + pomelo-protocol), the way a browser
// runs it, under node with the ws package as the WebSocket implementation.
//
//   node harness.js <scenario> <ws-url> [args...]
//
// Every observed event is printed to stdout as one JSON line, for example
//   {"event":"response","route":"connector.entryHandler.echo","body":{...}}
// The last line is {"event":"done"} (exit 0) or {"event":"fail","message":...}
// (exit 1). The client's own console output goes to stderr.
//
// Scenarios (see ../interop_test.go for the assertions):
//   session <url>             echo, error responses, bind, notify + push,
//                             pushes from the server, then kick from a handler
//   bulk <url> [n] [kB]       n pipelined echo requests, then one of kB kilobytes
//   heartbeat <url> [idleMs]  stay idle for idleMs (default 5000), then echo
//   kicked <url> <uid>        bind uid, then wait to be kicked by the server
//   reject <url>              expect the handshake to be refused (code 501)
'use strict';

// ---- shims: what the browser would provide ----------------------------------
// The client's console.log/console.error calls must not mix with the JSON
// events on stdout.
const util = require('util');
for (const k of ['log', 'info', 'warn', 'error', 'debug']) {
  console[k] = (...args) => process.stderr.write('[client] ' + util.formatWithOptions({ depth: 0, breakLength: Infinity }, ...args) + '\n');
}

const emitted = [];
function emit(ev) {
  if (finished) return;
  ev.t = Date.now() - startedAt;
  emitted.push(ev);
  process.stdout.write(JSON.stringify(ev) + '\n');
  for (const w of waiters.slice()) {
    if (w.match(ev)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(ev);
    }
  }
}
const startedAt = Date.now();
const waiters = [];

// A WebSocket that taps every frame in both directions and reports the
// packages it carries ({"event":"wire",...}); it is the ws package otherwise.
const WS = require('ws');
let frameNo = 0;
function tap(dir, data) {
  let bytes;
  if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else if (typeof data === 'string') bytes = new TextEncoder().encode(data);
  else return;
  const frame = ++frameNo;
  let off = 0;
  while (off + 4 <= bytes.length) {
    const type = bytes[off];
    const len = (bytes[off + 1] << 16) | (bytes[off + 2] << 8) | bytes[off + 3];
    const body = bytes.subarray(off + 4, off + 4 + len);
    const ev = { event: 'wire', dir, frame, type, len };
    if (type === 4 && body.length > 0) ev.flag = body[0];
    if ((type === 1 || type === 5) && body.length > 0) {
      try { ev.json = JSON.parse(new TextDecoder().decode(body)); } catch (e) { ev.badJSON = true; }
    }
    emit(ev);
    off += 4 + len;
  }
  if (off !== bytes.length) emit({ event: 'wire', dir, frame, trailing: bytes.length - off });
}
class TappedWebSocket extends WS {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    // Added before the client sets onmessage, so it runs first.
    this.addEventListener('message', (ev) => tap('in', ev.data));
  }
  send(data, ...rest) {
    tap('out', data);
    return super.send(data, ...rest);
  }
}

global.window = global;                 // the client reads everything from window
window.WebSocket = TappedWebSocket;     // browsers' WebSocket
window.EventEmitter = require('events').EventEmitter; // the component emitter it is built with
// Loaded with window defined, pomelo-protocol takes its browser path
// (Uint8Array instead of Buffer) and sets window.Protocol.
require('pomelo-protocol');
if (!window.Protocol) throw new Error('pomelo-protocol did not set window.Protocol');
const pomelo = require('pomelo-jsclient-websocket');
// -----------------------------------------------------------------------------

// finish prints the last event and exits once stdout is flushed: process.exit
// alone drops what is still queued for a full pipe.
let finished = false;
function finish(ev, code) {
  if (finished) return;
  emit(ev);
  finished = true;
  try { pomelo.disconnect(); } catch (e) { /* already closed */ }
  process.stdout.write('', () => process.exit(code));
}
function fail(message) { finish({ event: 'fail', message: String(message) }, 1); }
function done() { finish({ event: 'done' }, 0); }

// waitFor resolves with the first event (already seen or future) that
// matches, or fails the run after ms.
function waitFor(what, match, ms) {
  const seen = emitted.find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const w = { match, resolve: (ev) => { clearTimeout(timer); resolve(ev); } };
    const timer = setTimeout(() => fail('timed out after ' + ms + 'ms waiting for ' + what), ms);
    waiters.push(w);
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function request(route, msg, ms = 5000) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail('no response to ' + route + ' within ' + ms + 'ms'), ms);
    pomelo.request(route, msg, (body) => {
      clearTimeout(timer);
      emit({ event: 'response', route, body });
      resolve(body);
    });
  });
}
function notify(route, msg) {
  pomelo.notify(route, msg);
  emit({ event: 'notified', route });
}

// Client-level events, registered before connecting.
for (const route of ['onNotify', 'onPush', 'onBroadcast']) {
  pomelo.on(route, (body) => emit({ event: 'push', route, body }));
}
pomelo.on('onKick', (data) => emit({ event: 'kick', reason: data && data.reason, body: data }));
pomelo.on('close', (ev) => emit({ event: 'close', code: ev && ev.code }));
pomelo.on('error', (err) => emit({ event: 'error', error: String(err) }));
pomelo.on('io-error', (ev) => emit({ event: 'io-error', error: String(ev && (ev.message || ev.error || ev)) }));
pomelo.on('heartbeat timeout', () => emit({ event: 'heartbeat-timeout' }));

function connect(url, ms = 5000, refusalExpected = false) {
  const u = new URL(url);
  if (u.protocol !== 'ws:') fail('only ws:// urls: ' + url);
  return new Promise((resolve) => {
    let connected = false;
    const timer = setTimeout(() => fail('handshake not completed within ' + ms + 'ms'), ms);
    if (!refusalExpected) {
      pomelo.on('close', () => { if (!connected) fail('connection closed before the handshake completed'); });
    }
    pomelo.init({
      // The client builds 'ws://' + host + ':' + port; a path rides on the host.
      host: u.hostname + (u.pathname !== '/' ? ':' + u.port + u.pathname : ''),
      port: u.pathname !== '/' ? undefined : u.port,
      user: {},
      handshakeCallback: (user) => emit({ event: 'handshake-callback', user: user === undefined ? null : user }),
    }, () => {
      connected = true;
      clearTimeout(timer);
      emit({ event: 'connected' });
      resolve();
    });
  });
}

const isPush = (route) => (ev) => ev.event === 'push' && ev.route === route;
const isKick = (ev) => ev.event === 'kick';
const isClose = (ev) => ev.event === 'close';

const scenarios = {
  async session(url) {
    await connect(url);
    await request('connector.entryHandler.echo', {
      hello: 'world', n: 42, list: [1, 'two', true, null], nested: { a: { b: 'c' } }, text: 'héllo wörld ✓',
    });
    await request('connector.entryHandler.nope', { x: 1 });   // unknown, well-formed route
    await request('nodots', { x: 1 });                         // not serverType.handler.method
    await request('connector.entryHandler.echo', [1, 2]);      // not an object: BAD_REQUEST
    await request('connector.entryHandler.enter', { uid: 'alice' });
    notify('connector.entryHandler.notify', { text: 'hi', n: 7 });
    await waitFor('push onNotify', isPush('onNotify'), 5000);
    // The test pushes these from Go once alice is bound.
    await waitFor('push onPush', isPush('onPush'), 10000);
    await waitFor('push onBroadcast', isPush('onBroadcast'), 10000);
    await request('connector.entryHandler.echo', { after: 'pushes' });
    // kickMe kicks this session: the kick arrives, then the server closes.
    pomelo.request('connector.entryHandler.kickMe', {}, (body) => emit({ event: 'response', route: 'connector.entryHandler.kickMe', body }));
    await waitFor('kick', isKick, 5000);
    await waitFor('close after kick', isClose, 5000);
    done();
  },

  async bulk(url, count = '300', bigKB = '200') {
    await connect(url);
    // Pipelined requests, 50 at a time: ids pass 127 and 255, so they take
    // two varint bytes.
    const n = Number(count);
    for (let i = 1; i <= n; i += 50) {
      const batch = [];
      for (let j = i; j < i + 50 && j <= n; j++) batch.push(request('connector.entryHandler.echo', { seq: j }));
      await Promise.all(batch);
    }
    // One large body, in both directions.
    const big = 'x'.repeat(Number(bigKB) * 1024);
    const body = await request('connector.entryHandler.echo', { big });
    if (!body || body.big !== big) fail('large echo came back different');
    done();
  },

  async heartbeat(url, idleMs = '5000') {
    await connect(url);
    await request('connector.entryHandler.echo', { before: 'idle' });
    const idle = Number(idleMs);
    emit({ event: 'idle', ms: idle });
    await sleep(idle);
    if (emitted.some(isClose)) fail('connection closed while idle');
    await request('connector.entryHandler.echo', { after: 'idle' });
    done();
  },

  async kicked(url, uid) {
    if (!uid) fail('kicked needs a uid');
    await connect(url);
    await request('connector.entryHandler.enter', { uid });
    emit({ event: 'ready' });
    await waitFor('kick', isKick, 20000);
    await waitFor('close after kick', isClose, 5000);
    done();
  },

  async reject(url) {
    // The handshake reply is 501: the client emits 'error' and never calls
    // the init callback; the server closes the connection.
    connect(url, 60000, true).then(() => fail('handshake unexpectedly succeeded'));
    await waitFor('handshake error', (ev) => ev.event === 'error', 5000);
    await waitFor('close after refused handshake', isClose, 5000);
    done();
  },
};

const [scenario, url, ...args] = process.argv.slice(2);
if (!scenarios[scenario] || !url) {
  process.stderr.write('usage: node harness.js <' + Object.keys(scenarios).join('|') + '> <ws-url> [args...]\n');
  process.exit(2);
}
process.on('uncaughtException', (err) => fail('uncaught exception: ' + (err && err.stack || err)));
process.on('unhandledRejection', (err) => fail('unhandled rejection: ' + (err && err.stack || err)));
scenarios[scenario](url, ...args).catch((err) => fail(err && err.stack || err));
