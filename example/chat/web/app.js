// The chat page: the flow of Pomelo's chat demo on pomelo-client.js. Ask the
// gate for a connector, connect to it, enter a room, then chat; pushes keep
// the user list and the conversation up to date. The connection to the
// connector resumes its session after a network blip (the client's resume
// option): the page shows "reconnecting…" meanwhile and misses nothing;
// when the session is lost, it says so and asks to enter again.
import { PomeloClient } from './pomelo-client.js';

const $ = (id) => document.getElementById(id);

const state = {
  client: null,
  username: '',
  rid: '',
  users: [],
};

function setStatus(text, kind = '') {
  const el = $('status');
  el.textContent = text;
  el.className = 'status' + (kind ? ' ' + kind : '');
}

function showLogin(error) {
  $('chat').hidden = true;
  $('login').hidden = false;
  $('enter').disabled = false;
  const el = $('login-error');
  el.hidden = !error;
  el.textContent = error || '';
}

function addLine(kind, from, text) {
  const li = document.createElement('li');
  li.className = kind;
  if (from) {
    const who = document.createElement('span');
    who.className = 'from';
    who.textContent = from;
    li.append(who);
  }
  li.append(document.createTextNode(text));
  const list = $('messages');
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function renderUsers() {
  const ul = $('users');
  ul.replaceChildren(...state.users.map((name) => {
    const li = document.createElement('li');
    li.textContent = name;
    if (name === state.username) li.className = 'me';
    return li;
  }));
  const target = $('target');
  const current = target.value;
  const options = [new Option('everyone', '*')];
  for (const name of state.users) {
    if (name !== state.username) options.push(new Option(name, name));
  }
  target.replaceChildren(...options);
  target.value = options.some((o) => o.value === current) ? current : '*';
}

async function gateAddress() {
  const res = await fetch('config.json', { cache: 'no-store' });
  if (!res.ok) throw new Error(`config.json: ${res.status}`);
  const cfg = await res.json();
  if (!cfg.gate) throw new Error('no gate server is up');
  return `ws://${cfg.gate.host}:${cfg.gate.port}/`;
}

async function enter(username, rid) {
  setStatus('asking the gate for a connector…');
  const gate = new PomeloClient();
  await gate.connect(await gateAddress());
  let entry;
  try {
    entry = await gate.request('gate.gateHandler.queryEntry', { uid: username });
  } finally {
    gate.disconnect();
  }

  const url = `ws://${entry.host}:${entry.port}/`;
  setStatus(`connecting to ${url}…`);
  const client = new PomeloClient({ resume: { maxDelay: 5000 } });
  client.on('reconnecting', ({ attempt }) => {
    if (state.client !== client) return;
    setStatus(attempt > 1 ? `reconnecting… (attempt ${attempt})` : 'reconnecting…', 'reconnecting');
  });
  client.on('resumed', () => {
    if (state.client !== client) return;
    setStatus(`online as ${state.username} on ${entry.host}:${entry.port}`, 'online');
  });
  client.on('lost', ({ reason, connected }) => {
    if (state.client !== client) return;
    state.client = null;
    if (connected) client.disconnect(); // a new session here: enter again through the gate
    setStatus('not connected', 'offline');
    showLogin({
      GAVE_UP: 'The connection was lost and could not be made again. Enter the room again.',
      NOT_RESUMED: 'You were offline too long: the server ended your session. Enter the room again.',
    }[reason] || 'The connection was lost. Enter the room again.');
  });
  client.on('onChat', (m) => {
    const to = m.target === '*' ? '' : ` → ${m.target}`;
    addLine(m.target === '*' ? 'msg' : 'msg private', m.from + to, m.msg);
  });
  client.on('onAdd', ({ user }) => {
    if (!state.users.includes(user)) state.users.push(user);
    renderUsers();
    addLine('system', '', `${user} entered the room`);
  });
  client.on('onLeave', ({ user }) => {
    state.users = state.users.filter((u) => u !== user);
    renderUsers();
    addLine('system', '', `${user} left the room`);
  });
  client.on('kick', ({ reason }) => {
    addLine('system', '', reason === 'relogin'
      ? 'you entered this room from somewhere else: disconnected here'
      : `disconnected by the server (${reason || 'no reason'})`);
  });
  client.on('close', ({ kicked }) => {
    if (state.client !== client) return;
    state.client = null;
    setStatus(kicked !== null ? `kicked: ${kicked}` : 'disconnected', 'offline');
    $('say').querySelectorAll('input, select, button').forEach((el) => { el.disabled = true; });
    $('leave').textContent = 'Back';
  });
  await client.connect(url);
  const res = await client.request('connector.entryHandler.enter', { username, rid });
  state.client = client;
  state.username = username;
  state.rid = rid;
  state.users = res.users || [];
  setStatus(`online as ${username} on ${entry.host}:${entry.port}`, 'online');
}

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const username = $('username').value.trim();
  const rid = $('room').value.trim();
  if (!username || !rid) return;
  $('enter').disabled = true;
  try {
    await enter(username, rid);
  } catch (err) {
    setStatus('not connected', 'offline');
    showLogin(err.message || String(err));
    return;
  }
  $('room-name').textContent = rid;
  $('messages').replaceChildren();
  $('leave').textContent = 'Leave';
  $('say').querySelectorAll('input, select, button').forEach((el) => { el.disabled = false; });
  renderUsers();
  $('login').hidden = true;
  $('chat').hidden = false;
  addLine('system', '', `you entered ${rid}`);
  $('text').focus();
});

$('say').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const content = $('text').value;
  if (!content || !state.client) return;
  const target = $('target').value;
  $('text').value = '';
  try {
    await state.client.request('chat.chatHandler.send', { content, target });
  } catch (err) {
    addLine('system', '', `not sent: ${err.message}`);
  }
});

$('leave').addEventListener('click', () => {
  const client = state.client;
  state.client = null;
  if (client) client.disconnect();
  setStatus('not connected');
  showLogin('');
});

// Closing the tab (or leaving the page) is leaving the room: disconnect()
// closes with code 1000, which ends the session at once. Without it, the
// browser's close (code 1001) would be a drop that the connector keeps
// for its grace window, and the others would see the leave only then.
window.addEventListener('pagehide', () => {
  const client = state.client;
  state.client = null;
  if (client) client.disconnect();
});

const params = new URLSearchParams(location.search);
if (params.get('name')) $('username').value = params.get('name');
if (params.get('room')) $('room').value = params.get('room');
