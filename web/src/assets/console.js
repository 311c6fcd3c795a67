// The VNC console page. Query parameters (upstream noVNC's vnc_lite.html names):
//   path             the VNC WebSocket path on this server, e.g.
//                    k8s/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc
//   name, namespace  shown instead of what the path names (optional)
//   preserveSession  "true": do not take over a session someone else has open (KubeVirt answers 503)
//   view_only        "true": send no keyboard or mouse input
// A gateway sharing consoles sends each viewer its status as the RFB desktop name (role, viewer
// count, take-over); the bar shows it, with "Take control" (a reconnect) when control was taken.
// The WebSocket goes to the page's own host with the subprotocol plain.kubevirt.io; the HttpOnly
// session cookie set by /auth/token goes along by itself. The token is never visible to this code.

import RFB from '../vendor/novnc/core/rfb.js';
import {
  VNC_PROTOCOL,
  describeConsoleStatus,
  explainClose,
  explainRefusal,
  formatDuration,
  httpUrl,
  parseConsolePath,
  parseConsoleStatus,
  websocketUrl,
} from './explain.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);

const ui = {
  state: $('state'),
  timeLeft: $('time-left'),
  reconnect: $('reconnect'),
  message: $('message'),
  messageTitle: $('message-title'),
  messageDetail: $('message-detail'),
  announce: $('announce'),
  screen: $('screen'),
  consoleStatus: $('console-status'),
  consoleStatusText: $('console-status-text'),
  consoleStatusDetail: $('console-status-detail'),
  takeControl: $('take-control'),
};

const STATE_TEXT = {
  connecting: 'Connecting…',
  connected: 'Connected',
  disconnected: 'Disconnected',
};

function setState(state, extra) {
  ui.state.dataset.state = state;
  ui.state.textContent = extra ? `${STATE_TEXT[state]}: ${extra}` : STATE_TEXT[state];
  document.body.dataset.state = state;
}

function showMessage(explanation) {
  ui.message.hidden = false;
  ui.message.dataset.kind = explanation.kind;
  ui.messageTitle.textContent = explanation.title;
  ui.messageDetail.textContent = explanation.detail || '';
  document.body.dataset.reason = explanation.kind;
}

function clearMessage() {
  ui.message.hidden = true;
  ui.messageTitle.textContent = '';
  ui.messageDetail.textContent = '';
  delete ui.message.dataset.kind;
  delete document.body.dataset.reason;
}

// The shared console's status (see explain.js): hidden when the gateway sends none.
function showConsoleStatus(desktopName) {
  const status = parseConsoleStatus(desktopName);
  const shown = describeConsoleStatus(status);
  ui.consoleStatus.hidden = !shown;
  ui.takeControl.hidden = !shown?.takeControl;
  if (!shown) {
    delete ui.consoleStatus.dataset.kind;
    delete document.body.dataset.console;
    ui.consoleStatusText.textContent = '';
    ui.consoleStatusDetail.textContent = '';
    return;
  }
  ui.consoleStatus.dataset.kind = status.kind;
  ui.consoleStatus.dataset.viewers = String(status.viewers);
  document.body.dataset.console = status.kind;
  ui.consoleStatusText.textContent = shown.text;
  ui.consoleStatusDetail.textContent = shown.detail;
  ui.consoleStatusDetail.hidden = !shown.detail;
}

const target = parseConsolePath(params.get('path'));
const vmName = params.get('name') || target.name || '(unknown VM)';
const vmNamespace = params.get('namespace') || target.namespace || '';
$('vm-name').textContent = vmName;
$('vm-namespace').textContent = vmNamespace ? `in ${vmNamespace}` : '';
document.title = `${vmName} – VM console`;
ui.screen.setAttribute('aria-label', `Screen of VM ${vmName}`);

// ---- time left on the token -------------------------------------------------------------------

let expiresAt = null; // ms since the epoch, or null when unknown
let lastKnownExpiry = null; // the last expiry time the gateway told us, kept after a 401
let warned = false;

const pastExpiry = () => lastKnownExpiry !== null && Date.now() >= lastKnownExpiry - 1000;

async function loadSession() {
  try {
    const response = await fetch('/auth/session', {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    });
    if (response.status === 401) {
      // The gateway's Status says why: an expired or revoked token, or none at all.
      const status = await response.json().catch(() => ({}));
      const why = typeof status.message === 'string' ? status.message : '';
      expiresAt = null;
      ui.timeLeft.dataset.known = 'false';
      if (/expired/i.test(why) || pastExpiry()) {
        ui.timeLeft.textContent = 'Access ended';
        ui.timeLeft.dataset.left = '0';
      } else if (/revoked/i.test(why)) {
        ui.timeLeft.textContent = 'Access revoked';
        ui.timeLeft.dataset.left = '0';
      } else {
        ui.timeLeft.textContent = 'Access time: not signed in';
      }
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const session = await response.json();
    if (typeof session.exp !== 'number') throw new Error('no exp');
    expiresAt = session.exp * 1000;
    lastKnownExpiry = expiresAt;
    ui.timeLeft.dataset.known = 'true';
    tick();
  } catch {
    // The gateway may not offer /auth/session: the console works without it.
    expiresAt = null;
    ui.timeLeft.textContent = 'Access time: unknown';
    ui.timeLeft.dataset.known = 'false';
  }
}

function tick() {
  if (expiresAt === null) return;
  const left = (expiresAt - Date.now()) / 1000;
  if (left <= 0) {
    ui.timeLeft.textContent = 'Access ended';
    ui.timeLeft.dataset.left = '0';
    return;
  }
  ui.timeLeft.textContent = `Access ends in ${formatDuration(left)}`;
  ui.timeLeft.dataset.left = String(Math.floor(left));
  if (left <= 60 && !warned) {
    warned = true;
    ui.announce.textContent = 'Your access to this console ends in less than a minute.';
  }
}
setInterval(tick, 1000);

// ---- the connection ---------------------------------------------------------------------------

let rfb = null;

async function diagnose(url) {
  // A browser reports a refused WebSocket upgrade only as "closed, 1006". The same URL over
  // plain HTTP gets the same refusal with its reason (a Kubernetes Status).
  try {
    const response = await fetch(httpUrl(url), {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    });
    const text = await response.text();
    let body = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return explainRefusal(response.status, body, { expired: pastExpiry() });
  } catch {
    return {
      kind: 'unreachable',
      title: 'The console service cannot be reached.',
      detail: 'Check your network connection and try again.',
    };
  }
}

function connect() {
  clearMessage();
  ui.reconnect.hidden = true;
  if (target.error) {
    setState('disconnected');
    showMessage({ kind: 'bad-link', title: target.error, detail: '' });
    return;
  }
  setState('connecting');
  const url = websocketUrl(window.location, target.path, params.get('preserveSession') === 'true');
  let opened = false;
  let closed = null;
  let socket;
  try {
    socket = new WebSocket(url, [VNC_PROTOCOL]);
  } catch (e) {
    setState('disconnected');
    showMessage({ kind: 'bad-link', title: 'This console link cannot be opened.', detail: String(e) });
    return;
  }
  socket.addEventListener('open', () => {
    opened = true;
  });
  socket.addEventListener('close', (event) => {
    closed = { code: event.code, reason: event.reason };
  });

  rfb = new RFB(ui.screen, socket, { shared: true });
  rfb.scaleViewport = true;
  rfb.resizeSession = false;
  rfb.viewOnly = params.get('view_only') === 'true';
  rfb.focusOnClick = true;

  rfb.addEventListener('connect', () => {
    setState('connected');
    ui.screen.setAttribute('aria-label', `Screen of VM ${vmName}, connected`);
    loadSession();
  });
  rfb.addEventListener('desktopname', (e) => {
    ui.screen.dataset.desktopName = e.detail.name;
    showConsoleStatus(e.detail.name);
  });
  rfb.addEventListener('securityfailure', (e) => {
    showMessage({
      kind: 'failed',
      title: 'The VM refused the console connection.',
      detail: e.detail.reason || `Security negotiation failed (status ${e.detail.status}).`,
    });
  });
  rfb.addEventListener('disconnect', async () => {
    rfb = null;
    showConsoleStatus(null);
    ui.screen.setAttribute('aria-label', `Screen of VM ${vmName}, disconnected`);
    ui.reconnect.hidden = false;
    const info = closed || { code: 1006, reason: '' };
    let explanation;
    if (!opened) {
      setState('disconnected', 'checking why…');
      explanation = await diagnose(url);
    } else {
      explanation = explainClose(info);
    }
    setState('disconnected');
    showMessage(explanation);
    loadSession();
  });
}

ui.reconnect.addEventListener('click', () => {
  if (rfb) rfb.disconnect();
  connect();
});

// Taking control back is connecting again: under the take-over policy the newest controller
// has control (the gateway decides; an observer's token never gets it).
ui.takeControl.addEventListener('click', () => {
  ui.takeControl.hidden = true;
  if (rfb) rfb.disconnect();
  connect();
});

loadSession();
connect();
