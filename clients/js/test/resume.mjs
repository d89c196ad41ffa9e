// Drives pomelo-go-client's resume mode (docs/PROTOCOL.md, section 10)
// against the fake frontend of fakeserver.mjs, in this process:
//
//   node resume.mjs <scenario>
//
// It prints one JSON line per check ({"event":"ok","what":...}) and ends
// with {"event":"done"} (exit 0) or {"event":"fail","message":...} (exit 1);
// ../client_test.go runs it.
import { PomeloClient, PomeloError, ClientError, LostReason } from 'pomelo-go-client';
import WebSocket from 'ws';
import { FakeServer, LOSE } from './fakeserver.mjs';
import { check, eq, within, next, rejection, run } from './check.mjs';

const [scenario] = process.argv.slice(2);

// record keeps the client's state events in order.
function record(client) {
  const events = [];
  for (const name of ['connected', 'reconnecting', 'resumed', 'lost', 'close']) {
    client.on(name, (v) => events.push({ name, ...v }));
  }
  return events;
}
const names = (events) => events.map((e) => e.name + (e.reason ? ':' + e.reason : ''));
// deferred is a promise and its resolve.
function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

async function fakeServer(opts) {
  const server = new FakeServer(opts);
  const url = await server.start();
  server.handle('room.echo', (body) => body);
  server.handle('room.push', (body, s) => { s.push('onPush', body); return { pushed: true }; });
  return { server, url };
}

// stock: without the option, the client is as it always was: no
// sys.resume, and a drop closes it for good.
async function stock() {
  const { server, url } = await fakeServer();
  server.handle('room.hang', () => new Promise(() => {}));
  const c = new PomeloClient({ WebSocket });
  const events = record(c);
  await c.connect(url);
  check('stock: no sys.resume in the handshake', !('resume' in server.handshakes[0].sys), server.handshakes[0].sys);
  check('stock: connected event, not resumable', eq(events, [{ name: 'connected', resumable: false }]), events);
  const hang = rejection(c.request('room.hang'));
  const closed = next(c, 'close');
  server.drop(server.sessions[0]);
  const ev = await closed;
  check('stock: a drop closes the client', ev.code === 1006 && ev.kicked === null && c.state === 'disconnected', { ev, state: c.state });
  const err = await hang;
  check('stock: a pending request rejects CLOSED', err instanceof PomeloError && err.name === ClientError.CLOSED, err.name);
  check('stock: no reconnect, no state event but close', eq(names(events), ['connected', 'close']) && server.handshakes.length === 1, events);
  await server.close();
}

// resume: a drop in the middle of requests and pushes; the client
// reconnects, resumes with its token and count, gets every push once in
// order and every response once, and sends again the requests not answered.
async function resume() {
  const { server, url } = await fakeServer();
  const release = deferred();
  server.handle('room.hold', () => release.promise.then(() => ({ held: true })));
  let lost = 0;
  server.handle('room.lose', () => {
    if (lost++ === 0) throw LOSE;
    return { second: true };
  });
  const c = new PomeloClient({ WebSocket, resume: { initialDelay: 20, maxDelay: 100 } });
  const events = record(c);
  const pushes = [];
  c.on('onPush', (b) => pushes.push(b.i));

  await c.connect(url);
  check('resume: sys.resume {} on the first handshake', eq(server.handshakes[0].sys.resume, {}), server.handshakes[0].sys);
  check('resume: connected event, resumable', eq(events, [{ name: 'connected', resumable: true }]) && c.state === 'connected', events);
  const s = server.sessions[0];
  const firstToken = s.token;

  check('resume: echo', eq(await c.request('room.echo', { n: 1 }), { n: 1 }));
  await c.request('room.push', { i: 0 });
  // Sent: 2 responses and 1 push.
  const hold = c.request('room.hold');
  const suspended = server.next('suspended');
  const reconnecting = next(c, 'reconnecting');
  server.accepting = false; // hold the client off until the pushes are in the buffer
  const lose = c.request('room.lose'); // the server drops the connection on it, unrun
  await suspended;
  const ev = await reconnecting;
  check('resume: reconnecting event after the drop', ev.attempt === 1 && ev.code === 1006 && c.state === 'reconnecting' && !c.connected, ev);

  // While suspended: pushes and the held answer go to the buffer; the
  // client queues what it is asked.
  for (const i of [1, 2, 3]) s.push('onPush', { i });
  release.resolve();
  await new Promise((r) => setImmediate(r));
  const bad = await rejection(c.request('room.echo', { big: 1n }));
  check('resume: a body that cannot be sent rejects at once while reconnecting', bad instanceof TypeError, String(bad));
  const queued = c.request('room.echo', { queued: true });
  c.notify('room.note', { queued: true });
  const resumed = next(c, 'resumed');
  server.accepting = true;
  const r = await resumed;
  check('resume: resumed event', r.attempt >= 1 && c.state === 'connected' && c.connected, r);
  const hs = server.handshakes[1].sys.resume;
  check('resume: the reconnect sends the token and the DATA count', hs.token === firstToken && hs.received === 3, hs);
  check('resume: the same session', server.sessions.length === 1 && !s.ended && s.token !== firstToken);

  check('resume: the held request answered once by the replay', eq(await hold, { held: true }));
  check('resume: the lost request sent again and answered', eq(await lose, { second: true }));
  check('resume: the queued request sent after the resume', eq(await queued, { queued: true }));
  await c.request('room.push', { i: 4 });
  check('resume: every push once, in order', eq(pushes, [0, 1, 2, 3, 4]), pushes);
  const ran = (id) => server.runs.filter((x) => x.id === id).length;
  const got = (id) => server.received.filter((x) => x.id === id).length;
  check('resume: the unanswered requests sent again with their ids', got(3) === 2 && got(4) === 2, server.received);
  check('resume: each request run once', [1, 2, 3, 4, 5, 6].every((id) => ran(id) === 1), server.runs);
  check('resume: request ids go on counting across connections', eq(server.received.map((x) => x.id), [1, 2, 3, 4, 3, 4, 5, 6]), server.received);
  check('resume: the queued notify sent once', server.notifies.length === 1 && server.notifies[0].body.queued === true, server.notifies);

  // A second drop resumes with the new token and the whole count.
  const token2 = s.token;
  const resumed2 = next(c, 'resumed');
  server.drop(s);
  await resumed2;
  const hs2 = server.handshakes[2].sys.resume;
  // 3 + 3 pushes + hold, lose, queued + push request and its push = 11
  check('resume: the second resume sends the replaced token and the count', hs2.token === token2 && hs2.received === 11 && hs2.received === s.sent.length, { hs2, sent: s.sent.length });
  check('resume: the state events in order', eq(names(events), ['connected', 'reconnecting', 'resumed', 'reconnecting', 'resumed']), events);

  // disconnect() closes with 1000: the server ends the session at once.
  const ended = server.next('ended');
  const closed = next(c, 'close');
  c.disconnect();
  await within(ended, 'the session to end');
  await closed;
  check('resume: disconnect closes with 1000 and the session ends', server.closes.at(-1).code === 1000 && s.ended && c.state === 'disconnected', server.closes);
  await server.close();
}

// notresumed: the server no longer has the session; the client is told
// resumed:false, reports it lost, fails what was pending, and counts the
// new session from 0.
async function notresumed() {
  const { server, url } = await fakeServer();
  server.handle('room.hang', () => new Promise(() => {}));
  const c = new PomeloClient({ WebSocket, resume: { initialDelay: 20, maxDelay: 100 } });
  const events = record(c);
  await c.connect(url);
  await c.request('room.echo', { n: 1 });
  const hang = rejection(c.request('room.hang'));
  const s = server.sessions[0];
  server.accepting = false;
  const suspended = server.next('suspended');
  const reconnecting = next(c, 'reconnecting');
  server.drop(s);
  await suspended;
  await reconnecting;
  s.end(); // the window ended
  const lost = next(c, 'lost');
  server.accepting = true;
  const ev = await lost;
  check('notresumed: lost NOT_RESUMED, connected in a new session', eq(ev, { reason: LostReason.NOT_RESUMED, connected: true }) && c.connected, ev);
  check('notresumed: the server answered resumed:false', server.sessions.length === 2);
  const err = await hang;
  check('notresumed: a pending request rejects SESSION_LOST', err instanceof PomeloError && err.name === ClientError.SESSION_LOST && err.code === 0, err.name);
  check('notresumed: lost then connected', eq(names(events), ['connected', 'reconnecting', 'lost:NOT_RESUMED', 'connected']), events);

  // The new session is resumable and counts from 0.
  await c.request('room.echo', { n: 2 });
  const resumed = next(c, 'resumed');
  server.drop(server.sessions[1]);
  await resumed;
  const hs = server.handshakes.at(-1).sys.resume;
  check('notresumed: the new session counts from 0', hs.received === 1 && hs.token !== undefined, hs);
  c.disconnect();
  await server.close();
}

// gaveup: nothing answers after the drop; the attempts back off
// exponentially with jitter, capped, then the client gives up.
async function gaveup() {
  const { server, url } = await fakeServer();
  server.handle('room.hang', () => new Promise(() => {}));
  const cfg = { maxAttempts: 5, initialDelay: 40, maxDelay: 100 };
  const c = new PomeloClient({ WebSocket, resume: cfg });
  const events = record(c);
  await c.connect(url);
  const hang = rejection(c.request('room.hang'));
  server.accepting = false;
  const lost = next(c, 'lost');
  const closed = next(c, 'close');
  server.drop(server.sessions[0]);
  await within(new Promise((r) => c.on('reconnecting', (ev) => { if (ev.attempt === 2) r(); })), 'the second attempt');
  const queued = rejection(c.request('room.echo', { late: true }));
  const ev = await lost;
  check('gaveup: lost GAVE_UP, not connected', eq(ev, { reason: LostReason.GAVE_UP, connected: false }) && c.state === 'disconnected', ev);
  await closed;
  const attempts = events.filter((e) => e.name === 'reconnecting');
  check('gaveup: maxAttempts attempts', eq(attempts.map((e) => e.attempt), [1, 2, 3, 4, 5]) && server.refused === 5, { attempts, refused: server.refused });
  const bounds = [[20, 40], [40, 80], [50, 100], [50, 100], [50, 100]];
  check('gaveup: delays double from initialDelay up to maxDelay, with jitter in [half, all]',
    attempts.every((e, i) => e.delay >= bounds[i][0] && e.delay <= bounds[i][1]), attempts.map((e) => e.delay));
  for (const [what, p] of [['pending', hang], ['queued while reconnecting', queued]]) {
    const err = await p;
    check(`gaveup: a ${what} request rejects SESSION_LOST`, err instanceof PomeloError && err.name === ClientError.SESSION_LOST, err.name);
  }
  check('gaveup: lost then close', eq(names(events).slice(-2), ['lost:GAVE_UP', 'close']), events);
  let threw = null;
  try { c.notify('room.note', {}); } catch (err) { threw = err; }
  check('gaveup: notify after giving up throws CLOSED', threw instanceof PomeloError && threw.name === ClientError.CLOSED);
  await server.close();
}

// heartbeat: a silent server makes the client give up on the connection
// after 2 x heartbeat, closing with 4000 (the session is suspended, not
// ended), then resume; a stock client still closes with 1000.
async function heartbeat() {
  const { server, url } = await fakeServer({ heartbeat: 1 });
  const c = new PomeloClient({ WebSocket, resume: { initialDelay: 20, maxDelay: 100 } });
  const errors = [];
  c.on('error', (err) => errors.push(err.message));
  await c.connect(url);
  const s = server.sessions[0];
  const resumed = next(c, 'resumed');
  server.silence(s);
  await within(resumed, 'the resume after the heartbeat timeout', 15000);
  check('heartbeat: the timeout closes with 4000, not 1000', server.closes.length === 1 && server.closes[0].code === 4000, server.closes);
  check('heartbeat: an error event names it', errors.includes('heartbeat timeout'), errors);
  check('heartbeat: the session resumed', server.sessions.length === 1 && !s.ended && server.handshakes[1].sys.resume.token !== undefined);
  check('heartbeat: requests after the resume', eq(await c.request('room.echo', { after: 1 }), { after: 1 }));
  c.disconnect();

  const plain = new PomeloClient({ WebSocket });
  await plain.connect(url);
  const closed = next(plain, 'close');
  server.silence(server.sessions.at(-1));
  await within(closed, 'the stock client to close', 15000);
  await within(new Promise((r) => { const t = setInterval(() => { if (server.closes.length === 3) { clearInterval(t); r(); } }, 10); }), 'the server to see the close');
  check('heartbeat: a stock client closes with 1000 as before', server.closes[2].code === 1000, server.closes);
  await server.close();
}

// notresumable: a server that does not answer sys.resume (a stock Pomelo
// server): the client works, and a drop loses the session at once.
async function notresumable() {
  const { server, url } = await fakeServer({ resume: false });
  server.handle('room.hang', () => new Promise(() => {}));
  const c = new PomeloClient({ WebSocket, resume: true });
  const events = record(c);
  await c.connect(url);
  check('notresumable: connected, not resumable', eq(events, [{ name: 'connected', resumable: false }]), events);
  check('notresumable: requests work', eq(await c.request('room.echo', { n: 1 }), { n: 1 }));
  const hang = rejection(c.request('room.hang'));
  const lost = next(c, 'lost');
  server.drop(server.sessions[0]);
  const ev = await lost;
  check('notresumable: lost NOT_RESUMABLE, not connected', eq(ev, { reason: LostReason.NOT_RESUMABLE, connected: false }) && c.state === 'disconnected', ev);
  const err = await hang;
  check('notresumable: a pending request rejects SESSION_LOST', err.name === ClientError.SESSION_LOST, err.name);
  check('notresumable: no reconnect attempt', eq(names(events), ['connected', 'lost:NOT_RESUMABLE', 'close']) && server.handshakes.length === 1, events);
  await server.close();
}

// kick: a kicked session does not come back.
async function kick() {
  const { server, url } = await fakeServer();
  const c = new PomeloClient({ WebSocket, resume: { initialDelay: 20 } });
  const events = record(c);
  await c.connect(url);
  const kicked = next(c, 'kick');
  const closed = next(c, 'close');
  server.sessions[0].kick('relogin');
  check('kick: kick event', (await kicked).reason === 'relogin');
  const ev = await closed;
  check('kick: close with the reason, no reconnect', ev.kicked === 'relogin' && c.state === 'disconnected' && eq(names(events), ['connected', 'close']), events);
  // disconnect while reconnecting ends it at once.
  const d = new PomeloClient({ WebSocket, resume: { initialDelay: 20 } });
  await d.connect(url);
  server.accepting = false;
  const reconnecting = next(d, 'reconnecting');
  server.drop(server.sessions.at(-1));
  await reconnecting;
  const dclosed = next(d, 'close');
  d.disconnect();
  await dclosed;
  check('kick: disconnect while reconnecting closes at once', d.state === 'disconnected');
  await server.close();
}

run({ stock, resume, notresumed, gaveup, heartbeat, notresumable, kick }, scenario);
