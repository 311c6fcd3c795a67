// Shared helpers of the browser tests: Debian's Chromium driven by playwright-core (no browser
// download), the console's URLs, and checks of what the page shows.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const WEB_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ARTIFACTS = process.env.ARTIFACTS_DIR || join(WEB_ROOT, 'e2e', 'artifacts');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// The flags this machine needs (see the environment notes): no sandbox as root, and no
// background networking, which the closed network would refuse.
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Starts Chromium with a fresh profile. Every request any page makes is checked against
 * `origin` (and `alsoAllowed`): `external` lists those that went elsewhere (the app must make
 * none).
 */
export async function launch(origin, viewport = { width: 1024, height: 768 }, { alsoAllowed = [], trustTestCa = false } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'virt-gateway-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport,
    // The identity provider's certificate comes from the test CA, which Chromium does not know.
    ignoreHTTPSErrors: trustTestCa,
  });
  const external = [];
  // `alsoAllowed`: origins the test itself sends the browser to (the identity provider).
  const allowed = [origin, ...alsoAllowed].map((o) => new URL(o).host);
  const check = (url) => {
    const u = new URL(url);
    if (u.protocol === 'data:' || u.protocol === 'blob:') return;
    if (!allowed.includes(u.host)) external.push(url);
  };
  context.on('request', (request) => check(request.url()));
  // Content-Security-Policy violations show up as console errors.
  const violations = [];
  const watch = (page) => {
    page.on('websocket', (ws) => check(ws.url()));
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
    });
  };
  context.on('page', watch);
  for (const page of context.pages()) watch(page);
  return {
    context,
    external,
    violations,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** The VNC path the gateway proxies, as upstream links write it (no leading slash). */
export function vncPath(vm, { namespace = 'default', version = 'v1', apiPath = 'k8s' } = {}) {
  return `${apiPath}/apis/subresources.kubevirt.io/${version}/namespaces/${namespace}/virtualmachineinstances/${vm}/vnc`;
}

/** The console page for a VM, at upstream's noVNC path. */
export function consolePage(vm, options = {}) {
  let page = `/noVNC/vnc_lite.html?path=${vncPath(vm, options)}`;
  if (options.preserveSession) page += '&preserveSession=true';
  return page;
}

/** Upstream's link: GET /auth/token sets the cookie and redirects to the console at once. */
export function accessLink(base, token, vm, options = {}) {
  return `${base}/auth/token?token=${encodeURIComponent(token)}&then=${encodeURIComponent(consolePage(vm, options))}`;
}

/**
 * The link a person is given (the link contract, crates/gateway/README.md): the login page with
 * the token in the fragment, which the browser never sends to a server.
 */
export function loginLink(base, token, vm, options = {}) {
  return `${base}/login.html#token=${encodeURIComponent(token)}&then=${encodeURIComponent(consolePage(vm, options))}`;
}

/** Upstream's login-page link, token in the query (still read by the login page). */
export function queryLoginLink(base, token, vm, options = {}) {
  return `${base}/login.html?token=${encodeURIComponent(token)}&then=${encodeURIComponent(consolePage(vm, options))}`;
}

/**
 * Opens a login-page link as a person does: the page shows what it opens and signs in only when
 * its "Open console" button is pressed (here with the keyboard, as the button has the focus).
 * Checks on the way that the token left the address bar. Returns what the page said it opens.
 */
export async function openLoginLink(page, link, timeout = 20000) {
  await page.goto(link);
  await page.waitForSelector('body[data-link="ready"]', { timeout });
  const shown = new URL(page.url());
  if (shown.hash || shown.search) throw new Error(`the token stayed in the address bar: ${page.url()}`);
  const what = await page.locator('#link-what').innerText();
  const focused = await page.evaluate(() => document.activeElement?.id);
  if (focused !== 'open') throw new Error(`the Open console button does not have the focus (${focused})`);
  await Promise.all([page.waitForURL((url) => url.pathname !== '/login.html', { timeout }), page.keyboard.press('Enter')]);
  return what;
}

export async function waitState(page, state, timeout = 20000) {
  await page.waitForSelector(`#state[data-state="${state}"]`, { timeout });
}

/** Waits until the page explains why the session ended or was refused with `kind`. */
export async function waitReason(page, kind, timeout = 20000) {
  try {
    await page.waitForSelector(`body[data-reason="${kind}"]`, { timeout });
  } catch (e) {
    const shown = await page.evaluate(() => ({
      reason: document.body.dataset.reason,
      state: document.getElementById('state')?.textContent,
      message: document.getElementById('message')?.innerText,
    }));
    throw new Error(`expected reason ${kind}, page shows ${JSON.stringify(shown)}: ${e.message}`);
  }
  return page.locator('#message').innerText();
}

/** Reads canvas pixels (framebuffer coordinates) as "#rrggbb". */
export async function samplePixels(page, points) {
  return page.evaluate((pts) => {
    const canvas = document.querySelector('#screen canvas');
    if (!canvas || canvas.width === 0) return null;
    const ctx = canvas.getContext('2d');
    return pts.map(([x, y]) => {
      const [r, g, b] = ctx.getImageData(x, y, 1, 1).data;
      return '#' + [r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('');
    });
  }, points);
}

export const SAMPLE_POINTS = [
  [320, 240],
  [600, 400],
  [5, 470],
  [630, 10],
];

/** Waits until every sample point shows `colour` (the VM's screen arrived). */
export async function waitColour(page, colour, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let seen = null;
  while (Date.now() < deadline) {
    seen = await samplePixels(page, SAMPLE_POINTS);
    if (seen && seen.every((c) => c === colour.toLowerCase())) return seen;
    await page.waitForTimeout(200);
  }
  throw new Error(`canvas never showed ${colour} at ${JSON.stringify(SAMPLE_POINTS)}: last ${JSON.stringify(seen)}`);
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path });
  return path;
}

/**
 * Login CSRF (issue 14 point 5, review §15): an attacker's site sends a fresh browser to the
 * gateway `base` with the attacker's `token` for `vm` in every way a page can without the
 * person's click on the login page (a followed link with the token in the fragment or query, a
 * frame, a GET and a POST form, a link straight to upstream's `/auth/token?token=`), and asserts
 * that no session cookie was set and that the login page, where it ran, took the token out of
 * the address bar. The attacker's site is `localhost` on another port: another site than
 * `127.0.0.1` to the browser. `base` must be an `http://127.0.0.1:PORT` address.
 */
export async function assertNoCrossSiteSignIn(base, token, vm, options = {}) {
  const gw = new URL(base);
  assert.equal(gw.hostname, '127.0.0.1', 'the attacker\'s site is localhost: the gateway must be 127.0.0.1');
  const follow = (href) => `<a id="go" href="${href}">win</a><script>document.getElementById('go').click()</script>`;
  const pages = {
    '/link-query': follow(queryLoginLink(base, token, vm, options)),
    '/link-fragment': follow(loginLink(base, token, vm, options)),
    '/link-auth-token': follow(accessLink(base, token, vm, options)),
    '/frame': `<iframe src="${loginLink(base, token, vm, options)}"></iframe><iframe src="${queryLoginLink(base, token, vm, options)}"></iframe>`,
    '/form-get': `<form id="f" method="get" action="${base}/login.html"><input name="token" value="${token}"><input name="then" value="${consolePage(vm, options)}"></form><script>document.getElementById('f').submit()</script>`,
    '/form-post': `<form id="f" method="post" action="${base}/auth/token"><input name="token" value="${token}"><input name="then" value="${consolePage(vm, options)}"></form><script>document.getElementById('f').submit()</script>`,
  };
  const evil = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>free stuff</title>${pages[req.url] || ''}`);
  });
  await new Promise((resolve) => evil.listen(0, '127.0.0.1', resolve));
  const evilBase = `http://localhost:${evil.address().port}`;
  try {
    for (const name of Object.keys(pages)) {
      const victim = await launch(base);
      try {
        const page = await victim.context.newPage();
        await page.goto(`${evilBase}${name}`);
        // Give an auto-submitting page every chance to have signed in.
        await page.waitForLoadState('networkidle');
        await page.waitForTimeout(1500);
        const cookies = await victim.context.cookies(base);
        assert.deepEqual(cookies.map((c) => c.name), [], `${name}: the attacker's page set a session`);
        for (const frame of page.frames()) {
          const login = await frame.evaluate(() => !!document.getElementById('login')).catch(() => false);
          if (login) assert.ok(!frame.url().includes(token), `${name}: the token stayed in ${frame.url()}`);
        }
        const at = new URL(page.url());
        if (at.host === gw.host) assert.notEqual(at.pathname, '/noVNC/vnc_lite.html', `${name}: went on to the console`);
      } finally {
        await victim.close();
      }
    }
  } finally {
    evil.close();
  }
}
