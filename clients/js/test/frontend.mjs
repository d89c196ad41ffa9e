// Drives pomelo-go-client's resume mode against a real pomelo-go frontend
// reached through a TCP proxy that ../client_test.go cuts when asked:
//
//   node frontend.mjs <proxy-ws-url> <scenario> <control-url>
//
// The control URL's paths: /cut cuts the proxy's connections (and lets
// the room's stream go on), /refuse and /accept make the proxy refuse new
// connections or accept them again, /wait-closed answers once a session
// closed on the frontend, /closed tells how many did. It prints one JSON
// line per check ({"event":"ok","what":...}) and ends with {"event":"done"}
// (exit 0) or {"event":"fail","message":...} (exit 1).
import { PomeloClient, PomeloError, ClientError, LostReason } from 'pomelo-go-client';
import WebSocket from 'ws';
import { check, fail, eq, within, next, rejection, run } from './check.mjs';

const [url, scenario, ctl] = process.argv.slice(2);

async function control(path) {
  const res = await within(fetch(ctl + path), path);
  if (!res.ok) fail(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}
function record(client) {
  const events = [];
  for (const name of ['connected', 'reconnecting', 'resumed', 'lost', 'close']) {
    client.on(name, (v) => events.push(name + (v && v.reason ? ':' + v.reason : '')));
  }
  return events;
}

// stream: the proxy cuts the connection in the middle of a stream of
// pushes and while requests are in flight; the client resumes, has every
// push once and in order, every response once, and its session.
async function stream() {
  const c = new PomeloClient({ WebSocket, resume: { initialDelay: 50, maxDelay: 500 } });
  const events = record(c);
  const pushes = [];
  let half;
  const halfway = new Promise((r) => { half = r; });
  c.on('onPush', (b) => {
    pushes.push(b.i);
    if (pushes.length === 100) half();
  });
  await c.connect(url);
  check('stream: a resumable session', eq(events, ['connected']) && c.state === 'connected', events);
  await c.request('connector.entry.login', { uid: 'ann' });

  const streamed = c.request('room.h.stream', { n: 200 });
  await within(halfway, 'the first half of the stream');
  const echoes = [];
  for (let k = 0; k < 20; k++) echoes.push(c.request('room.h.echo', { k }));
  const resumed = next(c, 'resumed');
  check('stream: the proxy cut the connection', (await control('/cut')).cut === 1);
  await resumed;
  check('stream: the stream answered once', eq(await within(streamed, 'the stream'), { streamed: 200 }));
  const answers = await within(Promise.all(echoes), 'the echoes');
  check('stream: every request in flight answered once, by id', answers.every((a, k) => a.k === k), answers);
  const want = Array.from({ length: 200 }, (_, i) => i);
  check('stream: every push once, in order', eq(pushes, want), { got: pushes.length, first: pushes.slice(95, 110) });
  check('stream: connected, reconnecting, resumed', eq(events, ['connected', 'reconnecting', 'resumed']), events);
  const denied = await rejection(c.request('room.h.fail', {}));
  check('stream: the session kept its uid', denied instanceof PomeloError && denied.name === 'NOT_ALLOWED' && denied.message === 'not for ann', denied.message);
  check('stream: no session closed on the frontend', (await control('/closed')).closed === 0);
  const closed = next(c, 'close');
  c.disconnect();
  await closed;
  await control('/wait-closed');
  check('stream: disconnect closes the session at once', (await control('/closed')).closed === 1);
}

// window: the client stays away longer than the grace window; the frontend
// closes the session, and the reconnect is told resumed:false.
async function window() {
  const c = new PomeloClient({ WebSocket, resume: { initialDelay: 50, maxDelay: 200, maxAttempts: 1000 } });
  const events = record(c);
  await c.connect(url);
  await c.request('connector.entry.login', { uid: 'bob' });
  const hang = rejection(c.request('room.h.hang', {}));
  await control('/refuse');
  await control('/cut');
  await control('/wait-closed');
  const lost = next(c, 'lost');
  await control('/accept');
  const ev = await lost;
  check('window: lost NOT_RESUMED, connected in a new session', eq(ev, { reason: LostReason.NOT_RESUMED, connected: true }) && c.connected, ev);
  const err = await hang;
  check('window: the pending request rejects SESSION_LOST', err instanceof PomeloError && err.name === ClientError.SESSION_LOST, err.name);
  const denied = await rejection(c.request('room.h.fail', {}));
  check('window: the new session has no uid', denied.name === 'NOT_ALLOWED' && denied.message === 'not for ', denied.message);
  check('window: the state events', eq(events.filter((e) => e !== 'reconnecting'), ['connected', 'lost:NOT_RESUMED', 'connected']), events);
  c.disconnect();
}

run({ stream, window }, scenario);
