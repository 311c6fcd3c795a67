// The login page (upstream's login.html, kept compatible): a form that POSTs `token` and `then`
// to /auth/token, which sets the HttpOnly session cookie and redirects to `then`. When both are
// in the query string, it fills them in and submits by itself. `name` and `namespace` (the newer
// upstream link format) stand for the console of that VM when `then` is missing. The same
// parameters may come in the fragment (`#token=…&then=…`, the form shared links use): browsers
// never send a fragment to a server or in a Referer, so the token stays out of access logs.

const form = document.getElementById('login');
const token = document.getElementById('token');
const then = document.getElementById('then');
const status = document.getElementById('login-status');
const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ''));
const params = fragment.has('token') ? fragment : new URLSearchParams(window.location.search);

function consoleFor(namespace, name) {
  const path = `k8s/apis/subresources.kubevirt.io/v1/namespaces/${encodeURIComponent(namespace)}/virtualmachineinstances/${encodeURIComponent(name)}/vnc`;
  return `/noVNC/vnc_lite.html?path=${path}`;
}

function isLocalPath(value) {
  return value.startsWith('/') && !value.startsWith('//') && !value.includes('\\');
}

const givenThen =
  params.get('then') ||
  (params.get('name') && params.get('namespace') ? consoleFor(params.get('namespace'), params.get('name')) : '');
if (params.get('token')) token.value = params.get('token');
if (givenThen) then.value = givenThen;

form.addEventListener('submit', (event) => {
  if (!isLocalPath(then.value.trim())) {
    event.preventDefault();
    status.textContent = 'The console address must be a path on this server, starting with "/".';
    then.setAttribute('aria-invalid', 'true');
    then.focus();
  }
});

if (token.value.trim() && then.value.trim() && isLocalPath(then.value.trim())) {
  status.textContent = 'Signing in…';
  // Keep the token out of the browser history: the address bar no longer shows it.
  window.history.replaceState(null, '', window.location.pathname);
  form.submit();
}
