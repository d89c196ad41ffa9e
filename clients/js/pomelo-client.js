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
//   - kick: the "kick" event carries the server's reason, then "close".
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
});

/** Connection events; every other name given to on() is a push route. */
const EVENTS = new Set(['kick', 'close', 'error']);

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

/** A connection to a Pomelo frontend server. */
export class PomeloClient {
  /**
   * options:
   *   type, version  sys.type and sys.version of the handshake, which the
   *                  server's client check reads (default 'pomelo-go-js',
   *                  '0.1.0');
   *   user           the handshake's "user" object (default {});
   *   timeout        request timeout in ms (default 10000; 0 for none);
   *   WebSocket      the WebSocket class (default globalThis.WebSocket, or
   *                  the `ws` package's where there is no global one).
   */
  constructor(options = {}) {
    this.options = {
      type: 'pomelo-go-js', version: '0.1.0', user: {}, timeout: 10000, ...options,
    };
    this._listeners = new Map();
    this._reset();
  }

  _reset() {
    this._ws = null;
    this._pending = new Map();
    this._nextId = 0;
    this._codes = null;   // route -> code
    this._routes = null;  // code -> route
    this._heartbeat = 0;  // ms
    this._hbTimer = null;
    this._deadTimer = null;
    this._kickReason = null;
    this._open = false;
    this._connecting = false; // waiting for the ws package
  }

  /** True once the handshake is done and until the connection closes. */
  get connected() { return this._open; }

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
    if (this._ws || this._connecting) {
      return Promise.reject(new PomeloError(0, ClientError.ALREADY_CONNECTED, 'already connected: disconnect() first'));
    }
    const WS = this.options.WebSocket || globalThis.WebSocket;
    if (WS) return this._dial(url, user, WS);
    this._connecting = true;
    return importWs().then((found) => {
      if (!this._connecting) throw new PomeloError(0, ClientError.CLOSED, 'disconnected while connecting');
      this._connecting = false;
      if (!found) {
        throw new PomeloError(0, ClientError.NO_WEBSOCKET,
          'no WebSocket: pass the WebSocket option, or install the ws package');
      }
      return this._dial(url, user, found);
    });
  }

  _dial(url, user, WS) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn, v) => { if (!settled) { settled = true; fn(v); } };
      const ws = new WS(url);
      this._ws = ws;
      ws.binaryType = 'arraybuffer';
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
        settle(resolve, reply.user);
      };
      ws.onopen = () => {
        const sys = { type: this.options.type, version: this.options.version, rsa: {} };
        if (latestDictVersion) sys.dictVersion = latestDictVersion;
        this._send(encodePackage(PackageType.HANDSHAKE, encoder.encode(JSON.stringify({ sys, user: user || {} }))));
      };
      ws.onmessage = (ev) => this._receive(ev.data);
      ws.onerror = () => {
        settle(reject, new PomeloError(0, ClientError.CONNECT_FAILED, `cannot connect to ${url}`));
        this._emit('error', new Error(`WebSocket error on ${url}`));
      };
      ws.onclose = (ev) => {
        settle(reject, new PomeloError(0, ClientError.CLOSED, `connection to ${url} closed during the handshake`));
        this._closed(ev);
      };
    });
  }

  /**
   * Sends a request and resolves with the response body. Rejects with a
   * PomeloError for an error response, a timeout or a closed connection.
   */
  request(route, body = {}) {
    if (!this._open) return Promise.reject(new PomeloError(0, ClientError.CLOSED, 'not connected'));
    this._nextId = this._nextId >= MAX_ID ? 1 : this._nextId + 1;
    const id = this._nextId;
    return new Promise((resolve, reject) => {
      const p = { route, resolve, reject, timer: null };
      if (this.options.timeout > 0) {
        p.timer = setTimeout(() => {
          this._pending.delete(id);
          reject(new PomeloError(0, ClientError.TIMEOUT, `no response to ${route} within ${this.options.timeout} ms`));
        }, this.options.timeout);
      }
      this._pending.set(id, p);
      try {
        this._sendMessage(MessageType.REQUEST, id, route, body);
      } catch (err) {
        clearTimeout(p.timer);
        this._pending.delete(id);
        reject(err);
      }
    });
  }

  /** Sends a notify: the server runs the route and answers nothing. */
  notify(route, body = {}) {
    if (!this._open) throw new PomeloError(0, ClientError.CLOSED, 'not connected');
    this._sendMessage(MessageType.NOTIFY, 0, route, body);
  }

  /**
   * Registers fn for a push route (such as 'onChat'; fn gets the decoded
   * body and the route) or a connection event: 'kick' ({reason}), 'close'
   * ({code, reason, kicked}: kicked is the kick reason or null) and 'error'
   * (an Error). Returns a function that unregisters fn.
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

  /** Closes the connection. Pending requests reject with CLOSED. */
  disconnect() {
    this._connecting = false;
    this._closeSocket();
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

  _sendMessage(type, id, route, body) {
    const code = (this._codes && this._codes.get(route)) || 0;
    const bytes = encoder.encode(JSON.stringify(body));
    this._send(encodePackage(PackageType.DATA, encodeMessage({ type, id, route, code, body: bytes })));
  }

  _closeSocket() {
    if (this._ws && this._ws.readyState <= 1) this._ws.close(1000);
  }

  // _alive notes that something arrived: the connection is dead when
  // nothing more arrives for twice the heartbeat interval.
  _alive() {
    if (!this._heartbeat) return;
    clearTimeout(this._deadTimer);
    this._deadTimer = setTimeout(() => {
      this._emit('error', new Error('heartbeat timeout'));
      this._closeSocket();
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
      this._closeSocket();
      return;
    }
    for (const pkg of packages) {
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

  _closed(ev) {
    const wasOpen = this._open;
    const kicked = this._kickReason;
    clearTimeout(this._hbTimer);
    clearTimeout(this._deadTimer);
    const pending = this._pending;
    this._reset();
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(new PomeloError(0, ClientError.CLOSED, kicked !== null ? `kicked: ${kicked}` : 'connection closed'));
    }
    if (wasOpen || kicked !== null) {
      this._emit('close', { code: ev && ev.code, reason: ev && ev.reason, kicked });
    }
  }
}
