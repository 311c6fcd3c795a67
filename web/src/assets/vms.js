// The "Your VMs" page: what a signed-in person may open, a console with their own identity, and
// links they share. Every request goes to the gateway's /k8s/ with the session cookie, so the API
// server decides with the person's identity (RBAC, and the delegation policy at GateToken
// creation); this page only shows what it answers. Pure logic lives in share.js.

import {
  DURATION_PRESETS,
  SELF_REVIEW,
  SELF_REVIEW_URL,
  SSAR_URL,
  activeLinks,
  consolePage,
  explainApiError,
  formatTimeLeft,
  gateTokensUrl,
  isDnsLabel,
  ME_URL,
  parseDuration,
  readMe,
  shareGateToken,
  shareLink,
  tokenState,
  vmiListUrl,
  vmsOf,
  vncAccessReview,
} from './share.js';

const $ = (id) => document.getElementById(id);
const READY_TIMEOUT_MS = 30000;

const settings = {
  tokenNamespace: 'kube-gateway',
  server: '',
  gatewayUrl: window.location.origin,
  namespace: 'default',
  signIn: '/login.html',
};
let username = '';
let sharing = null; // the VM the share form is for
let links = [];

/** The deployment's settings from config.json in the web root (optional; see web/README.md). */
async function loadSettings() {
  try {
    const response = await fetch('config.json', { cache: 'no-store' });
    if (!response.ok) return;
    const given = await response.json();
    if (isDnsLabel(given.tokenNamespace)) settings.tokenNamespace = given.tokenNamespace;
    if (typeof given.server === 'string') settings.server = given.server;
    if (isDnsLabel(given.namespace)) settings.namespace = given.namespace;
    // Only http(s) URLs: the links carry tokens, so they must never point anywhere odd.
    if (typeof given.gatewayUrl === 'string' && /^https?:\/\/[^/\\?#]+\/?$/.test(given.gatewayUrl)) {
      settings.gatewayUrl = given.gatewayUrl.replace(/\/$/, '');
    }
    if (typeof given.signIn === 'string' && given.signIn.startsWith('/') && !given.signIn.startsWith('//')) {
      settings.signIn = given.signIn;
    }
  } catch {
    // No or unreadable config.json: the defaults.
  }
}

/** One API request with the session cookie: `{ ok, status, body }`, never throws. */
async function api(method, url, body) {
  const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    return { ok: false, status: 0, body: { message: `the gateway cannot be reached (${e.message})` } };
  }
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  return { ok: response.ok, status: response.status, body: parsed };
}

function showNotice(problem, what) {
  $('notice').hidden = false;
  $('notice').dataset.kind = problem.kind;
  document.body.dataset.refusal = problem.kind;
  $('notice-title').textContent = what ? `${what}: ${problem.title}` : problem.title;
  $('notice-detail').textContent = problem.message ? `The server said: ${problem.message}` : '';
  $('notice-action').hidden = problem.kind !== 'signed-out';
  if (problem.kind === 'signed-out') {
    $('sign-in').href = settings.signIn;
    $('whoami').textContent = 'Not signed in';
  }
}

/**
 * Who is signed in: the gateway's `/auth/me` when it has sign-in (issue 17) says whether the
 * person is, and where to sign in; the API server's `SelfSubjectReview` gives the Kubernetes user
 * name (what RBAC and admission see, e.g. with the API server's `oidc:` prefix), which is the
 * name recorded on shared links. Returns false when the page cannot go on.
 */
async function whoAmI() {
  const me = readMe(await api('GET', ME_URL));
  if (me.signInAvailable || me.signedIn) settings.signIn = me.signIn;
  // Asked even when /auth/me says "not signed in": a pass-through credential or a gateway token
  // in the cookie is a session too, which only the API server can name.
  const answer = await api('POST', SELF_REVIEW_URL, SELF_REVIEW);
  if (answer.ok) username = answer.body?.status?.userInfo?.username || '';
  if (!username && me.signedIn) username = me.username;
  if (!answer.ok && !username) {
    if (answer.status === 401 && me.signInAvailable) {
      $('sign-in').textContent = 'Sign in';
      showNotice(
        { kind: 'signed-out', title: 'You are not signed in, or your sign-in has ended. Sign in to see your VMs.', message: '' },
        '',
      );
      return false;
    }
    showNotice(explainApiError(answer.status, answer.body), 'Who you are');
    return answer.status !== 401;
  }
  $('whoami').textContent = username ? `Signed in as ${username}` : 'Signed in';
  return true;
}

async function mayOpen(vm) {
  const answer = await api('POST', SSAR_URL, vncAccessReview(vm.namespace, vm.name));
  return answer.ok && answer.body?.status?.allowed === true;
}

/** Lists VMIs in every namespace, or in `namespace`; keeps those whose console the person may open. */
async function loadVms(namespace) {
  $('vms-status').textContent = 'Loading…';
  $('vms').replaceChildren();
  let answer = await api('GET', vmiListUrl(namespace));
  if (namespace == null && answer.status === 403) {
    // Not allowed everywhere: per namespace, starting with the configured one.
    $('namespace-form').hidden = false;
    $('namespace').value = settings.namespace;
    return loadVms(settings.namespace);
  }
  if (!answer.ok) {
    const problem = explainApiError(answer.status, answer.body);
    $('vms-status').textContent = `${problem.title} ${problem.message}`.trim();
    if (problem.kind === 'signed-out') showNotice(problem, 'Listing your VMs');
    return;
  }
  const vms = vmsOf(answer.body);
  const allowed = await Promise.all(vms.map(mayOpen));
  const open = vms.filter((_, i) => allowed[i]);
  const where = namespace == null ? 'in any namespace' : `in namespace ${namespace}`;
  const hidden = vms.length - open.length;
  $('vms-status').textContent =
    (open.length ? `${open.length} VM${open.length === 1 ? '' : 's'} ${where}.` : `No VM you may open ${where}.`) +
    (hidden ? ` ${hidden} other${hidden === 1 ? '' : 's'} you may see but not open ${hidden === 1 ? 'is' : 'are'} not shown.` : '');
  $('vms').replaceChildren(...open.map(vmItem));
}

function vmItem(vm) {
  const li = document.createElement('li');
  li.className = 'vm';
  li.dataset.vm = `${vm.namespace}/${vm.name}`;
  const title = document.createElement('h3');
  title.textContent = vm.name;
  const where = document.createElement('p');
  where.className = 'help';
  where.textContent = `namespace ${vm.namespace}${vm.phase ? ` · ${vm.phase}` : ''}`;
  const open = document.createElement('a');
  open.className = 'button';
  open.href = consolePage(vm.namespace, vm.name);
  open.textContent = 'Open console';
  open.setAttribute('aria-label', `Open the console of ${vm.name}`);
  const share = document.createElement('button');
  share.type = 'button';
  share.textContent = 'Share';
  share.setAttribute('aria-label', `Share the console of ${vm.name}`);
  share.addEventListener('click', () => openShare(vm));
  const buttons = document.createElement('div');
  buttons.className = 'buttons';
  buttons.append(open, share);
  li.append(title, where, buttons);
  return li;
}

function renderDurations() {
  const choices = DURATION_PRESETS.map((preset, i) => {
    const div = document.createElement('div');
    div.className = 'choice';
    const input = document.createElement('input');
    input.type = 'radio';
    input.name = 'duration';
    input.id = `duration-${preset.id}`;
    input.value = String(preset.seconds);
    input.checked = i === 0;
    const label = document.createElement('label');
    label.htmlFor = input.id;
    label.textContent = preset.label;
    div.append(input, label);
    return div;
  });
  $('durations').replaceChildren(...choices);
  $('custom-duration').addEventListener('input', () => {
    $('duration-custom').checked = true;
  });
}

function openShare(vm) {
  sharing = vm;
  $('share').hidden = false;
  $('share-vm').textContent = vm.name;
  $('share-result').hidden = true;
  $('share-error').hidden = true;
  $('share-status').textContent = '';
  $('custom-duration').removeAttribute('aria-invalid');
  $('share').scrollIntoView({ block: 'nearest' });
  document.querySelector('input[name="duration"]:checked').focus();
}

function shareError(problem) {
  $('share-error').hidden = false;
  $('share-error').dataset.kind = problem.kind;
  document.body.dataset.shareRefusal = problem.kind;
  $('share-error-title').textContent = problem.title;
  $('share-error-detail').textContent = problem.message ? `Reason: ${problem.message}` : '';
  $('share-status').textContent = '';
  $('share-error').scrollIntoView({ block: 'nearest' });
}

function chosenDuration() {
  const choice = document.querySelector('input[name="duration"]:checked');
  if (choice && choice.value !== 'custom') return { seconds: Number(choice.value) };
  return parseDuration($('custom-duration').value);
}

async function waitReady(name) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const answer = await api('GET', gateTokensUrl(settings.tokenNamespace, name));
    if (!answer.ok) return { state: 'failed', problem: explainApiError(answer.status, answer.body) };
    const state = tokenState(answer.body);
    if (state.state !== 'waiting') return state;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return { state: 'failed', message: 'The link was not ready within 30 seconds: is the operator running?' };
}

async function createLink(event) {
  event.preventDefault();
  if (!sharing) return;
  const vm = sharing;
  const duration = chosenDuration();
  if (duration.error) {
    $('custom-duration').setAttribute('aria-invalid', 'true');
    shareError({ kind: 'invalid-duration', title: duration.error, message: '' });
    $('custom-duration').focus();
    return;
  }
  $('custom-duration').removeAttribute('aria-invalid');
  $('share-error').hidden = true;
  $('share-result').hidden = true;
  $('create-link').disabled = true;
  $('share-status').textContent = `Creating a link to ${vm.name}…`;
  try {
    const body = shareGateToken({
      tokenNamespace: settings.tokenNamespace,
      server: settings.server,
      vm,
      durationSec: duration.seconds,
      note: $('note').value,
      creator: username,
    });
    const created = await api('POST', gateTokensUrl(settings.tokenNamespace), body);
    if (!created.ok) {
      const problem = explainApiError(created.status, created.body);
      if (problem.kind === 'forbidden') problem.title = `You may not share the console of ${vm.name}.`;
      shareError(problem);
      return;
    }
    const name = created.body?.metadata?.name;
    $('share-status').textContent = 'Waiting for the link to be signed…';
    const ready = await waitReady(name);
    if (ready.state !== 'ready') {
      shareError(ready.problem || { kind: 'failed', title: 'The link could not be made.', message: ready.message || '' });
      return;
    }
    $('share-link').value = shareLink(settings.gatewayUrl, ready.token, vm.namespace, vm.name);
    $('share-result-vm').textContent = vm.name;
    $('share-result').hidden = false;
    $('share-status').textContent = `The link to ${vm.name} is ready.`;
    $('share-link').focus();
    $('share-link').select();
    await loadLinks();
  } finally {
    $('create-link').disabled = false;
  }
}

async function copy(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'Copied to the clipboard.';
  } catch {
    status.textContent = 'Copying is not allowed here: select the link and copy it yourself.';
  }
}

async function loadLinks() {
  const answer = await api('GET', gateTokensUrl(settings.tokenNamespace));
  if (!answer.ok) {
    const problem = explainApiError(answer.status, answer.body);
    $('links-status').textContent = `Your links cannot be listed. ${problem.title} ${problem.message}`.trim();
    links = [];
    renderLinks();
    return;
  }
  links = activeLinks(answer.body, username, Date.now() / 1000);
  renderLinks();
}

function renderLinks() {
  const now = Date.now() / 1000;
  links = links.filter((l) => l.exp === null || l.exp > now);
  if (!$('links-status').textContent.startsWith('Your links cannot') || links.length) {
    $('links-status').textContent = links.length ? '' : 'You have no active links.';
  }
  $('links').replaceChildren(...links.map(linkItem));
}

function linkItem(link) {
  const li = document.createElement('li');
  li.className = 'link';
  li.dataset.name = link.name;
  li.dataset.vm = link.vm;
  const title = document.createElement('h3');
  title.textContent = link.vm;
  const about = document.createElement('p');
  about.className = 'help';
  about.textContent = `namespace ${link.namespace}${link.note ? ` · ${link.note}` : ''}`;
  const left = document.createElement('p');
  left.className = 'time-left';
  left.dataset.exp = link.exp ?? '';
  left.textContent = timeLeftText(link.exp);
  const status = document.createElement('p');
  status.className = 'status-line';
  status.setAttribute('role', 'status');
  const buttons = document.createElement('div');
  buttons.className = 'buttons';
  if (link.token) {
    const copyButton = document.createElement('button');
    copyButton.type = 'button';
    copyButton.className = 'secondary';
    copyButton.textContent = 'Copy link';
    copyButton.setAttribute('aria-label', `Copy the link to ${link.vm}`);
    copyButton.addEventListener('click', () => copy(shareLink(settings.gatewayUrl, link.token, link.namespace, link.vm), status));
    buttons.append(copyButton);
  }
  const revoke = document.createElement('button');
  revoke.type = 'button';
  revoke.className = 'danger';
  revoke.textContent = 'Revoke';
  revoke.setAttribute('aria-label', `Revoke the link to ${link.vm}${link.note ? ` (${link.note})` : ''}`);
  revoke.addEventListener('click', () => revokeLink(link, status));
  buttons.append(revoke);
  li.append(title, about, left, buttons, status);
  return li;
}

function timeLeftText(exp) {
  if (exp === null) return 'Not signed yet';
  return `Ends in ${formatTimeLeft(exp - Date.now() / 1000)}`;
}

/** Deleting the GateToken revokes it: the gateway refuses its JWT and ends open consoles. */
async function revokeLink(link, status) {
  status.textContent = 'Revoking…';
  const answer = await api('DELETE', gateTokensUrl(settings.tokenNamespace, link.name));
  if (!answer.ok && answer.status !== 404) {
    const problem = explainApiError(answer.status, answer.body);
    status.textContent = `Not revoked. ${problem.title} ${problem.message}`.trim();
    return;
  }
  $('links-status').textContent = `The link to ${link.vm} is revoked.`;
  await loadLinks();
  if (!links.length) $('links-status').textContent = `The link to ${link.vm} is revoked. You have no active links.`;
  $('links-title').focus?.();
}

function tick() {
  for (const p of document.querySelectorAll('#links .time-left')) {
    if (p.dataset.exp) p.textContent = timeLeftText(Number(p.dataset.exp));
  }
  if (links.some((l) => l.exp !== null && l.exp <= Date.now() / 1000)) renderLinks();
}

async function main() {
  renderDurations();
  $('share-form').addEventListener('submit', createLink);
  $('cancel-share').addEventListener('click', () => {
    $('share').hidden = true;
    sharing = null;
  });
  $('copy-link').addEventListener('click', () => copy($('share-link').value, $('share-status')));
  $('namespace-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const ns = $('namespace').value.trim();
    if (!isDnsLabel(ns)) {
      $('namespace').setAttribute('aria-invalid', 'true');
      $('vms-status').textContent = 'A namespace is a lowercase name such as "default".';
      return;
    }
    $('namespace').removeAttribute('aria-invalid');
    loadVms(ns);
  });
  $('links-title').tabIndex = -1;
  await loadSettings();
  if (!(await whoAmI())) {
    $('vms-status').textContent = '';
    return;
  }
  await Promise.all([loadVms(null), loadLinks()]);
  document.body.dataset.loaded = 'true';
  setInterval(tick, 1000);
}

main();
