// pomelo-go-client from CommonJS code in node 20, which cannot require() an
// ES module: import() it. Prints {"event":"done"} after one echo through
// the server of ../client_test.go.
//
//   node commonjs.cjs <frontend-ws-url>
const url = process.argv[2];
(async () => {
  const { PomeloClient } = await import('pomelo-go-client');
  const c = new PomeloClient();
  await c.connect(url);
  const echoed = await c.request('room.h.echo', { from: 'commonjs' });
  if (echoed.from !== 'commonjs') throw new Error('echo ' + JSON.stringify(echoed));
  c.disconnect();
  process.stdout.write(JSON.stringify({ event: 'ok', what: 'import() from CommonJS' }) + '\n');
  process.stdout.write(JSON.stringify({ event: 'done' }) + '\n');
  process.exit(0);
})().catch((err) => {
  process.stdout.write(JSON.stringify({ event: 'fail', message: String(err && err.stack || err) }) + '\n');
  process.exit(1);
});
