// A small Pomelo frontend in node for the client's resume tests
// (resume.mjs): it speaks the handshake, heartbeats, requests, notifies,
// pushes and kicks, and section 10 of docs/PROTOCOL.md (resumable
// sessions: tokens, the DATA count, suspension, the replay, a request id
// run once per session). It keeps every DATA package of a session (no
// bounds: a test's sessions are short) and lets a test drop, silence and
// refuse connections and end sessions, so that the client's side can be
// tested without a real server. It is test code: it trusts its client.
import { randomBytes } from 'node:crypto';
import { WebSocketServer } from 'ws';
import {
  encodePackage, decodePackages, encodeMessage, decodeMessage, PackageType, MessageType,
} from 'pomelo-go-client';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const json = (v) => encoder.encode(JSON.stringify(v));

/** A handler throws LOSE to have the server lose the request: the connection drops before it runs. */
export const LOSE = Symbol('lose');

/** A session of the fake server. */
export class Session {
  constructor(server, resumable) {
    this.server = server;
    this.id = ++server._lastSession;
    this.resumable = resumable;
    this.token = null;
    this.sent = [];          // every DATA package (message bytes), in order
    this.conn = null;        // the connection, live or waiting for its ack
    this.running = new Set(); // request ids being run
    this.answered = new Set(); // request ids answered
    this.ended = false;
    this.suspended = false;
    this._windowTimer = null;
  }

  newToken() {
    if (this.token) this.server._tokens.delete(this.token);
    this.token = randomBytes(16).toString('base64url');
    this.server._tokens.set(this.token, this);
    return this.token;
  }

  // send keeps a DATA package and writes it when a live connection is attached.
  send(msg) {
    if (this.ended) return;
    this.sent.push(msg);
    if (this.conn && this.conn.live) this.conn.write(encodePackage(PackageType.DATA, msg));
  }

  /** Pushes body on route. */
  push(route, body) {
    this.send(encodeMessage({ type: MessageType.PUSH, route, body: json(body) }));
  }

  /** Kicks the session: a KICK package, then the connection closes, and the session ends. */
  kick(reason) {
    const conn = this.conn;
    this.end();
    if (conn) {
      conn.write(encodePackage(PackageType.KICK, json({ reason })));
      conn.ws.close(1000);
    }
  }

  /** Ends the session: its token is refused from now on. */
  end() {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this._windowTimer);
    if (this.token) this.server._tokens.delete(this.token);
    this.server._emit('ended', this);
  }

  _suspend() {
    this.conn = null;
    if (!this.resumable) {
      this.end();
      return;
    }
    this.suspended = true;
    this._windowTimer = setTimeout(() => this.end(), this.server.window);
    this.server._emit('suspended', this);
  }
}

class Conn {
  constructor(server, ws) {
    this.server = server;
    this.ws = ws;
    this.session = null;
    this.live = false;       // acked: DATA is written as it is sent
    this.silenced = false;   // writes nothing, reads nothing
    this.replayFrom = 0;
  }

  write(bytes) {
    if (!this.silenced && this.ws.readyState === 1) this.ws.send(bytes);
  }

  receive(data) {
    if (this.silenced) return;
    for (const pkg of decodePackages(new Uint8Array(data))) {
      switch (pkg.type) {
        case PackageType.HANDSHAKE:
          this.handshake(JSON.parse(decoder.decode(pkg.body)));
          break;
        case PackageType.HANDSHAKE_ACK: {
          const s = this.session;
          this.write(encodePackage(PackageType.HEARTBEAT));
          // The replay: what the client has not counted, in order, then live.
          for (const msg of s.sent.slice(this.replayFrom)) this.write(encodePackage(PackageType.DATA, msg));
          this.live = true;
          this.server._emit('acked', this);
          break;
        }
        case PackageType.HEARTBEAT:
          this.write(encodePackage(PackageType.HEARTBEAT));
          break;
        case PackageType.DATA:
          this.message(decodeMessage(pkg.body));
          break;
        default:
      }
    }
  }

  handshake(hs) {
    const server = this.server;
    const asked = hs.sys && hs.sys.resume;
    server.handshakes.push({ sys: hs.sys, user: hs.user });
    const sys = { heartbeat: server.heartbeat };
    let session = null;
    let resumed = false;
    if (server.resume && asked && typeof asked === 'object') {
      const old = asked.token !== undefined ? server._tokens.get(asked.token) : undefined;
      if (old && !old.ended && Number.isInteger(asked.received) && asked.received >= 0 && asked.received <= old.sent.length) {
        session = old;
        resumed = true;
        clearTimeout(old._windowTimer);
        old.suspended = false;
        if (old.conn) { // the old connection's end was not seen yet
          old.conn.session = null;
          old.conn.ws.terminate();
        }
        this.replayFrom = asked.received;
      } else if (old) {
        old.end(); // a refused resume closes the old session
      }
      if (!session) session = new Session(server, true);
      sys.resume = { token: session.newToken(), resumed };
    } else {
      session = new Session(server, false);
      this.replayFrom = session.sent.length;
    }
    this.session = session;
    session.conn = this;
    if (!resumed) server.sessions.push(session);
    this.write(encodePackage(PackageType.HANDSHAKE, json({ code: 200, sys, user: hs.user })));
    server._emit(resumed ? 'resumed' : 'session', session);
  }

  message(msg) {
    const s = this.session;
    const server = this.server;
    const body = msg.body.length ? JSON.parse(decoder.decode(msg.body)) : {};
    if (msg.type === MessageType.NOTIFY) {
      server.notifies.push({ session: s.id, route: msg.route, body });
      const fn = server.handlers.get(msg.route);
      if (fn) Promise.resolve().then(() => fn(body, s)).catch(() => {});
      return;
    }
    if (msg.type !== MessageType.REQUEST) return;
    server.received.push({ session: s.id, id: msg.id, route: msg.route });
    if (s.running.has(msg.id) || s.answered.has(msg.id)) return; // run once per session
    const fn = server.handlers.get(msg.route);
    s.running.add(msg.id);
    const answer = (flag, out) => {
      s.running.delete(msg.id);
      s.answered.add(msg.id);
      const bytes = encodeMessage({ type: MessageType.RESPONSE, id: msg.id, body: json(out) });
      if (flag) bytes[0] |= 0x20;
      s.send(bytes);
    };
    Promise.resolve().then(() => {
      if (!fn) throw Object.assign(new Error('no route ' + msg.route), { name: 'UNKNOWN_ROUTE' });
      return fn(body, s, msg.id);
    }).then((out) => {
      server.runs.push({ session: s.id, id: msg.id, route: msg.route });
      answer(false, out === undefined ? {} : out);
    }, (err) => {
      if (err === LOSE) {
        s.running.delete(msg.id);
        this.ws.terminate();
        return;
      }
      server.runs.push({ session: s.id, id: msg.id, route: msg.route });
      answer(true, { code: 500, error: err.name || 'POMELO_ERROR', message: err.message });
    });
  }

  closed(code) {
    this.server.closes.push({ session: this.session ? this.session.id : 0, code });
    const s = this.session;
    if (!s || s.conn !== this) return;
    if (code === 1000) s.end();
    else s._suspend();
  }
}

/** The fake frontend. */
export class FakeServer {
  /**
   * heartbeat: seconds (default 1); resume: whether it answers sys.resume
   * (default true); window: the grace window in ms (default 30000).
   */
  constructor({ heartbeat = 1, resume = true, window = 30000 } = {}) {
    this.heartbeat = heartbeat;
    this.resume = resume;
    this.window = window;
    this.handlers = new Map();
    this.sessions = [];    // every session, in order
    this.handshakes = [];  // the handshakes' sys and user
    this.received = [];    // every request that arrived: {session, id, route}
    this.runs = [];        // every request run: {session, id, route}
    this.notifies = [];    // every notify: {session, route, body}
    this.closes = [];      // every connection's close: {session, code}
    this.accepting = true; // false: new connections are dropped at once
    this.refused = 0;      // connections dropped because of accepting
    this._tokens = new Map();
    this._lastSession = 0;
    this._waiters = [];
  }

  /** Starts listening on a free port; resolves with the ws:// URL. */
  start() {
    this._wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    this._wss.on('connection', (ws) => {
      if (!this.accepting) {
        this.refused++;
        ws.terminate();
        return;
      }
      const conn = new Conn(this, ws);
      ws.on('message', (data) => conn.receive(data));
      ws.on('close', (code) => conn.closed(code));
    });
    return new Promise((resolve) => this._wss.on('listening', () => resolve(`ws://127.0.0.1:${this._wss.address().port}/`)));
  }

  /** Registers the handler of a route: fn(body, session, id) returns the response body (or throws). */
  handle(route, fn) {
    this.handlers.set(route, fn);
  }

  /** Drops the connection of session without a close frame (the client sees 1006). */
  drop(session) {
    if (session.conn) session.conn.ws.terminate();
  }

  /** Makes the connection of session silent: nothing is written to it or read from it. */
  silence(session) {
    if (session.conn) session.conn.silenced = true;
  }

  /**
   * Resolves with the next event's value that pred accepts: 'session' (a
   * new session), 'resumed', 'suspended', 'ended' (a Session), 'acked' (a
   * connection).
   */
  next(name, pred = () => true) {
    return new Promise((resolve) => this._waiters.push({ name, pred, resolve }));
  }

  _emit(name, v) {
    this._waiters = this._waiters.filter((w) => {
      if (w.name !== name || !w.pred(v)) return true;
      w.resolve(v);
      return false;
    });
  }

  /** Stops the server. */
  close() {
    for (const ws of this._wss.clients) ws.terminate();
    for (const s of this.sessions) clearTimeout(s._windowTimer);
    return new Promise((resolve) => this._wss.close(() => resolve()));
  }
}
