#!/usr/bin/env node
// Runs the chat example with the real, unmodified Pomelo JavaScript client
// (pomelo-jsclient-websocket + pomelo-protocol), the way the demo's web page
// does, under node with the ws package as the WebSocket:
//
//   NODE_PATH=interop/js/node_modules node stockclient.js <gate-ws-url> <alice> <bob>
//
// Several users run in this one process: each gets its own copy of the
// client, which keeps its state in module variables.
//
// Every observed event is printed to stdout as one JSON line, such as
//   {"event":"push","user":"alice","route":"onChat","body":{...}}
// and the last line is {"event":"done"} (exit 0) or {"event":"fail",...}
// (exit 1). The assertions on the bodies are in ../stockclient_test.go.
'use strict';

const util = require('util');
for (const k of ['log', 'info', 'warn', 'error', 'debug']) {
  console[k] = (...args) => process.stderr.write('[client] ' + util.formatWithOptions({ depth: 0, breakLength: Infinity }, ...args) + '\n');
}

const startedAt = Date.now();
const emitted = [];
const waiters = [];
function emit(ev) {
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
function fail(message) {
  emit({ event: 'fail', message: String(message) });
  process.exit(1);
}
// waitFor resolves with the first event, already seen or future, that
// matches; the limit only keeps a broken run from hanging.
function waitFor(what, match, ms = 10000) {
  const seen = emitted.find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail('timed out waiting for ' + what), ms);
    waiters.push({ match, resolve: (ev) => { clearTimeout(timer); resolve(ev); } });
  });
}

// What the browser provides.
global.window = global;
window.WebSocket = require('ws');
window.EventEmitter = require('events').EventEmitter;
require('pomelo-protocol'); // sets window.Protocol
if (!window.Protocol) fail('pomelo-protocol did not set window.Protocol');

// newUser loads a fresh copy of the client for one user.
function newUser(label) {
  const id = require.resolve('pomelo-jsclient-websocket');
  delete require.cache[id];
  require(id);
  const pomelo = window.pomelo;
  for (const route of ['onChat', 'onAdd', 'onLeave']) {
    pomelo.on(route, (body) => emit({ event: 'push', user: label, route, body }));
  }
  pomelo.on('onKick', (data) => emit({ event: 'kick', user: label, reason: data && data.reason }));
  pomelo.on('close', () => emit({ event: 'close', user: label }));
  pomelo.on('error', (err) => emit({ event: 'error', user: label, error: String(err) }));
  return { label, pomelo };
}

function init(u, host, port) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(u.label + ': no handshake with ' + host + ':' + port), 10000);
    u.pomelo.init({ host, port, log: true }, () => {
      clearTimeout(timer);
      emit({ event: 'connected', user: u.label, port: Number(port) });
      resolve();
    });
  });
}

function request(u, route, msg) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(u.label + ': no response to ' + route), 10000);
    u.pomelo.request(route, msg, (body) => {
      clearTimeout(timer);
      emit({ event: 'response', user: u.label, route, body });
      resolve(body);
    });
  });
}

// login is the demo page's login: ask the gate, then enter through the
// connector it names.
async function login(u, gateURL, username, rid, route) {
  const gate = new URL(gateURL);
  await init(u, gate.hostname, gate.port);
  const entry = await request(u, 'gate.gateHandler.queryEntry', { uid: username });
  if (entry.code !== 200) fail('queryEntry answered ' + JSON.stringify(entry));
  u.pomelo.disconnect();
  await init(u, entry.host, entry.port);
  return request(u, route, { username, rid });
}

const isPush = (user, route, from) => (ev) => ev.event === 'push' && ev.user === user && ev.route === route &&
  (from === undefined || (ev.body && (ev.body.from === from || ev.body.user === from)));

async function main(gateURL, aliceName, bobName) {
  const rid = 'room1';
  const alice = newUser('alice');
  await login(alice, gateURL, aliceName, rid, 'connector.entryHandler.enter');

  await request(alice, 'chat.chatHandler.echo', {
    hello: 'world', n: 42, list: [1, 'two', true, null], nested: { a: { b: 'c' } }, text: 'héllo ✓',
  });

  // bob uses the alias "entry".
  const bob = newUser('bob');
  await login(bob, gateURL, bobName, rid, 'connector.entryHandler.entry');
  await waitFor('alice hears bob enter', isPush('alice', 'onAdd', bobName));

  // The demo page's body, extra keys included.
  await request(alice, 'chat.chatHandler.send', { rid, content: 'hello', from: aliceName, target: '*' });
  await waitFor('alice gets her own message', isPush('alice', 'onChat', aliceName));
  await waitFor('bob gets alice\'s message', isPush('bob', 'onChat', aliceName));

  // A private message, as a notify.
  bob.pomelo.notify('chat.chatHandler.send', { rid, content: 'psst', from: bobName, target: aliceName });
  emit({ event: 'notified', user: 'bob' });
  await waitFor('alice gets bob\'s private message', isPush('alice', 'onChat', bobName));
  await waitFor('bob gets his private message', isPush('bob', 'onChat', bobName));

  // alice logs in again from elsewhere: the old session is kicked.
  const alice2 = newUser('alice2');
  await login(alice2, gateURL, aliceName, rid, 'connector.entryHandler.enter');
  await waitFor('the old alice is kicked', (ev) => ev.event === 'kick' && ev.user === 'alice');
  await waitFor('the old alice is closed', (ev) => ev.event === 'close' && ev.user === 'alice' && ev.t >= emitted.find((e) => e.event === 'kick').t);
  await request(alice2, 'chat.chatHandler.send', { rid, content: 'back', from: aliceName, target: '*' });
  await waitFor('bob gets the new alice\'s message', (ev) => isPush('bob', 'onChat', aliceName)(ev) && ev.body.msg === 'back');

  // bob leaves.
  bob.pomelo.disconnect();
  emit({ event: 'disconnected', user: 'bob' });
  await waitFor('alice hears bob leave', isPush('alice2', 'onLeave', bobName));

  emit({ event: 'done' });
  alice2.pomelo.disconnect();
  process.exit(0);
}

const [gateURL, aliceName, bobName] = process.argv.slice(2);
if (!gateURL || !aliceName || !bobName) {
  process.stderr.write('usage: node stockclient.js <gate-ws-url> <alice> <bob>\n');
  process.exit(2);
}
process.on('uncaughtException', (err) => fail('uncaught exception: ' + (err && err.stack || err)));
process.on('unhandledRejection', (err) => fail('unhandled rejection: ' + (err && err.stack || err)));
main(gateURL, aliceName, bobName).catch((err) => fail(err && err.stack || err));
