// The login page. A console link carries its token in the fragment
// (`/login.html#token=…&then=…`, never sent to a server) or, for upstream links, in the query.
// The page removes it from the address bar at once, shows what the link opens and when its
// access ends (read from the token without trusting it), and POSTs it to /auth/token (which sets
// the HttpOnly session cookie and redirects to `then`) only when the person clicks "Open
// console": a link or frame on another site cannot sign anyone in by itself (login CSRF).
// Without a token it is upstream's manual form.

import { formatDuration } from './explain.js';
import { describeThen, isLocalPath, peekClaims, readLink } from './link.js';

const form = document.getElementById('login');
const token = document.getElementById('token');
const then = document.getElementById('then');
const open = document.getElementById('open');
const status = document.getElementById('login-status');

const link = readLink(window.location.search, window.location.hash);
if (link.source) {
  // Out of the address bar, history and anything that reads location from now on.
  window.history.replaceState(null, '', window.location.pathname);
}
if (link.token) token.value = link.token;
if (link.then) then.value = link.then;

function expiryText(claims, nowSeconds) {
  if (!claims || claims.exp === null) return 'When its access ends is not known until you open it.';
  const left = claims.exp - nowSeconds;
  const at = new Date(claims.exp * 1000).toLocaleString();
  if (left <= 0) return `Its access ended at ${at}: opening it will be refused.`;
  return `Its access ends at ${at} (in ${formatDuration(left)}), according to the link.`;
}

// A page framed by another one could be clicked through without the person knowing.
const framed = window.top !== window.self;

if (link.source && framed) {
  token.value = '';
  status.textContent = 'This link must be opened in its own browser tab.';
} else if (link.source) {
  const described = describeThen(link.then || '/');
  if (described.error) {
    status.textContent = described.error;
    then.setAttribute('aria-invalid', 'true');
  } else {
    if (!link.then) then.value = '/';
    document.getElementById('link-what').textContent = described.what;
    document.getElementById('link-expiry').textContent = expiryText(peekClaims(link.token), Date.now() / 1000);
    document.getElementById('link-summary').hidden = false;
    document.getElementById('manual-fields').hidden = true;
    document.getElementById('manual-intro').hidden = true;
    document.body.dataset.link = 'ready';
    open.focus();
  }
}

form.addEventListener('submit', (event) => {
  if (framed) {
    event.preventDefault();
    status.textContent = 'This page must be opened in its own browser tab.';
    return;
  }
  if (!isLocalPath(then.value.trim())) {
    event.preventDefault();
    status.textContent = 'The console address must be a path on this server, starting with "/".';
    document.getElementById('manual-fields').hidden = false;
    then.setAttribute('aria-invalid', 'true');
    then.focus();
    return;
  }
  status.textContent = 'Signing in…';
});
