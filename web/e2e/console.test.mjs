// The web app in real Chromium against real VNC servers (TigerVNC Xvnc), served by the
// kubevirt-standin dev gateway: a stand-in for the gateway's browser-facing side that speaks the
// same contract (cookie from /auth/token, /auth/session, Status refusals, close codes 4001/4003;
// see web/README.md). It rehearses the end-to-end steps of e2e/gateway.test.mjs, which runs the
// same checks against the real gateway.
//
// Needs: web/dist built (npm test builds it), Chromium at /usr/bin/chromium, Xvnc (both from
// scripts/install-system-deps.sh), and cargo (the stand-in is built unless STANDIN_BIN is set).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  WEB_ROOT,
  accessLink,
  assertNoCrossSiteSignIn,
  consolePage,
  launch,
  loginLink,
  openLoginLink,
  queryLoginLink,
  screenshot,
  waitColour,
  waitReason,
  waitState,
} from './lib.mjs';

const REPO = join(WEB_ROOT, '..');

function standinBinary() {
  if (process.env.STANDIN_BIN) return process.env.STANDIN_BIN;
  const built = spawnSync('cargo', ['build', '--quiet', '--locked', '-p', 'kubevirt-standin', '--bin', 'kubevirt-standin'], {
    cwd: REPO,
    stdio: 'inherit',
  });
  assert.equal(built.status, 0, 'cargo build -p kubevirt-standin failed');
  const target = process.env.CARGO_TARGET_DIR || join(REPO, 'target');
  const bin = join(target, 'debug', 'kubevirt-standin');
  assert.ok(existsSync(bin), `${bin} missing after cargo build`);
  return bin;
}

/** Starts `kubevirt-standin dev-gateway` and reads its ready line. */
async function startDevGateway() {
  const dist = join(WEB_ROOT, 'dist');
  assert.ok(existsSync(join(dist, 'index.html')), 'web/dist is not built: run npm run build');
  const child = spawn(standinBinary(), ['dev-gateway', '--web-root', dist], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('dev gateway not ready within 60 s')), 60000);
    child.once('exit', (code) => reject(new Error(`dev gateway exited with ${code}`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
  });
  return { child, ready };
}

describe('console page against real VNC servers (dev gateway)', () => {
  let gateway;
  let base;
  let colours;
  let browser;

  before(async () => {
    gateway = await startDevGateway();
    base = gateway.ready.url;
    colours = Object.fromEntries(gateway.ready.vms.map((vm) => [vm.name, vm.colour]));
    assert.ok(colours.testvm && colours.testvm2 && colours.testvm !== colours.testvm2, JSON.stringify(colours));
    browser = await launch(base);
  });

  after(async () => {
    if (browser) await browser.close();
    if (gateway) {
      gateway.child.stdin.end();
      gateway.child.kill('SIGTERM');
    }
  });

  let first; // the page connected to testvm in the first test

  test('the login link (token in the fragment) opens testvm\'s console after the click', async () => {
    first = await browser.context.newPage();
    const what = await openLoginLink(first, loginLink(base, 'dev.testvm.3600', 'testvm'));
    assert.equal(what, 'the console of VM testvm in namespace default');
    await waitState(first, 'connected');
    assert.equal(new URL(first.url()).pathname, '/noVNC/vnc_lite.html');
    assert.equal(await first.locator('#vm-name').innerText(), 'testvm');
    assert.match(await first.locator('#vm-namespace').innerText(), /default/);
    await waitColour(first, colours.testvm);
    assert.equal(await first.locator('#screen').getAttribute('data-desktop-name'), 'testvm');
    assert.match(await first.locator('#time-left').innerText(), /^Access ends in (59|60|1:00):\d\d$/);
    assert.equal(await first.locator('#state').innerText(), 'Connected');
    await screenshot(first, 'dev-console-testvm.png');
  });

  test('the upstream link (/auth/token then /noVNC/vnc_lite.html) works and takes the session over', async () => {
    const second = await browser.context.newPage();
    await second.goto(accessLink(base, 'dev.testvm.3600', 'testvm'));
    await waitState(second, 'connected');
    await waitColour(second, colours.testvm);
    // KubeVirt allows one VNC session per VM: the first page's session was taken over.
    const text = await waitReason(first, 'taken-over');
    assert.match(text, /Someone else opened this console/);
    await waitState(first, 'disconnected');
    assert.equal(await first.locator('#reconnect').isVisible(), true);
    await first.close();
  });

  test('with preserveSession, a second viewer is told the VM is busy', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${base}${consolePage('testvm', { preserveSession: true })}`);
    const text = await waitReason(page, 'busy');
    assert.match(text, /busy/);
    await page.close();
  });

  test('with the same cookie, testvm2 is refused and the page says it is not allowed', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${base}${consolePage('testvm2')}`);
    const text = await waitReason(page, 'not-allowed');
    assert.match(text, /does not allow this console/);
    assert.match(text, /not allowed/);
    assert.equal(await page.locator('#state').getAttribute('data-state'), 'disconnected');
    await screenshot(page, 'dev-console-testvm2-refused.png');
    await page.close();
  });

  test('an unknown VM is reported as not found', async () => {
    const page = await browser.context.newPage();
    await page.goto(accessLink(base, 'dev.nosuchvm.3600', 'nosuchvm'));
    const text = await waitReason(page, 'not-found');
    assert.match(text, /does not exist/);
    await page.close();
  });

  test('without a session cookie the page says so', async () => {
    const other = await launch(base);
    try {
      const page = await other.context.newPage();
      await page.goto(`${base}${consolePage('testvm')}`);
      const text = await waitReason(page, 'unauthenticated');
      assert.match(text, /not signed in/);
      assert.match(await page.locator('#time-left').innerText(), /not signed in/);
    } finally {
      await other.close();
    }
  });

  test('at phone width the screen is scaled to fit and nothing scrolls sideways', async () => {
    const phone = await launch(base, { width: 375, height: 740 });
    try {
      const page = await phone.context.newPage();
      await page.goto(accessLink(base, 'dev.testvm2.3600', 'testvm2'));
      await waitState(page, 'connected');
      await waitColour(page, colours.testvm2);
      const box = await page.locator('#screen canvas').boundingBox();
      assert.ok(box.width <= 375 && box.width > 300, `canvas is ${box.width}px wide`);
      const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scroll <= 375, `page is ${scroll}px wide`);
      await screenshot(page, 'dev-console-phone.png');
      await page.close();
    } finally {
      await phone.close();
    }
  });

  test('the login form has labelled fields and refuses a console address off this server', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${base}/`);
    await page.getByLabel('Access token').fill('dev.testvm.3600');
    await page.getByLabel('Console address').fill('https://elsewhere.example/');
    await page.getByRole('button', { name: 'Open console' }).click();
    await page.waitForSelector('#then[aria-invalid="true"]');
    assert.match(await page.locator('#login-status').innerText(), /path on this server/);
    assert.equal(new URL(page.url()).pathname, '/');
    await page.close();
  });

  test('a short token ends the session at expiry, and reconnecting is refused as expired', async () => {
    const other = await launch(base);
    try {
      const page = await other.context.newPage();
      const started = Date.now();
      await page.goto(accessLink(base, 'dev.testvm.6', 'testvm'));
      await waitState(page, 'connected');
      const text = await waitReason(page, 'expired', 15000);
      const took = (Date.now() - started) / 1000;
      assert.ok(took >= 5 && took < 12, `session ended after ${took}s for a 6 s token`);
      assert.match(text, /expired/);
      assert.equal(await page.locator('#time-left').innerText(), 'Access ended');
      await screenshot(page, 'dev-console-expired.png');
      await page.locator('#reconnect').click();
      const again = await waitReason(page, 'expired');
      assert.match(again, /expired/);
      assert.equal(await page.locator('#state').getAttribute('data-state'), 'disconnected');
    } finally {
      await other.close();
    }
  });

  test('revoking the token ends the open session and the page says it was revoked', async () => {
    const other = await launch(base);
    try {
      const page = await other.context.newPage();
      await page.goto(accessLink(base, 'dev.testvm2.3600', 'testvm2'));
      await waitState(page, 'connected');
      await waitColour(page, colours.testvm2);
      const revokedAt = Date.now();
      const response = await fetch(`${base}/dev/revoke`, { method: 'POST' });
      assert.equal(response.status, 204);
      const text = await waitReason(page, 'revoked', 10000);
      assert.ok(Date.now() - revokedAt < 5000, 'the page said so within 5 s');
      assert.match(text, /revoked/);
      await screenshot(page, 'dev-console-revoked.png');
    } finally {
      await other.close();
    }
  });

  test('a cross-site page cannot sign anyone in through the login page: not by link, frame or form', async () => {
    // A token string not seen before (the revocation test above revoked every earlier one).
    const evilToken = 'dev.testvm2.3601';
    await assertNoCrossSiteSignIn(base, evilToken, 'testvm2');
    // The same link, clicked by the person who opened it: a session (the check above can see one).
    const person = await launch(base);
    try {
      const page = await person.context.newPage();
      await openLoginLink(page, queryLoginLink(base, evilToken, 'testvm2'));
      await waitState(page, 'connected');
      const cookies = await person.context.cookies(base);
      assert.deepEqual(cookies.map((c) => c.name), ['ocgate-session-token']);
    } finally {
      await person.close();
    }
  });

  test('no page made a request to another host or broke the Content-Security-Policy', () => {
    assert.deepEqual(browser.external, []);
    assert.deepEqual(browser.violations, []);
  });
});
