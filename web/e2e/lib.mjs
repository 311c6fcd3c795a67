// Shared helpers of the browser tests: Debian's Chromium driven by playwright-core (no browser
// download), the console's URLs, and checks of what the page shows.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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

/** The link a person is given: /auth/token sets the cookie and redirects to the console. */
export function accessLink(base, token, vm, options = {}) {
  return `${base}/auth/token?token=${encodeURIComponent(token)}&then=${encodeURIComponent(consolePage(vm, options))}`;
}

/** The same, through the login page (which auto-submits). */
export function loginLink(base, token, vm, options = {}) {
  return `${base}/login.html?token=${encodeURIComponent(token)}&then=${encodeURIComponent(consolePage(vm, options))}`;
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
