// Type-checked by ../client_test.go (tsc --noEmit): the uses of the API
// that index.d.ts must accept, and, marked @ts-expect-error, uses it must
// reject.
import {
  PomeloClient, PomeloError, ClientError, LostReason, type ClientErrorName, type CloseEvent, type KickEvent,
  type LostEvent, type ReconnectingEvent, type ConnectionState, type LostReasonName,
  encodePackage, decodePackages, encodeMessage, decodeMessage, MessageType, PackageType,
} from 'pomelo-go-client';

interface Entry { host: string; port: number }
interface Chat { from: string; msg: string }

export async function uses(WebSocketClass: new (url: string) => any): Promise<void> {
  const client = new PomeloClient({ type: 'my-game', version: '1.0.0', user: { token: 't' }, timeout: 5000 });
  const other = new PomeloClient({ WebSocket: WebSocketClass });
  const user: { name: string } | undefined = await client.connect<{ name: string }>('ws://127.0.0.1:3014/', { token: 'u' });
  const ready: boolean = client.connected;
  const seconds: number = client.heartbeat;
  const entry = await client.request<Entry>('gate.gateHandler.queryEntry', { uid: 'ann' });
  const port: number = entry.port;
  const anything = await client.request('chat.chatHandler.echo');
  client.notify('chat.chatHandler.send', { content: 'hi', target: '*' });
  const off = client.on<Chat>('onChat', (msg, route) => { const s: string = msg.from + route; });
  off();
  client.on('kick', (ev: KickEvent) => { const r: string = ev.reason; });
  client.on('close', (ev: CloseEvent) => { const k: string | null = ev.kicked; const c: number | undefined = ev.code; });
  client.on('error', (err: Error) => { const m: string = err.message; });
  const resumable = new PomeloClient({ resume: true });
  const tuned = new PomeloClient({ resume: { maxAttempts: 5, initialDelay: 250, maxDelay: 5000 } });
  const state: ConnectionState = tuned.state;
  resumable.on('connected', (ev) => { const r: boolean = ev.resumable; });
  resumable.on('reconnecting', (ev: ReconnectingEvent) => { const n: number = ev.attempt + ev.delay; const c: number | undefined = ev.code; });
  resumable.on('resumed', (ev) => { const n: number = ev.attempt; });
  resumable.on('lost', (ev: LostEvent) => {
    const gaveUp: boolean = ev.reason === LostReason.GAVE_UP && !ev.connected;
    const r: LostReasonName = ev.reason;
  });
  const lostName: ClientErrorName = ClientError.SESSION_LOST;
  const fn = (body: unknown) => {};
  client.on('onLeave', fn);
  client.off('onLeave', fn);
  client.disconnect();
  try {
    await other.request('x.y.z', {});
  } catch (err) {
    if (err instanceof PomeloError) {
      const code: number = err.code;
      const name: string = err.name;
      const closed: boolean = err.name === ClientError.CLOSED || err.name === 'UNKNOWN_ROUTE';
    }
  }
  const n: ClientErrorName = ClientError.TIMEOUT;
  const e = new PomeloError(500, 'BAD_REQUEST', 'bad', { code: 500, error: 'BAD_REQUEST' });
  const err: Error = e;

  const frame = encodePackage(PackageType.DATA, encodeMessage({ type: MessageType.REQUEST, id: 1, route: 'a.b.c', body: new Uint8Array(0) }));
  for (const pkg of decodePackages(frame)) {
    const msg = decodeMessage(pkg.body);
    const id: number = msg.id;
    const route: string = msg.route;
    const flagged: boolean = msg.error;
  }

  // @ts-expect-error: a route is a string
  await client.request(42);
  // @ts-expect-error: the timeout is a number of milliseconds
  new PomeloClient({ timeout: '10s' });
  // @ts-expect-error: connected is read-only
  client.connected = true;
  // @ts-expect-error: a kick listener gets a KickEvent
  client.on('kick', (ev: { code: number }) => {});
  // @ts-expect-error: no such client error name
  const wrong: ClientErrorName = 'NOPE';
  // @ts-expect-error: resume is a boolean or the reconnect settings
  new PomeloClient({ resume: 'yes' });
  // @ts-expect-error: no such reconnect setting
  new PomeloClient({ resume: { retries: 3 } });
  // @ts-expect-error: a lost listener gets a LostEvent
  resumable.on('lost', (ev: { code: number }) => {});
  // @ts-expect-error: no such lost reason
  const badReason: LostReasonName = 'KICKED';
  // @ts-expect-error: state is read-only
  resumable.state = 'connected';
  // @ts-expect-error: notify returns nothing to await on
  const result: Promise<unknown> = client.notify('a.b.c');
}
