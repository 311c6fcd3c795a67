// Issue 17's page ("Your VMs", vms.html) in real Chromium, against the real API server through
// a real kube-gateway, with the person's own Kubernetes identity. Run by
// `cargo test -p virt-gateway-demo --test page_e2e`, which starts everything and sets:
//
//   PAGE_URL          the gateway serving the page: OIDC sign-in with DEX_URL, and pass-through
//                     mode (a cookie holding a Kubernetes credential is forwarded as is)
//   LINK_GATEWAY_URL  the gateway shared links point at (the operator's; config.json gatewayUrl)
//   DEX_URL           the identity provider's issuer (https, certificate from the test CA)
//   ALICE_EMAIL, ALICE_PASSWORD  alice at Dex: may list VMIs in default, open testvm (not
//                     testvm2), manage GateTokens
//   TOKEN_BOB         bob (pass-through): the same, until REVOKE_BOB_CMD takes his console rights
//   REVOKE_BOB_CMD    a shell command that removes bob's right to open testvm's console
//   COLOUR_TESTVM     testvm's screen colour (default #1565c0)
//   ARTIFACTS_DIR     screenshots (default web/e2e/artifacts)

import assert from 'node:assert/strict';
import { execSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { launch, screenshot, waitColour, waitReason, waitState } from './lib.mjs';

function required(name) {
  const value = process.env[name];
  assert.ok(value && value.trim(), `environment variable ${name} is required (see the top of e2e/page.test.mjs)`);
  return value.trim();
}

const colourTestvm = (process.env.COLOUR_TESTVM || '#1565c0').toLowerCase();
const POLICY = 'virt-gateway-gatetoken-delegation';

/** Signs in the pass-through way: the login page (fragment form) posts the credential. */
async function signInWithToken(context, base, token) {
  const page = await context.newPage();
  await page.goto(`${base}/login.html#token=${encodeURIComponent(token)}&then=${encodeURIComponent('/vms.html')}`);
  // The login page signs in only on the person's click (issue 14).
  await page.getByRole('button', { name: 'Open console' }).click();
  await page.waitForURL(`${base}/vms.html`);
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 30000 });
  return page;
}

/**
 * Signs in through the identity provider's own login form: the page says "not signed in" and
 * links to the gateway's /auth/login, which sends the browser to Dex; its password form comes
 * back through the gateway's /auth/callback to the page.
 */
async function signInWithDex(page, base) {
  await page.goto(`${base}/vms.html`);
  await page.waitForSelector('body[data-refusal="signed-out"]');
  await page.getByRole('link', { name: 'Sign in' }).click();
  const dex = new URL(required('DEX_URL'));
  await page.waitForURL((url) => url.host === dex.host);
  if (!(await page.locator('input[name="login"]').count())) {
    // Dex lists its connectors first: the password one is "Log in with Email".
    await page.getByText('Log in with Email').click();
  }
  await page.locator('input[name="login"]').fill(required('ALICE_EMAIL'));
  await page.locator('input[name="password"]').fill(required('ALICE_PASSWORD'));
  await page.locator('button[type="submit"]').click();
  await page.waitForURL(`${base}/vms.html`, { timeout: 30000 });
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 30000 });
}

/** The JWT payload of a token (no verification: to read what was granted). */
function claims(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

/** May the page's person open `vm`'s console now? Asked from the page, with its cookie. */
async function mayOpen(page, vm) {
  return page.evaluate(async (name) => {
    const response = await fetch('/k8s/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SelfSubjectAccessReview',
        spec: { resourceAttributes: { group: 'subresources.kubevirt.io', resource: 'virtualmachineinstances', subresource: 'vnc', verb: 'get', namespace: 'default', name } },
      }),
    });
    return (await response.json()).status.allowed === true;
  }, vm);
}

describe('the "Your VMs" page with the person\'s own identity', () => {
  let base;
  let linkBase;
  let alice;
  let page;
  let link;

  before(async () => {
    base = required('PAGE_URL').replace(/\/+$/, '');
    linkBase = required('LINK_GATEWAY_URL').replace(/\/+$/, '');
    alice = await launch(base, undefined, { alsoAllowed: [required('DEX_URL')], trustTestCa: true });
    await alice.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  });

  after(async () => {
    if (alice) await alice.close();
  });

  test('alice signs in through Dex\'s login form and sees testvm, not testvm2 whose console she may not open', async () => {
    page = await alice.context.newPage();
    await signInWithDex(page, base);
    assert.equal(await page.locator('#notice').isVisible(), false);
    // The Kubernetes user name (the API server's oidc: prefix), as RBAC sees her.
    assert.equal(await page.locator('#whoami').innerText(), `Signed in as oidc:${required('ALICE_EMAIL')}`);
    assert.equal(await page.locator('#vms li[data-vm="default/testvm"]').count(), 1);
    assert.equal(await page.locator('#vms li[data-vm="default/testvm2"]').count(), 0);
    assert.equal(await page.locator('#vms li').count(), 1);
    assert.match(await page.locator('#vms-status').innerText(), /1 VM in namespace default\. 1 other you may see but not open/);
    // She may not list VMIs everywhere: the page fell back to the configured namespace.
    assert.equal(await page.locator('#namespace-form').isVisible(), true);
    assert.match(await page.locator('#links-status').innerText(), /no active links/);
    await screenshot(page, 'page-vms-alice.png');
  });

  test('"Open console" opens testvm with her identity (the canvas shows its screen)', async () => {
    await page.getByRole('link', { name: 'Open the console of testvm' }).click();
    await waitState(page, 'connected');
    await waitColour(page, colourTestvm);
    assert.equal(await page.locator('#vm-name').innerText(), 'testvm');
    await screenshot(page, 'page-console-alice.png');
    await page.goBack();
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 30000 });
  });

  test('keyboard only, she shares a 10-minute link with a note and copies it', async () => {
    await page.getByRole('button', { name: 'Share the console of testvm' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('#share:not([hidden])');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'duration-10m', 'focus moves to the form');
    assert.equal(await page.locator('#duration-10m').isChecked(), true);
    assert.match(await page.locator('#view-only-help').innerText(), /view-only links need the shared-console feature/);
    await page.getByLabel('Note (optional)').focus();
    await page.keyboard.type('for Dana');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#share-result:not([hidden])', { timeout: 30000 });
    link = await page.locator('#share-link').inputValue();
    assert.equal(await page.evaluate(() => document.activeElement.id), 'share-link');
    const url = new URL(link);
    assert.equal(`${url.origin}${url.pathname}`, `${linkBase}/login.html`);
    assert.equal(url.search, '');
    const fragment = new URLSearchParams(url.hash.slice(1));
    assert.equal(
      fragment.get('then'),
      '/console.html?path=k8s/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc',
    );
    const granted = claims(fragment.get('token'));
    assert.equal(granted.exp - granted.nbf, 600, JSON.stringify(granted));
    await page.locator('#copy-link').press('Enter');
    await page.waitForFunction(() => /Copied/.test(document.getElementById('share-status').textContent));
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), link);
    const item = page.locator('#links li[data-vm="testvm"]');
    await item.waitFor();
    assert.match(await item.innerText(), /for Dana/);
    assert.match(await item.locator('.time-left').innerText(), /^Ends in (10:00|9:[0-5]\d)$/);
    await screenshot(page, 'page-shared.png');
  });

  let guest;
  let console_;

  test('the link works in a second browser context with no sign-in', async () => {
    guest = await launch(linkBase);
    console_ = await guest.context.newPage();
    await console_.goto(link);
    assert.match(await console_.locator('#link-what').innerText(), /the console of VM testvm in namespace default/);
    await console_.getByRole('button', { name: 'Open console' }).click();
    await waitState(console_, 'connected');
    await waitColour(console_, colourTestvm);
    assert.equal(new URL(console_.url()).hash, '', 'the token left the address bar');
  });

  test('Revoke ends the shared console there and removes the link from her list', async () => {
    await page.getByRole('button', { name: 'Revoke the link to testvm (for Dana)' }).click();
    const text = await waitReason(console_, 'revoked', 15000);
    assert.match(text, /revoked/);
    await page.waitForFunction(() => document.querySelectorAll('#links li').length === 0);
    assert.match(await page.locator('#links-status').innerText(), /revoked\. You have no active links/);
    await screenshot(console_, 'page-shared-revoked.png');
    await guest.close();
    assert.deepEqual(guest.external, []);
    assert.deepEqual(guest.violations, []);
  });

  test('a share she crafts for testvm2 herself is refused by the API server with the reason', async () => {
    const answer = await page.evaluate(async () => {
      const response = await fetch('/k8s/apis/ocgate.yaacov.com/v1beta1/namespaces/kube-gateway/gatetokens', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
          apiVersion: 'ocgate.yaacov.com/v1beta1',
          kind: 'GateToken',
          metadata: { generateName: 'crafted-' },
          spec: { namespace: 'default', resourceNames: ['testvm2'], resources: ['virtualmachineinstances/vnc'], apiGroups: ['subresources.kubevirt.io'] },
        }),
      });
      return { status: response.status, body: await response.json() };
    });
    assert.equal(answer.status, 403, JSON.stringify(answer));
    assert.match(answer.body.message, new RegExp(POLICY));
    assert.match(answer.body.message, /name "testvm2"/);
  });

  test('she cannot record someone else as a link\'s creator (the creator policy)', async () => {
    const forge = (annotations) =>
      page.evaluate(async (given) => {
        const response = await fetch('/k8s/apis/ocgate.yaacov.com/v1beta1/namespaces/kube-gateway/gatetokens?dryRun=All', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({
            apiVersion: 'ocgate.yaacov.com/v1beta1',
            kind: 'GateToken',
            metadata: { generateName: 'forged-', annotations: given, labels: { 'ocgate.yaacov.com/shared-vm': 'testvm' } },
            spec: { namespace: 'default', resourceNames: ['testvm'], resources: ['virtualmachineinstances/vnc'], apiGroups: ['subresources.kubevirt.io'] },
          }),
        });
        return { status: response.status, body: await response.json() };
      }, annotations);
    const bobName = 'system:serviceaccount:kube-gateway:bob';
    const forged = await forge({ 'ocgate.yaacov.com/created-by': bobName });
    assert.equal(forged.status, 403, JSON.stringify(forged));
    assert.match(forged.body.message, /virt-gateway-gatetoken-creator/);
    assert.match(forged.body.message, new RegExp(`must be your own user name, "oidc:${required('ALICE_EMAIL').replace('.', '\\.')}"`));
    // Her own name is accepted (what the page writes), as is no name at all.
    assert.equal((await forge({ 'ocgate.yaacov.com/created-by': `oidc:${required('ALICE_EMAIL')}` })).status, 201);
    assert.equal((await forge({})).status, 201);
  });

  test('without a session the page says to sign in, and links to the gateway\'s sign-in', async () => {
    const other = await launch(base);
    try {
      const anonymous = await other.context.newPage();
      await anonymous.goto(`${base}/vms.html`);
      await anonymous.waitForSelector('body[data-refusal="signed-out"]');
      assert.match(await anonymous.locator('#notice').innerText(), /not signed in.*Sign in/s);
      const signIn = anonymous.getByRole('link', { name: 'Sign in' });
      assert.equal(await signIn.getAttribute('href'), '/auth/login?then=%2Fvms.html');
      assert.equal(await anonymous.locator('#vms li').count(), 0);
    } finally {
      await other.close();
    }
  });

  test('at phone width nothing scrolls sideways (bob, signed in pass-through)', async () => {
    const phone = await launch(base, { width: 375, height: 740 });
    try {
      const small = await signInWithToken(phone.context, base, required('TOKEN_BOB'));
      await small.getByRole('button', { name: 'Share the console of testvm' }).click();
      const scroll = await small.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scroll <= 375, `page is ${scroll}px wide`);
      await screenshot(small, 'page-phone.png');
    } finally {
      await phone.close();
    }
  });

  test('bob, whose console rights were taken away after the page loaded, is refused at share time with the reason', async () => {
    const bobBrowser = await launch(base);
    try {
      const bob = await signInWithToken(bobBrowser.context, base, required('TOKEN_BOB'));
      assert.match(await bob.locator('#whoami').innerText(), /system:serviceaccount:kube-gateway:bob/);
      await bob.getByRole('button', { name: 'Share the console of testvm' }).click();
      execSync(required('REVOKE_BOB_CMD'), { stdio: 'inherit' });
      const deadline = Date.now() + 30000;
      while (await mayOpen(bob, 'testvm')) {
        assert.ok(Date.now() < deadline, 'RBAC never took bob\'s rights away');
        await bob.waitForTimeout(200);
      }
      await bob.getByRole('button', { name: 'Create link' }).click();
      await bob.waitForSelector('body[data-share-refusal="forbidden"]', { timeout: 30000 });
      const refusal = await bob.locator('#share-error').innerText();
      assert.match(refusal, /You may not share the console of testvm\./);
      assert.match(refusal, new RegExp(POLICY));
      assert.match(refusal, /grants "get" on "virtualmachineinstances\/vnc" \(API group "subresources.kubevirt.io", name "testvm"\) in namespace "default", which you may not do yourself/);
      assert.equal(await bob.locator('#share-result').isVisible(), false);
      await screenshot(bob, 'page-share-refused.png');
      await bob.reload();
      await bob.waitForSelector('body[data-loaded="true"]', { timeout: 30000 });
      assert.equal(await bob.locator('#vms li').count(), 0);
      assert.match(await bob.locator('#vms-status').innerText(), /No VM you may open/);
      assert.match(await bob.locator('#links-status').innerText(), /no active links/);
      assert.deepEqual(bobBrowser.external, []);
    } finally {
      await bobBrowser.close();
    }
  });

  test('no page requested anything from another host or broke the Content-Security-Policy', () => {
    assert.deepEqual(alice.external, []);
    assert.deepEqual(alice.violations, []);
  });
});
