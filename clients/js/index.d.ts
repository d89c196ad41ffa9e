// Type declarations of pomelo-go-client (pomelo-client.js), written by hand.

/** Package types of the Pomelo wire protocol. */
export declare const PackageType: Readonly<{
  HANDSHAKE: 1;
  HANDSHAKE_ACK: 2;
  HEARTBEAT: 3;
  DATA: 4;
  KICK: 5;
}>;

/** Message types (bits 1-3 of a message's flag byte). */
export declare const MessageType: Readonly<{
  REQUEST: 0;
  NOTIFY: 1;
  RESPONSE: 2;
  PUSH: 3;
}>;

/** The names of the errors the client makes itself. */
export declare const ClientError: Readonly<{
  /** The connection closed (or was never open) before the answer came. */
  CLOSED: 'CLOSED';
  /** No response within the request timeout. */
  TIMEOUT: 'TIMEOUT';
  /** The WebSocket failed to connect. */
  CONNECT_FAILED: 'CONNECT_FAILED';
  /** connect() on a client that is connected or connecting. */
  ALREADY_CONNECTED: 'ALREADY_CONNECTED';
  /** No WebSocket: no option, no global one, and no `ws` package. */
  NO_WEBSOCKET: 'NO_WEBSOCKET';
  /** The server refused the client's version (handshake code 501). */
  OLD_CLIENT: 'OLD_CLIENT';
  /** The server refused the handshake with another code. */
  HANDSHAKE_REFUSED: 'HANDSHAKE_REFUSED';
  /** Resume mode: the session ended (a "lost" event) before the answer came. */
  SESSION_LOST: 'SESSION_LOST';
}>;

/** The reasons of a "lost" event. */
export declare const LostReason: Readonly<{
  /** The server answered the resume with resumed:false: the connection is a new session. */
  NOT_RESUMED: 'NOT_RESUMED';
  /** Every reconnect attempt failed: the client is disconnected. */
  GAVE_UP: 'GAVE_UP';
  /** The server does not resume sessions (its handshake reply has no sys.resume). */
  NOT_RESUMABLE: 'NOT_RESUMABLE';
}>;

/** A name from LostReason. */
export type LostReasonName = (typeof LostReason)[keyof typeof LostReason];

/** A name from ClientError. */
export type ClientErrorName = (typeof ClientError)[keyof typeof ClientError];

/**
 * The body of a failed response from a pomelo-go server: a numeric code
 * (500 for framework errors), the stable name (such as "UNKNOWN_ROUTE" or
 * "BAD_REQUEST"; absent for application errors made without one) and a
 * human-readable message.
 */
export interface ErrorBody {
  code: number;
  error?: string;
  message?: string;
  [key: string]: unknown;
}

/**
 * An error answered by the server, or a failed request or connection.
 * For an error response, code, name and message are the body's code, error
 * and message fields, and body the whole body; the client's own errors have
 * a name from ClientError.
 */
export declare class PomeloError extends Error {
  constructor(code: number, name?: string, message?: string, body?: unknown);
  /** The numeric code: the server's, or 0 for the client's own errors (501 or 500 for a refused handshake). */
  code: number;
  /** The stable name: the body's "error" field, a ClientError name, or "POMELO_ERROR" when the server gave none. */
  name: string;
  /** The error response's body, or the refused handshake's reply. */
  body?: ErrorBody | unknown;
}

/** A WebSocket class: the browser's, node 22's global one, or the ws package's. */
export interface WebSocketConstructor {
  new (url: string): WebSocketLike;
}

/** The part of the WebSocket interface the client uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: { data: any }) => any) | null;
  onerror: ((ev: any) => any) | null;
  onclose: ((ev: { code?: number; reason?: string }) => any) | null;
}

/** Options of a PomeloClient. */
export interface PomeloClientOptions {
  /** sys.type of the handshake, which the server's client check reads (default "pomelo-go-js"). */
  type?: string;
  /** sys.version of the handshake (default "0.1.0"); a server with a higher minimum refuses it with code 501. */
  version?: string;
  /** The handshake's "user" object (default {}); connect's second argument overrides it. */
  user?: Record<string, unknown>;
  /** Request timeout in milliseconds (default 10000; 0 for none). */
  timeout?: number;
  /**
   * Resumable sessions (docs/PROTOCOL.md, section 10): false (the default),
   * true, or the reconnect settings. When on, the client asks the server for
   * a resumable session, reconnects by itself when the connection drops
   * (not after a kick or disconnect()) and resumes the session.
   */
  resume?: boolean | ResumeOptions;
  /**
   * The WebSocket class. Default: globalThis.WebSocket, or, where there is
   * none (node 20), the ws package's, imported on the first connect().
   */
  WebSocket?: WebSocketConstructor | (new (url: string) => any);
}

/** The reconnect settings of the resume option. */
export interface ResumeOptions {
  /** Reconnect attempts after a drop before giving up (default 10). */
  maxAttempts?: number;
  /** The delay before the first attempt, in milliseconds (default 500); it doubles with each attempt. */
  initialDelay?: number;
  /** The longest delay between attempts, in milliseconds (default 10000). */
  maxDelay?: number;
}

/** The "connected" event: the first connection of a session is ready. */
export interface ConnectedEvent {
  /** Whether the server made the session resumable (resume mode, and the server answered sys.resume). */
  resumable: boolean;
}

/** The "reconnecting" event (resume mode): the connection dropped, or an attempt failed. */
export interface ReconnectingEvent {
  /** The attempt about to be made, from 1. */
  attempt: number;
  /** Milliseconds before it starts (a browser coming back online starts it at once). */
  delay: number;
  /** The close code of the connection that dropped or of the failed attempt, when there was one. */
  code?: number;
}

/** The "resumed" event (resume mode): the session goes on over a new connection. */
export interface ResumedEvent {
  /** The attempt that succeeded. */
  attempt: number;
}

/** The "lost" event (resume mode): the session is over. Pending requests have rejected with SESSION_LOST. */
export interface LostEvent {
  reason: LostReasonName;
  /**
   * True when the client is connected in a new session (NOT_RESUMED, or
   * NOT_RESUMABLE on a reconnect): log in again, on this connection or
   * another. False when it is disconnected ("close" follows).
   */
  connected: boolean;
}

/** The client's connection state. */
export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting';

/** The "kick" event: the server closed the session with a reason (such as "relogin"). */
export interface KickEvent {
  reason: string;
}

/** The "close" event, once a connection that was open (or kicked) ends. */
export interface CloseEvent {
  /** The WebSocket close code. */
  code?: number;
  /** The WebSocket close reason. */
  reason?: string;
  /** The kick's reason when the server kicked the client, else null. */
  kicked: string | null;
}

/** The names on() takes for connection events; every other name is a push route. */
export type ConnectionEvent = 'kick' | 'close' | 'error' | 'connected' | 'reconnecting' | 'resumed' | 'lost';

/** A connection to a Pomelo frontend server. */
export declare class PomeloClient {
  constructor(options?: PomeloClientOptions);
  /** The options in force, defaults filled in. */
  readonly options: Required<Omit<PomeloClientOptions, 'WebSocket'>> & Pick<PomeloClientOptions, 'WebSocket'>;
  /** True once the handshake is done and until the connection closes. */
  readonly connected: boolean;
  /** The heartbeat interval the server asked for, in seconds (0 for none). */
  readonly heartbeat: number;
  /** The connection state; "reconnecting" only in resume mode. */
  readonly state: ConnectionState;
  /**
   * Connects to url ("ws://host:port/path" or "wss://...") and does the
   * handshake. Resolves with the handshake reply's "user" object once the
   * connection is ready; rejects with a PomeloError: OLD_CLIENT (code 501),
   * HANDSHAKE_REFUSED, CONNECT_FAILED, CLOSED, ALREADY_CONNECTED or
   * NO_WEBSOCKET.
   */
  connect<U = any>(url: string, user?: Record<string, unknown>): Promise<U | undefined>;
  /**
   * Sends a request and resolves with the response body. Rejects with a
   * PomeloError: the server's error (its name is the body's "error"),
   * TIMEOUT, CLOSED, or in resume mode SESSION_LOST. In resume mode a
   * request made while reconnecting is sent once the session is back.
   */
  request<T = any>(route: string, body?: unknown): Promise<T>;
  /**
   * Sends a notify: the server runs the route and answers nothing. Throws a
   * CLOSED PomeloError when not connected; in resume mode a notify made
   * while reconnecting is sent once the session is back.
   */
  notify(route: string, body?: unknown): void;
  /** Registers fn for the "kick" event. Returns a function that unregisters it. */
  on(name: 'kick', fn: (ev: KickEvent) => void): () => void;
  /** Registers fn for the "close" event. Returns a function that unregisters it. */
  on(name: 'close', fn: (ev: CloseEvent) => void): () => void;
  /** Registers fn for the "error" event (protocol errors, heartbeat timeout). Returns a function that unregisters it. */
  on(name: 'error', fn: (err: Error) => void): () => void;
  /** Registers fn for the "connected" event. Returns a function that unregisters it. */
  on(name: 'connected', fn: (ev: ConnectedEvent) => void): () => void;
  /** Registers fn for the "reconnecting" event (resume mode). Returns a function that unregisters it. */
  on(name: 'reconnecting', fn: (ev: ReconnectingEvent) => void): () => void;
  /** Registers fn for the "resumed" event (resume mode). Returns a function that unregisters it. */
  on(name: 'resumed', fn: (ev: ResumedEvent) => void): () => void;
  /** Registers fn for the "lost" event (resume mode). Returns a function that unregisters it. */
  on(name: 'lost', fn: (ev: LostEvent) => void): () => void;
  /**
   * Registers fn for the pushes of a route (such as "onChat"; not one of
   * the event names). Returns a function that unregisters it.
   */
  on<T = any, R extends string = string>(route: R & (R extends ConnectionEvent ? never : unknown), fn: (body: T, route: string) => void): () => void;
  /** Unregisters fn. */
  off(name: string, fn: (...args: any[]) => void): void;
  /**
   * Closes the connection with code 1000 (a resumable session ends at once
   * on the server) and stops reconnecting. Pending requests reject with
   * CLOSED; "close" follows.
   */
  disconnect(): void;
}

/** One package of a frame. */
export interface Package {
  type: number;
  body: Uint8Array;
}

/** A message to encode. */
export interface MessageInit {
  type: number;
  /** The request id (requests and responses). */
  id?: number;
  /** The route (requests, notifies and pushes) when code is 0. */
  route?: string;
  body?: Uint8Array;
  /** The route's dictionary code, or 0 to send the route as a string. */
  code?: number;
}

/** A decoded message. */
export interface Message {
  type: number;
  id: number;
  /** The route, or "" when it came compressed (see code). */
  route: string;
  /** The route's dictionary code, or 0. */
  code: number;
  /** The error flag (0x20). */
  error: boolean;
  /** The gzip flag (0x10). */
  gzip: boolean;
  body: Uint8Array;
}

/** Encodes one package: type, 3-byte length, body. */
export declare function encodePackage(type: number, body?: Uint8Array): Uint8Array;
/** Decodes the packages of one frame. Throws on a truncated frame. */
export declare function decodePackages(bytes: Uint8Array): Package[];
/** Encodes one message. */
export declare function encodeMessage(msg: MessageInit): Uint8Array;
/** Decodes one message. Throws on a truncated message. */
export declare function decodeMessage(bytes: Uint8Array): Message;
