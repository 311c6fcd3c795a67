// Pure helpers of the console page (no DOM): what the console path names, and how to explain a
// refusal or the end of a session to a person. Unit-tested in Node (test/unit.test.mjs).

/** The subprotocol KubeVirt requires for VNC. */
export const VNC_PROTOCOL = 'plain.kubevirt.io';

/** Close codes the gateway uses when it ends a session (see web/README.md). */
export const CLOSE_EXPIRED = 4001;
export const CLOSE_REVOKED = 4003;

const VNC_PATH =
  /^(?:[^?#]*\/)?apis\/subresources\.kubevirt\.io\/([^/]+)\/namespaces\/([^/]+)\/virtualmachineinstances\/([^/]+)\/vnc$/;

/**
 * Checks and describes the `path` query parameter: a path on this server (no scheme, host or
 * "//"), for example `k8s/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc`.
 * Returns `{ path, namespace, name, version }` (namespace/name/version null when the path is not
 * a KubeVirt VNC path) or `{ error }`.
 */
export function parseConsolePath(raw) {
  if (typeof raw !== 'string' || raw.trim() === '') {
    return { error: 'This console link has no path: open the link you were given again.' };
  }
  const path = raw.trim().replace(/^\/+/, '');
  if (/^[a-z][a-z0-9+.-]*:/i.test(path) || raw.trim().startsWith('//') || path.includes('\\')) {
    return { error: 'This console link is malformed: its path must be a path on this server.' };
  }
  const segments = path.split('?')[0].split('/');
  if (segments.some((s) => s === '..' || s === '.')) {
    return { error: 'This console link is malformed: its path must be a path on this server.' };
  }
  const m = VNC_PATH.exec(path.split('?')[0]);
  const dec = (s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  return {
    path,
    version: m ? dec(m[1]) : null,
    namespace: m ? dec(m[2]) : null,
    name: m ? dec(m[3]) : null,
  };
}

/** The WebSocket URL for a console path on the page's own host (ws: or wss: as the page). */
export function websocketUrl(location, path, preserveSession) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  let url = `${scheme}//${location.host}/${path}`;
  if (preserveSession) {
    url += (url.includes('?') ? '&' : '?') + 'preserveSession=true';
  }
  return url;
}

/** The same URL over HTTP, to read the refusal a browser hides from a failed WebSocket. */
export function httpUrl(wsUrl) {
  return wsUrl.replace(/^ws(s?):/, 'http$1:');
}

/** Formats seconds as "1:02:03" or "4:05". */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

const EXPIRED = {
  kind: 'expired',
  title: 'Your access to this console has expired.',
  detail: 'Ask whoever gave you the link for a new one.',
};
const REVOKED = {
  kind: 'revoked',
  title: 'Your access to this console was revoked.',
  detail: 'Whoever gave you the link has withdrawn it. Ask them for a new one if you still need access.',
};

/**
 * Explains why an open session ended, from the WebSocket close event. The gateway closes with
 * 4001 "token expired" or 4003 "token revoked"; the reason text is checked as well, so that a
 * gateway using other codes (or 1008) is still understood.
 */
export function explainClose({ code, reason }) {
  const why = reason || '';
  if (code === CLOSE_EXPIRED || /expired/i.test(why)) return EXPIRED;
  if (code === CLOSE_REVOKED || /revoked/i.test(why)) return REVOKED;
  if (/taken over|took over|another (vnc )?(connection|session|viewer)/i.test(why)) {
    return {
      kind: 'taken-over',
      title: 'Someone else opened this console, which ended your session.',
      detail: 'A VM has one console session at a time. Reconnect to take it back.',
    };
  }
  if (code === 1000 || code === 1001) {
    return {
      kind: 'closed',
      title: 'The console session was closed.',
      detail: why ? `The server said: ${why}` : 'The VM or the server ended the session.',
    };
  }
  if (code === 1006) {
    return {
      kind: 'lost',
      title: 'The connection to the console was lost.',
      detail: 'The network or the server went away. Reconnect to try again.',
    };
  }
  return {
    kind: 'closed',
    title: `The console session ended (code ${code}).`,
    detail: why ? `The server said: ${why}` : 'No reason was given.',
  };
}

/**
 * Explains why a WebSocket could not be opened, from the HTTP answer to the same URL (a
 * Kubernetes Status JSON from the gateway, the API server or KubeVirt). `expired`: the page knows
 * the token's expiry time has passed.
 */
export function explainRefusal(status, body, { expired = false } = {}) {
  let message = '';
  if (body && typeof body === 'object' && typeof body.message === 'string') {
    message = body.message;
  } else if (typeof body === 'string') {
    message = body.trim().slice(0, 300);
  }
  const said = message ? `The server said: ${message}` : '';
  if (status === 401) {
    if (/expired/i.test(message)) return { ...EXPIRED, status };
    if (/revoked/i.test(message)) return { ...REVOKED, status };
    // The gateway's cookie expires with the token, so after expiry the browser sends none and
    // the refusal is only "no token": the page knows better when it saw the expiry time.
    if (expired) return { ...EXPIRED, status };
    return {
      kind: 'unauthenticated',
      status,
      title: 'You are not signed in to this console.',
      detail: `Open the link you were given again. ${said}`.trim(),
    };
  }
  if (status === 403) {
    return {
      kind: 'not-allowed',
      status,
      title: 'Your access link does not allow this console.',
      detail: said || 'The token is for another VM or another kind of access.',
    };
  }
  if (status === 404) {
    return {
      kind: 'not-found',
      status,
      title: 'This VM does not exist, or is not running.',
      detail: said,
    };
  }
  if (status === 503) {
    return {
      kind: 'busy',
      status,
      title: 'This VM is busy: someone else has its console open.',
      detail: 'A VM has one console session at a time. Try again later.',
    };
  }
  if (status === 502 || status === 504) {
    return {
      kind: 'unreachable',
      status,
      title: 'The console service cannot be reached right now.',
      detail: said || 'Try again in a moment.',
    };
  }
  if (status >= 200 && status < 500) {
    return {
      kind: 'failed',
      status,
      title: 'The console connection was refused.',
      detail: `The server answered ${status} and did not accept the WebSocket. ${said}`.trim(),
    };
  }
  return {
    kind: 'failed',
    status,
    title: `The console connection failed (HTTP ${status}).`,
    detail: said,
  };
}

/**
 * A shared console's status, as the gateway sends it to each viewer in the RFB desktop name
 * (crates/gateway/README.md, "Shared consoles"): `<vmi name> · <state> · <N> viewer(s)`.
 * `kind` is `control`, `shared`, `observe` or `taken-over`. Anything else (a VNC server's own
 * desktop name, a gateway without shared consoles) is `null`: the page then shows no status.
 */
export const CONSOLE_STATES = Object.freeze({
  'you have control': 'control',
  'shared control': 'shared',
  'view only': 'observe',
  'control taken by another viewer': 'taken-over',
});

export function parseConsoleStatus(desktopName) {
  if (typeof desktopName !== 'string') return null;
  const parts = desktopName.split(' · ');
  if (parts.length < 3) return null;
  // The VM name comes first and may itself contain the separator: read from the end.
  const count = parts.pop();
  const state = parts.pop();
  const vm = parts.join(' · ');
  const kind = Object.hasOwn(CONSOLE_STATES, state) ? CONSOLE_STATES[state] : null;
  const m = /^(\d{1,6}) viewers?$/.exec(count);
  if (!kind || !m || vm === '') return null;
  const viewers = Number(m[1]);
  if ((viewers === 1) !== (count.endsWith(' viewer'))) return null;
  return { vm, state, kind, viewers };
}

/**
 * What the status bar shows for a parsed status: `text` (the gateway's state and count), a
 * `detail` for the take-over message, and whether the "Take control" button is offered (only
 * to a controller whose control was taken).
 */
export function describeConsoleStatus(status) {
  if (!status) return null;
  const state = status.state.charAt(0).toUpperCase() + status.state.slice(1);
  const viewers = `${status.viewers} ${status.viewers === 1 ? 'viewer' : 'viewers'}`;
  const text = `${state} · ${viewers}`;
  if (status.kind === 'taken-over') {
    return {
      text,
      detail: 'Another viewer took control of this console: your keys and mouse no longer reach the VM. You can still watch, or take control back.',
      takeControl: true,
    };
  }
  const detail = status.kind === 'observe' ? 'You can watch this console; your keys and mouse do not reach the VM.' : '';
  return { text, detail, takeControl: false };
}
