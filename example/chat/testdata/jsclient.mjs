// Drives the chat example with the project's own ES module client, the
// package pomelo-go-client (clients/js/pomelo-client.js, imported by path),
// under node, with the ws package given as its WebSocket option:
//
//   node jsclient.mjs <node_modules dir> <gate-ws-url> <scenario>
//
// It prints one JSON line per check ({"event":"ok","what":...}) and ends
// with {"event":"done"} (exit 0) or {"event":"fail","message":...} (exit 1).
import { createRequire } from 'node:module';
import {
  PomeloClient, PomeloError, encodeMessage, decodeMessage, encodePackage, decodePackages, MessageType, PackageType,
} from '../../../clients/js/pomelo-client.js';
import { check, fail, eq, next, run } from '../../../clients/js/test/check.mjs';

const [modules, gateURL, scenario] = process.argv.slice(2);
const require = createRequire(modules.replace(/\/?$/, '/'));
const WebSocket = require('ws');

function codec() {
  // Varint ids, as in docs/PROTOCOL.md section 3.
  for (const [id, hex] of [[1, '01'], [127, '7f'], [128, '8001'], [300, 'ac02'], [16384, '808001'], [2 ** 31 - 1, 'ffffffff07']]) {
    const m = encodeMessage({ type: MessageType.RESPONSE, id, body: new Uint8Array([0x7b, 0x7d]) });
    check(`id ${id} encodes as ${hex}`, Buffer.from(m.subarray(1, m.length - 2)).toString('hex') === hex, Buffer.from(m).toString('hex'));
    check(`id ${id} decodes`, decodeMessage(m).id === id);
  }
  const req = encodeMessage({ type: MessageType.REQUEST, id: 1, route: 'chat.chatHandler.echo', body: new TextEncoder().encode('{}') });
  check('request bytes', Buffer.from(req).toString('hex') === '000115' + Buffer.from('chat.chatHandler.echo').toString('hex') + '7b7d');
  const push = decodeMessage(encodeMessage({ type: MessageType.PUSH, code: 0x0102, body: new Uint8Array(0) }));
  check('compressed push route', push.type === MessageType.PUSH && push.code === 0x0102 && push.route === '');
  const two = new Uint8Array([...encodePackage(PackageType.HEARTBEAT), ...encodePackage(PackageType.KICK, new TextEncoder().encode('{"reason":"x"}'))]);
  const pkgs = decodePackages(two);
  check('two packages in one frame', pkgs.length === 2 && pkgs[0].type === PackageType.HEARTBEAT && pkgs[1].type === PackageType.KICK && pkgs[1].body.length === 14);
  let threw = false;
  try { decodePackages(new Uint8Array([4, 0, 0, 9, 1])); } catch (e) { threw = true; }
  check('truncated package rejected', threw);
}

async function enter(name, rid) {
  const gate = new PomeloClient({ WebSocket });
  await gate.connect(gateURL);
  const entry = await gate.request('gate.gateHandler.queryEntry', { uid: name });
  gate.disconnect();
  const c = new PomeloClient({ WebSocket });
  await c.connect(`ws://${entry.host}:${entry.port}/`);
  const res = await c.request('connector.entryHandler.enter', { username: name, rid });
  return { c, res };
}

async function session() {
  codec();
  const { c: ann, res } = await enter('ann', 'js');
  check('enter', eq(res, { code: 200, users: ['ann'] }), res);
  check('heartbeat from the handshake', ann.heartbeat === 3, ann.heartbeat);
  check('routes compressed with the dictionary', ann._codes && ann._codes.get('chat.chatHandler.send') > 0);

  const body = { hello: 'world', n: 42, list: [1, 'two', true, null], nested: { a: { b: 'c' } }, text: 'héllo ✓ 😀' };
  const echoed = await ann.request('chat.chatHandler.echo', body);
  check('echo', eq(echoed, body), echoed);

  try {
    await ann.request('chat.chatHandler.nope', {});
    fail('an unknown route answered');
  } catch (err) {
    check('error response rejects with a PomeloError', err instanceof PomeloError && err.code === 500 && err.name === 'UNKNOWN_ROUTE' && err.message.length > 0, { name: err.name, code: err.code });
  }

  const added = next(ann, 'onAdd', 'onAdd');
  const { c: bob, res: bobRes } = await enter('bob', 'js');
  check('bob enters', eq(bobRes.users, ['ann', 'bob']), bobRes);
  check('onAdd', eq(await added, { user: 'bob' }));

  const annChat = next(ann, 'onChat', "ann's onChat");
  const bobChat = next(bob, 'onChat', "bob's onChat");
  bob.notify('chat.chatHandler.send', { content: 'via notify', target: '*' });
  const want = { msg: 'via notify', from: 'bob', target: '*' };
  check('notify reaches ann', eq(await annChat, want));
  check('notify reaches bob', eq(await bobChat, want));

  // A relogin: the old connection gets the kick, then closes.
  const kicked = next(bob, 'kick', 'the kick');
  const closed = next(bob, 'close', 'the close');
  const { c: bob2 } = await enter('bob', 'js');
  check('kick reason', eq(await kicked, { reason: 'relogin' }));
  const ev = await closed;
  check('close after the kick', ev.kicked === 'relogin', ev);
  check('not connected after the kick', !bob.connected);
  try {
    await bob.request('chat.chatHandler.echo', {});
    fail('a request on a closed client succeeded');
  } catch (err) {
    check('request after close rejects CLOSED', err.name === 'CLOSED', err.name);
  }

  const left = next(ann, 'onLeave', 'onLeave');
  bob2.disconnect();
  check('onLeave', eq(await left, { user: 'bob' }));
  ann.disconnect();
}

async function refused() {
  const c = new PomeloClient({ WebSocket, version: '0.1.0' });
  try {
    await c.connect(gateURL);
    fail('an old client was accepted');
  } catch (err) {
    check('old client refused with 501', err instanceof PomeloError && err.code === 501, { code: err.code, name: err.name });
  }
}

run({ session, refused }, scenario);
