// Issue 6's end-to-end steps 2–6 in real Chromium against the REAL gateway (kube-gateway), in
// front of the real API server and the KubeVirt stand-in (crates/kubevirt-standin). Whoever
// runs it has started all of that and minted the tokens (step 1); this file drives the browser.
//
// Environment (every variable without a default is required; a missing one fails the run):
//   GATEWAY_URL       e.g. http://127.0.0.1:8080 (the gateway's listen address)
//   TOKEN_TESTVM      a GateToken's JWT for testvm's VNC console, valid for at least 2 minutes
//   REVOKE_CMD        a shell command that revokes TOKEN_TESTVM (e.g. kubectl delete gatetoken ...)
//   TOKEN_SHORT       a second token for testvm that expires within about 15–90 s from now
//   COLOUR_TESTVM     testvm's screen colour (default #1565c0, the stand-in's default)
//   COLOUR_TESTVM2    testvm2's screen colour (default #c62828)
//   VM_NAMESPACE      default "default"; API_PATH default "k8s"; SUBRESOURCE_VERSION default "v1"
//   ARTIFACTS_DIR     where screenshots go (default web/e2e/artifacts)
//   REQUIRE_SESSION_ENDPOINT  default "1": the page must show the time left (GET /auth/session)

import assert from 'node:assert/strict';
import { execSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import {
  accessLink,
  assertNoCrossSiteSignIn,
  consolePage,
  launch,
  loginLink,
  openLoginLink,
  queryLoginLink,
  samplePixels,
  SAMPLE_POINTS,
  screenshot,
  waitColour,
  waitReason,
  waitState,
} from './lib.mjs';

function required(name) {
  const value = process.env[name];
  assert.ok(value && value.trim(), `environment variable ${name} is required (see the top of e2e/gateway.test.mjs)`);
  return value.trim();
}

/** The `exp` claim of a JWT (no verification: only to know when it should end). */
function expiryOf(jwt) {
  const payload = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
  assert.equal(typeof payload.exp, 'number', 'the token has an exp claim');
  return payload.exp * 1000;
}

const options = {
  namespace: process.env.VM_NAMESPACE || 'default',
  apiPath: process.env.API_PATH || 'k8s',
  version: process.env.SUBRESOURCE_VERSION || 'v1',
};
const colourTestvm = (process.env.COLOUR_TESTVM || '#1565c0').toLowerCase();
const colourTestvm2 = (process.env.COLOUR_TESTVM2 || '#c62828').toLowerCase();
const requireSession = (process.env.REQUIRE_SESSION_ENDPOINT || '1') === '1';

describe('the console through the real gateway', () => {
  let base;
  let browser;
  let page;

  before(async () => {
    base = required('GATEWAY_URL').replace(/\/+$/, '');
    required('TOKEN_TESTVM');
    required('TOKEN_SHORT');
    required('REVOKE_CMD');
    browser = await launch(base);
  });

  after(async () => {
    if (browser) await browser.close();
  });

  test('step 2–3: the access link opens testvm\'s console after the click, connected, showing its screen', async () => {
    page = await browser.context.newPage();
    // The link `kubectl gate` prints: the token in the fragment, sent only on "Open console".
    const link = loginLink(base, process.env.TOKEN_TESTVM.trim(), 'testvm', options);
    assert.equal(await openLoginLink(page, link, 30000), `the console of VM testvm in namespace ${options.namespace}`);
    await waitState(page, 'connected', 30000);
    assert.equal(new URL(page.url()).pathname, '/noVNC/vnc_lite.html');
    assert.equal(await page.locator('#vm-name').innerText(), 'testvm');
    const seen = await waitColour(page, colourTestvm, 30000);
    assert.ok(!seen.includes(colourTestvm2));
    if (requireSession) {
      assert.match(
        await page.locator('#time-left').innerText(),
        /^Access ends in \d/,
        'the page shows the time left on the token (the gateway must answer GET /auth/session)',
      );
    }
    await screenshot(page, 'console-testvm.png');
  });

  test('step 4: with the same cookie, testvm2 is refused and the page says so', async () => {
    await page.goto(`${base}${consolePage('testvm2', options)}`);
    const text = await waitReason(page, 'not-allowed', 30000);
    assert.match(text, /does not allow this console/);
    const pixels = await samplePixels(page, SAMPLE_POINTS);
    assert.ok(!pixels || !pixels.includes(colourTestvm2), 'testvm2\'s screen never showed');
    await screenshot(page, 'console-testvm2-refused.png');
  });

  test('login CSRF: another site\'s link, frame or form with a valid token sets no session', async () => {
    await assertNoCrossSiteSignIn(base, process.env.TOKEN_TESTVM.trim(), 'testvm', options);
  });

  test('step 5: revoking the GateToken ends the open session and the page says revoked', async () => {
    // In through upstream's login-page link this time (token in the query): the page still
    // asks for the click before it POSTs /auth/token.
    await openLoginLink(page, queryLoginLink(base, process.env.TOKEN_TESTVM.trim(), 'testvm', options), 30000);
    await waitState(page, 'connected', 30000);
    assert.equal(new URL(page.url()).pathname, '/noVNC/vnc_lite.html');
    await waitColour(page, colourTestvm, 30000);
    const revokedAt = Date.now();
    execSync(process.env.REVOKE_CMD, { stdio: 'inherit', shell: '/bin/bash' });
    const text = await waitReason(page, 'revoked', 15000);
    const took = (Date.now() - revokedAt) / 1000;
    assert.ok(took < 10, `the session ended ${took}s after revocation`);
    assert.match(text, /revoked/);
    await screenshot(page, 'console-revoked.png');
    // Reconnecting with the revoked token is refused too.
    await page.locator('#reconnect').click();
    await waitState(page, 'disconnected', 30000);
    const again = await page.locator('#message').innerText();
    assert.match(again, /revoked|not signed in/);
  });

  test('step 6: a second token runs out: the session ends at expiry and reconnecting is refused', async () => {
    const token = process.env.TOKEN_SHORT.trim();
    const exp = expiryOf(token);
    assert.ok(exp - Date.now() > 8000, 'TOKEN_SHORT must have at least 8 s left when the test reaches it');
    const other = await launch(base);
    try {
      const short = await other.context.newPage();
      await short.goto(accessLink(base, token, 'testvm', options));
      await waitState(short, 'connected', 30000);
      await waitColour(short, colourTestvm, 30000);
      const text = await waitReason(short, 'expired', exp - Date.now() + 15000);
      const late = (Date.now() - exp) / 1000;
      assert.ok(late > -1.5 && late < 5, `the session ended ${late}s after the token's exp`);
      assert.match(text, /expired/);
      await screenshot(short, 'console-expired.png');
      await short.locator('#reconnect').click();
      await short.waitForSelector('#state[data-state="connecting"]', { timeout: 5000 }).catch(() => {});
      await short.waitForSelector('body[data-reason]', { timeout: 30000 });
      const reason = await short.evaluate(() => document.body.dataset.reason);
      // Without /auth/session the page cannot know the expiry time, and the browser has dropped
      // the expired cookie: the refusal then reads "not signed in".
      assert.ok(
        reason === 'expired' || (!requireSession && reason === 'unauthenticated'),
        `reconnecting after expiry shows ${reason}`,
      );
      assert.equal(await short.locator('#state').getAttribute('data-state'), 'disconnected');
      assert.deepEqual(other.external, []);
    } finally {
      await other.close();
    }
  });

  test('no page made a request to another host', () => {
    assert.deepEqual(browser.external, []);
  });
});
