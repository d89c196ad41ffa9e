// pomelo-go-client: a client for the Pomelo wire protocol, as an ES module,
// for browsers and node. It speaks to pomelo-go servers and to NetEase
// Pomelo servers alike. README.md beside this file documents it and
// index.d.ts declares its types.
//
//   import { PomeloClient } from 'pomelo-go-client';
//
//   const client = new PomeloClient();
//   await client.connect('ws://127.0.0.1:3014/');          // handshake + ack
//   const entry = await client.request('gate.gateHandler.queryEntry', { uid: 'ann' });
//   client.on('onChat', (msg) => console.log(msg.from, msg.msg));   // pushes
//   client.on('kick', ({ reason }) => console.log('kicked:', reason));
//   client.on('close', ({ kicked, code }) => console.log('closed'));
//   client.notify('chat.chatHandler.send', { content: 'hi', target: '*' });
//   client.disconnect();
//
// The WebSocket is the `WebSocket` option, else the runtime's global one
// (browsers, node 22+, Deno, Bun), else, in node 20, the `ws` package,
// imported when the first connection is made.
//
// What it does, following the protocol (docs/PROTOCOL.md in the pomelo-go
// repository):
//   - packages (type, 3-byte length, body) and messages (flag, varint id,
//     route, JSON body); several packages in one frame;
//   - the handshake, with sys.type and sys.version for the server's client
//     check (a refused handshake rejects connect() with code 501 or 500);
//   - the route dictionary: routes are sent compressed when the server
//     hands out a dictionary, compressed push routes are decoded, and the
//     dictionary is cached by version for the next connection of the page;
//   - heartbeats: one is sent `heartbeat` seconds after each one from the
//     server, and the connection is closed ("heartbeat timeout") when
//     nothing arrives for twice that;
//   - kick: the "kick" event carries the server's reason, then "close";
//   - with the `resume` option, resumable sessions (section 10 of the
//     protocol): it reconnects by itself with backoff, resumes the session
//     with its token and DATA count, sends again the requests not answered,
//     and reports "connected", "reconnecting", "resumed" and "lost".
//
// request() resolves with the response body. A response flagged as an error
// (pomelo-go answers every failed request with {code, error, message} and
// the 0x20 flag) rejects with a PomeloError named by the body's "error";
// this client's own failures are PomeloErrors too, named by ClientError.
// Bodies are JSON.

/** Package types. */
export const PackageType = Object.freeze({ HANDSHAKE: 1, HANDSHAKE_ACK: 2, HEARTBEAT: 3, DATA: 4, KICK: 5 });

/** Message types (bits 1-3 of a message's flag byte). */
export const MessageType = Object.freeze({ REQUEST: 0, NOTIFY: 1, RESPONSE: 2, PUSH: 3 });

const FLAG_COMPRESSED_ROUTE = 0x01;
const FLAG_GZIP = 0x10;
const FLAG_ERROR = 0x20;
const MAX_PACKAGE = (1 << 24) - 1;
const MAX_ID = 2 ** 31 - 1;

/**
 * The names of the errors this client makes itself (code 0, except the
 * refused handshakes, which carry the server's code).
 */
export const ClientError = Object.freeze({
  /** The connection closed (or was never open) before the answer came. */
  CLOSED: 'CLOSED',
  /** No response within the request timeout. */
  TIMEOUT: 'TIMEOUT',
  /** The WebSocket failed to connect. */
  CONNECT_FAILED: 'CONNECT_FAILED',
  /** connect() on a client that is connected or connecting. */
  ALREADY_CONNECTED: 'ALREADY_CONNECTED',
  /** No WebSocket: no option, no global one, and no `ws` package. */
  NO_WEBSOCKET: 'NO_WEBSOCKET',
  /** The server refused the client's version (handshake code 501). */
  OLD_CLIENT: 'OLD_CLIENT',
  /** The server refused the handshake with another code. */
  HANDSHAKE_REFUSED: 'HANDSHAKE_REFUSED',
  /** Resume mode: the session ended (a "lost" event) before the answer came. */
  SESSION_LOST: 'SESSION_LOST',
});

/** Connection events; every other name given to on() is a push route. */
const EVENTS = new Set(['kick', 'close', 'error', 'connected', 'reconnecting', 'resumed', 'lost']);

/**
 * An error answered by the server, or a failed request.
 * code is the numeric code (500 for framework errors, 501 for a refused
 * client), name the machine-readable name (UNKNOWN_ROUTE, BAD_REQUEST, ...,
 * or CLOSED and TIMEOUT from this client), body the whole response body.
 */
export class PomeloError extends Error {
  constructor(code, name, message, body) {
    super(message || name || `error ${code}`);
    this.code = code;
    this.name = name || 'POMELO_ERROR';
    this.body = body;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Route dictionaries by version, shared by the clients of the page: the
// gate and the connectors of one cluster hand out the same one.
const dictionaries = new Map();
let latestDictVersion = '';

// The WebSocket class of the `ws` package, for runtimes without a global
// one (node 20): a promise, made on first use, of the class or null. The
// specifier is a variable so that bundlers for browsers leave it alone.
let wsPackage = null;
function importWs() {
  if (!wsPackage) {
    const specifier = 'ws';
    wsPackage = import(/* webpackIgnore: true */ /* @vite-ignore */ specifier)
      .then((m) => m.WebSocket || m.default || null, () => null);
  }
  return wsPackage;
}

/** Encodes one package. */
export function encodePackage(type, body = new Uint8Array(0)) {
  if (body.length > MAX_PACKAGE) throw new RangeError(`package body of ${body.length} bytes is too large`);
  const out = new Uint8Array(4 + body.length);
  out[0] = type;
  out[1] = (body.length >> 16) & 0xff;
  out[2] = (body.length >> 8) & 0xff;
  out[3] = body.length & 0xff;
  out.set(body, 4);
  return out;
}

/** Decodes the packages of one frame: [{type, body}]. */
export function decodePackages(bytes) {
  const out = [];
  let off = 0;
  while (off < bytes.length) {
    if (off + 4 > bytes.length) throw new Error('truncated package header');
    const len = (bytes[off + 1] << 16) | (bytes[off + 2] << 8) | bytes[off + 3];
    if (off + 4 + len > bytes.length) throw new Error('truncated package body');
    out.push({ type: bytes[off], body: bytes.subarray(off + 4, off + 4 + len) });
    off += 4 + len;
  }
  return out;
}

/**
 * Encodes one message: {type, id, route, body (bytes), code (a dictionary
 * code for the route, or 0)}.
 */
export function encodeMessage({ type, id = 0, route = '', body = new Uint8Array(0), code = 0 }) {
  const head = [(type << 1) | (code ? FLAG_COMPRESSED_ROUTE : 0)];
  if (type === MessageType.REQUEST || type === MessageType.RESPONSE) {
    let v = id;
    do {
      let b = v % 128;
      v = Math.floor(v / 128);
      if (v > 0) b |= 0x80;
      head.push(b);
    } while (v > 0);
  }
  let routeBytes = new Uint8Array(0);
  if (type !== MessageType.RESPONSE) {
    if (code) {
      head.push((code >> 8) & 0xff, code & 0xff);
    } else {
      routeBytes = encoder.encode(route);
      if (routeBytes.length > 255) throw new RangeError(`route ${route} is longer than 255 bytes`);
      head.push(routeBytes.length);
    }
  }
  const out = new Uint8Array(head.length + routeBytes.length + body.length);
  out.set(head, 0);
  out.set(routeBytes, head.length);
  out.set(body, head.length + routeBytes.length);
  return out;
}

/**
 * Decodes one message: {type, id, route, code, error, gzip, body (bytes)}.
 * A compressed route is returned as its code, and route is ''.
 */
export function decodeMessage(bytes) {
  if (bytes.length < 1) throw new Error('empty message');
  const flag = bytes[0];
  const msg = {
    type: (flag >> 1) & 0x07, id: 0, route: '', code: 0,
    error: (flag & FLAG_ERROR) !== 0, gzip: (flag & FLAG_GZIP) !== 0, body: null,
  };
  let off = 1;
  if (msg.type === MessageType.REQUEST || msg.type === MessageType.RESPONSE) {
    let mul = 1;
    for (;;) {
      if (off >= bytes.length) throw new Error('truncated message id');
      const b = bytes[off++];
      msg.id += (b & 0x7f) * mul;
      if (b < 0x80) break;
      mul *= 128;
      if (mul > 2 ** 35) throw new Error('message id too long');
    }
  }
  if (msg.type === MessageType.REQUEST || msg.type === MessageType.NOTIFY || msg.type === MessageType.PUSH) {
    if (flag & FLAG_COMPRESSED_ROUTE) {
      if (off + 2 > bytes.length) throw new Error('truncated route code');
      msg.code = (bytes[off] << 8) | bytes[off + 1];
      off += 2;
    } else {
      if (off >= bytes.length) throw new Error('truncated route');
      const len = bytes[off++];
      if (off + len > bytes.length) throw new Error('truncated route');
      msg.route = decoder.decode(bytes.subarray(off, off + len));
      off += len;
    }
  }
  msg.body = bytes.subarray(off);
  return msg;
}

function parseBody(bytes) {
  if (!bytes || bytes.length === 0) return {};
  return JSON.parse(decoder.decode(bytes));
}

/** The reasons of a "lost" event. */
export const LostReason = Object.freeze({
  /** The server answered the resume with resumed:false: the connection is a new session. */
  NOT_RESUMED: 'NOT_RESUMED',
  /** Every reconnect attempt failed: the client is disconnected. */
  GAVE_UP: 'GAVE_UP',
  /** The server does not resume sessions (its handshake reply has no sys.resume). */
  NOT_RESUMABLE: 'NOT_RESUMABLE',
});

/** The defaults of the resume option. */
const RESUME_DEFAULTS = Object.freeze({ maxAttempts: 10, initialDelay: 500, maxDelay: 10000 });

// resumeConfig returns the reconnect settings of the resume option, or null
// when it is off.
function resumeConfig(opt) {
  if (!opt) return null;
  const cfg = { ...RESUME_DEFAULTS };
  if (typeof opt === 'object') {
    for (const k of Object.keys(RESUME_DEFAULTS)) {
      if (opt[k] !== undefined) cfg[k] = opt[k];
    }
  }
  return cfg;
}

// backoff is the delay before reconnect attempt n (1-based): the initial
// delay doubled for each earlier attempt, capped, then a random part of it
// (between half and all) so that many clients dropped at once do not come
// back at once.
function backoff(n, cfg) {
  const base = Math.min(cfg.maxDelay, cfg.initialDelay * 2 ** Math.min(n - 1, 30));
  return Math.round(base * (0.5 + Math.random() * 0.5));
}

/** A connection to a Pomelo frontend server. */
export class PomeloClient {
  /**
   * options:
   *   type, version  sys.type and sys.version of the handshake, which the
   *                  server's client check reads (default 'pomelo-go-js',
   *                  '0.1.0');
   *   user           the handshake's "user" object (default {});
   *   timeout        request timeout in ms (default 10000; 0 for none);
   *   resume         false (default), true, or {maxAttempts, initialDelay,
   *                  maxDelay}: resumable sessions (docs/PROTOCOL.md,
   *                  section 10), with automatic reconnection;
   *   WebSocket      the WebSocket class (default globalThis.WebSocket, or
   *                  the `ws` package's where there is no global one).
   */
  constructor(options = {}) {
    this.options = {
      type: 'pomelo-go-js', version: '0.1.0', user: {}, timeout: 10000, resume: false, ...options,
    };
    this._resume = resumeConfig(this.options.resume);
    this._listeners = new Map();
    this._state = 'disconnected';
    this._pending = new Map();
    this._nextId = 0;
    // The session, in resume mode.
    this._token = null;   // the token to resume with, or null
    this._received = 0;   // server DATA packages received in the session
    this._queue = [];     // notifies made while reconnecting
    this._attempt = 0;    // reconnect attempts since the drop
    this._retryTimer = null;
    this._onOnline = null;
    this._lastClose = null;
    this._closing = false; // disconnect() or a protocol error: the session ends
    this._target = null;  // {url, user, WS} of the session
    this._resetConnection();
    this._ws = null;
    this._connecting = false; // waiting for the ws package
  }

  // _resetConnection forgets the state of one connection.
  _resetConnection() {
    clearTimeout(this._hbTimer);
    clearTimeout(this._deadTimer);
    this._ws = null;
    this._codes = null;   // route -> code
    this._routes = null;  // code -> route
    this._heartbeat = 0;  // ms
    this._hbTimer = null;
    this._deadTimer = null;
    this._kickReason = null;
    this._open = false;
    this._onHandshake = null;
  }

  /** True once the handshake is done and until the connection closes. */
  get connected() { return this._open; }

  /**
   * 'disconnected', 'connecting' (connect() is under way), 'connected', or
   * 'reconnecting' (resume mode: the connection dropped and the client is
   * getting the session back).
   */
  get state() { return this._state; }

  /** The heartbeat interval the server asked for, in seconds. */
  get heartbeat() { return this._heartbeat / 1000; }

  /**
   * Connects to url ('ws://host:port/path' or 'wss://...') and does the
   * handshake. Resolves with the handshake reply's "user" object (or
   * undefined) once the connection is ready; rejects with a PomeloError when
   * the server refuses the client (code 501: version too old) or the
   * connection fails.
   */
  connect(url, user = this.options.user) {
    if (this._ws || this._connecting || this._state !== 'disconnected') {
      return Promise.reject(new PomeloError(0, ClientError.ALREADY_CONNECTED, 'already connected: disconnect() first'));
    }
    this._closing = false;
    this._state = 'connecting';
    this._token = null;
    this._received = 0;
    const WS = this.options.WebSocket || globalThis.WebSocket;
    if (WS) return this._first(url, user, WS);
    this._connecting = true;
    return importWs().then((found) => {
      if (!this._connecting) {
        this._state = 'disconnected';
        throw new PomeloError(0, ClientError.CLOSED, 'disconnected while connecting');
      }
      this._connecting = false;
      if (!found) {
        this._state = 'disconnected';
        throw new PomeloError(0, ClientError.NO_WEBSOCKET,
          'no WebSocket: pass the WebSocket option, or install the ws package');
      }
      return this._first(url, user, found);
    });
  }

  // _first makes the first connection of a session.
  _first(url, user, WS) {
    this._target = { url, user, WS };
    return this._dial(url, user, WS, this._resume ? {} : null, (reply) => {
      const r = reply.sys && reply.sys.resume;
      this._token = this._resume && r && typeof r.token === 'string' ? r.token : null;
      this._state = 'connected';
      this._emit('connected', { resumable: this._token !== null });
    }).then((reply) => reply.user);
  }

  // _dial opens a connection and does the handshake, with sys.resume when
  // resume is not null. onReady runs once the handshake is done, before
  // anything else arrives; the promise resolves with the reply.
  _dial(url, user, WS, resume, onReady) {
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer = null;
      const settle = (fn, v) => {
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          fn(v);
        }
      };
      this._resetConnection();
      let ws;
      try {
        ws = new WS(url);
      } catch (err) {
        if (this._state === 'connecting') this._state = 'disconnected';
        reject(err);
        return;
      }
      this._ws = ws;
      const mine = () => this._ws === ws; // an abandoned socket is heard no more
      ws.binaryType = 'arraybuffer';
      if (this._state === 'reconnecting' && this.options.timeout > 0) {
        timer = setTimeout(() => {
          if (!mine()) return;
          settle(reject, new PomeloError(0, ClientError.TIMEOUT, `no handshake from ${url} within ${this.options.timeout} ms`));
          this._abandon(4000, 'handshake timeout');
        }, this.options.timeout);
      }
      this._onHandshake = (reply) => {
        if (reply.code !== 200) {
          settle(reject, new PomeloError(reply.code, reply.code === 501 ? ClientError.OLD_CLIENT : ClientError.HANDSHAKE_REFUSED,
            `handshake refused with code ${reply.code}`, reply));
          this._closeSocket();
          return;
        }
        const sys = reply.sys || {};
        this._heartbeat = (sys.heartbeat || 0) * 1000;
        let dict = sys.dict;
        if (dict && sys.dictVersion) {
          dictionaries.set(sys.dictVersion, dict);
          latestDictVersion = sys.dictVersion;
        } else if (!dict && sys.dictVersion) {
          dict = dictionaries.get(sys.dictVersion);
        }
        if (dict && (sys.useDict || !sys.dict)) {
          this._codes = new Map(Object.entries(dict));
          this._routes = new Map(Object.entries(dict).map(([r, c]) => [c, r]));
        }
        this._send(encodePackage(PackageType.HANDSHAKE_ACK));
        this._open = true;
        this._alive();
        onReady(reply);
        settle(resolve, reply);
      };
      ws.onopen = () => {
        if (!mine()) return;
        const sys = { type: this.options.type, version: this.options.version, rsa: {} };
        if (latestDictVersion) sys.dictVersion = latestDictVersion;
        if (resume) sys.resume = resume;
        this._send(encodePackage(PackageType.HANDSHAKE, encoder.encode(JSON.stringify({ sys, user: user || {} }))));
      };
      ws.onmessage = (ev) => { if (mine()) this._receive(ev.data); };
      ws.onerror = () => {
        if (!mine()) return;
        settle(reject, new PomeloError(0, ClientError.CONNECT_FAILED, `cannot connect to ${url}`));
        this._emit('error', new Error(`WebSocket error on ${url}`));
      };
      ws.onclose = (ev) => {
        if (!mine()) return;
        settle(reject, new PomeloError(0, ClientError.CLOSED, `connection to ${url} closed during the handshake`));
        this._socketClosed(ev);
      };
    });
  }

  /**
   * Sends a request and resolves with the response body. Rejects with a
   * PomeloError for an error response, a timeout or a closed connection.
   * In resume mode a request made while reconnecting is sent once the
   * session is back.
   */
  request(route, body = {}) {
    if (!this._open && this._state !== 'reconnecting') {
      return Promise.reject(new PomeloError(0, ClientError.CLOSED, 'not connected'));
    }
    let bytes;
    try {
      bytes = encoder.encode(JSON.stringify(body));
    } catch (err) {
      return Promise.reject(err);
    }
    this._nextId = this._nextId >= MAX_ID ? 1 : this._nextId + 1;
    const id = this._nextId;
    return new Promise((resolve, reject) => {
      const p = { route, bytes, resolve, reject, timer: null };
      if (this.options.timeout > 0) {
        p.timer = setTimeout(() => {
          this._pending.delete(id);
          reject(new PomeloError(0, ClientError.TIMEOUT, `no response to ${route} within ${this.options.timeout} ms`));
        }, this.options.timeout);
      }
      this._pending.set(id, p);
      if (this._open) this._sendRequest(id, p); // else sent after the resume
    });
  }

  // _sendRequest sends pending request id, or rejects it with the error
  // that keeps it from being sent (a route or body too long).
  _sendRequest(id, p) {
    try {
      this._sendMessage(MessageType.REQUEST, id, p.route, p.bytes);
    } catch (err) {
      clearTimeout(p.timer);
      this._pending.delete(id);
      p.reject(err);
    }
  }

  /**
   * Sends a notify: the server runs the route and answers nothing. In
   * resume mode a notify made while reconnecting is sent once the session
   * is back (and dropped if it is lost).
   */
  notify(route, body = {}) {
    if (!this._open && this._state !== 'reconnecting') throw new PomeloError(0, ClientError.CLOSED, 'not connected');
    const bytes = encoder.encode(JSON.stringify(body));
    if (this._open) this._sendMessage(MessageType.NOTIFY, 0, route, bytes);
    else this._queue.push({ route, bytes });
  }

  /**
   * Registers fn for a push route (such as 'onChat'; fn gets the decoded
   * body and the route) or a connection event: 'kick' ({reason}), 'close'
   * ({code, reason, kicked}: kicked is the kick reason or null), 'error'
   * (an Error), 'connected' ({resumable}), and in resume mode
   * 'reconnecting' ({attempt, delay, code}), 'resumed' ({attempt}) and
   * 'lost' ({reason, connected}). Returns a function that unregisters fn.
   */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  /** Unregisters fn. */
  off(name, fn) {
    const set = this._listeners.get(name);
    if (set) set.delete(fn);
  }

  /**
   * Closes the connection with code 1000 (a resumable session ends at once)
   * and stops reconnecting. Pending requests reject with CLOSED; "close"
   * follows.
   */
  disconnect() {
    this._connecting = false;
    if (this._state === 'disconnected' && !this._ws) return;
    this._closing = true;
    this._stopRetrying();
    if (this._ws) {
      this._closeSocket();
    } else if (this._state === 'reconnecting') {
      this._socketClosed(this._lastClose);
    }
  }

  _emit(name, ...args) {
    const set = this._listeners.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        setTimeout(() => { throw err; });
      }
    }
  }

  _send(bytes) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(bytes);
  }

  // _sendMessage sends a message whose body is encoded already: the route
  // is compressed by the dictionary of the connection it goes on.
  _sendMessage(type, id, route, bytes) {
    const code = (this._codes && this._codes.get(route)) || 0;
    this._send(encodePackage(PackageType.DATA, encodeMessage({ type, id, route, code, body: bytes })));
  }

  _closeSocket() {
    if (this._ws && this._ws.readyState <= 1) this._ws.close(1000);
  }

  // _abandon gives up on the connection: it closes the WebSocket with code
  // (never 1000, which would end a resumable session) and carries on as if
  // it had closed, without waiting for a closing handshake that a dead
  // network would hold up.
  _abandon(code, reason) {
    const ws = this._ws;
    this._ws = null;
    try {
      ws.close(code, reason);
    } catch (err) { /* closed already */ }
    this._socketClosed({ code, reason });
  }

  // _alive notes that something arrived: the connection is dead when
  // nothing more arrives for twice the heartbeat interval.
  _alive() {
    if (!this._heartbeat) return;
    clearTimeout(this._deadTimer);
    this._deadTimer = setTimeout(() => {
      this._emit('error', new Error('heartbeat timeout'));
      if (this._resume) this._abandon(4000, 'heartbeat timeout');
      else this._closeSocket();
    }, 2 * this._heartbeat);
  }

  _receive(data) {
    let bytes;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (typeof data === 'string') bytes = encoder.encode(data);
    else return;
    let packages;
    try {
      packages = decodePackages(bytes);
    } catch (err) {
      this._emit('error', err);
      this._closing = true;
      this._closeSocket();
      return;
    }
    const ws = this._ws;
    for (const pkg of packages) {
      if (this._ws !== ws) return; // a listener closed the connection
      if (this._open) this._alive();
      switch (pkg.type) {
        case PackageType.HANDSHAKE: {
          let reply;
          try {
            reply = JSON.parse(decoder.decode(pkg.body));
          } catch (err) {
            reply = { code: 500 };
          }
          if (this._onHandshake) {
            const fn = this._onHandshake;
            this._onHandshake = null;
            fn(reply);
          }
          break;
        }
        case PackageType.HEARTBEAT:
          if (this._heartbeat && !this._hbTimer) {
            this._hbTimer = setTimeout(() => {
              this._hbTimer = null;
              this._send(encodePackage(PackageType.HEARTBEAT));
            }, this._heartbeat);
          }
          break;
        case PackageType.DATA:
          this._received++;
          this._data(pkg.body);
          break;
        case PackageType.KICK: {
          let body = {};
          try {
            body = parseBody(pkg.body);
          } catch (err) { /* keep {} */ }
          this._kickReason = typeof body.reason === 'string' ? body.reason : '';
          this._emit('kick', { reason: this._kickReason });
          break;
        }
        default:
          this._emit('error', new Error(`unknown package type ${pkg.type}`));
      }
    }
  }

  _data(bytes) {
    let msg;
    let body;
    try {
      msg = decodeMessage(bytes);
      if (msg.gzip) throw new Error('gzip-compressed bodies are not supported');
      body = parseBody(msg.body);
    } catch (err) {
      this._emit('error', err);
      return;
    }
    if (msg.type === MessageType.RESPONSE) {
      const p = this._pending.get(msg.id);
      if (!p) return; // timed out meanwhile
      this._pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new PomeloError(body.code, body.error, body.message, body));
      else p.resolve(body);
      return;
    }
    if (msg.type === MessageType.PUSH) {
      const route = msg.code ? this._routes && this._routes.get(msg.code) : msg.route;
      if (!route) {
        this._emit('error', new Error(`push with unknown route code ${msg.code}`));
        return;
      }
      if (EVENTS.has(route)) return; // never mistake a push for a connection event
      this._emit(route, body, route);
    }
  }

  // _failPending rejects every pending request with the error name, and
  // drops the queued notifies.
  _failPending(name, message) {
    const pending = this._pending;
    this._pending = new Map();
    this._queue = [];
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(new PomeloError(0, name, message));
    }
  }

  // _socketClosed handles the end of the current connection (or of the
  // wait between reconnect attempts, on disconnect()).
  _socketClosed(ev) {
    const wasOpen = this._open;
    const kicked = this._kickReason;
    const state = this._state;
    this._resetConnection();
    this._lastClose = ev || null;
    const ending = !this._resume || this._closing || kicked !== null;
    if (!ending && state === 'reconnecting') { // a failed attempt
      this._scheduleAttempt();
      return;
    }
    if (!ending && state === 'connected') {
      if (this._token !== null) {
        this._state = 'reconnecting';
        this._attempt = 0;
        this._scheduleAttempt();
        return;
      }
      this._state = 'disconnected';
      this._failPending(ClientError.SESSION_LOST, 'the connection closed and the server does not resume sessions');
      this._emit('lost', { reason: LostReason.NOT_RESUMABLE, connected: false });
      this._emit('close', { code: ev && ev.code, reason: ev && ev.reason, kicked: null });
      return;
    }
    this._stopRetrying();
    this._state = 'disconnected';
    this._token = null;
    if (!this._resume) this._nextId = 0;
    this._failPending(ClientError.CLOSED, kicked !== null ? `kicked: ${kicked}` : 'connection closed');
    if (wasOpen || kicked !== null || state === 'reconnecting') {
      this._emit('close', { code: ev && ev.code, reason: ev && ev.reason, kicked });
    }
  }

  // _scheduleAttempt waits before the next reconnect attempt, or gives up.
  _scheduleAttempt() {
    this._attempt++;
    if (this._attempt > this._resume.maxAttempts) {
      this._stopRetrying();
      this._state = 'disconnected';
      this._token = null;
      this._failPending(ClientError.SESSION_LOST, `no connection after ${this._resume.maxAttempts} attempts`);
      this._emit('lost', { reason: LostReason.GAVE_UP, connected: false });
      const ev = this._lastClose;
      this._emit('close', { code: ev && ev.code, reason: ev && ev.reason, kicked: null });
      return;
    }
    const delay = backoff(this._attempt, this._resume);
    this._retryTimer = setTimeout(() => this._reconnect(), delay);
    // In a browser, coming back online starts the attempt at once.
    if (!this._onOnline && typeof globalThis.addEventListener === 'function') {
      this._onOnline = () => {
        if (this._retryTimer === null) return;
        clearTimeout(this._retryTimer);
        this._reconnect();
      };
      globalThis.addEventListener('online', this._onOnline);
    }
    const ev = this._lastClose;
    this._emit('reconnecting', { attempt: this._attempt, delay, code: ev ? ev.code : undefined });
  }

  _stopRetrying() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._onOnline) {
      globalThis.removeEventListener('online', this._onOnline);
      this._onOnline = null;
    }
  }

  // _reconnect makes one attempt to resume the session.
  _reconnect() {
    this._retryTimer = null;
    const { url, user, WS } = this._target;
    const resume = { token: this._token, received: this._received };
    // A failed attempt whose socket was open goes on when it closes
    // (_socketClosed); one that made no socket goes on here.
    this._dial(url, user, WS, resume, (reply) => this._reconnected(reply)).catch(() => {
      if (this._state === 'reconnecting' && !this._closing && !this._ws && this._retryTimer === null) this._scheduleAttempt();
    });
  }

  // _reconnected runs once the handshake of a reconnection is done.
  _reconnected(reply) {
    const r = reply.sys && reply.sys.resume;
    const attempt = this._attempt;
    this._stopRetrying();
    this._attempt = 0;
    this._state = 'connected';
    this._token = r && typeof r.token === 'string' ? r.token : null;
    if (r && r.resumed === true) {
      // Every request not answered yet goes again, with its id: the server
      // runs an id once, and the replay brings the answers it has.
      for (const [id, p] of [...this._pending]) this._sendRequest(id, p);
      const queue = this._queue;
      this._queue = [];
      for (const n of queue) {
        try {
          this._sendMessage(MessageType.NOTIFY, 0, n.route, n.bytes);
        } catch (err) {
          this._emit('error', err);
        }
      }
      this._emit('resumed', { attempt });
      return;
    }
    this._received = 0;
    this._failPending(ClientError.SESSION_LOST, r ? 'the server did not resume the session' : 'the server does not resume sessions');
    this._emit('lost', { reason: r ? LostReason.NOT_RESUMED : LostReason.NOT_RESUMABLE, connected: true });
    this._emit('connected', { resumable: this._token !== null });
  }
}
