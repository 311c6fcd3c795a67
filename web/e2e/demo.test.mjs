// `make demo`'s printed links in real Chromium, as a person uses them (open the link, press
// "Open console" on the login page): the console link the demo prints, the link its printed `kubectl gate token testvm2 …` line printed, and its printed
// revocation line closing the first console. crates/demo/tests/make_demo.rs runs `make demo`,
// runs the printed commands, and hands their results over here; this file drives the browser.
//
// Environment (all required):
//   DEMO_LINK     the console link `make demo` printed (testvm, seed GateToken)
//   PLUGIN_LINK   the link the printed `kubectl gate token testvm2 …` line printed
//   REVOKE_CMD    the printed `kubectl gate revoke …` line, with the printed `export` before it
//   COLOUR_TESTVM, COLOUR_TESTVM2   optional, the stand-in's default colours otherwise

import assert from 'node:assert/strict';
import { execSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { launch, openLoginLink, screenshot, waitColour, waitReason, waitState } from './lib.mjs';

function required(name) {
  const value = process.env[name];
  assert.ok(value && value.trim(), `environment variable ${name} is required (see the top of e2e/demo.test.mjs)`);
  return value.trim();
}

const colourTestvm = (process.env.COLOUR_TESTVM || '#1565c0').toLowerCase();
const colourTestvm2 = (process.env.COLOUR_TESTVM2 || '#c62828').toLowerCase();

describe('the links make demo prints', () => {
  let browser;
  let first;

  before(async () => {
    required('REVOKE_CMD');
    browser = await launch(new URL(required('DEMO_LINK')).origin);
  });

  after(async () => {
    if (browser) await browser.close();
  });

  test('the demo\'s console link opens testvm\'s console', async () => {
    first = await browser.context.newPage();
    const what = await openLoginLink(first, required('DEMO_LINK'), 30000);
    assert.equal(what, 'the console of VM testvm in namespace default');
    await waitState(first, 'connected', 30000);
    assert.equal(await first.locator('#vm-name').innerText(), 'testvm');
    await waitColour(first, colourTestvm, 30000);
  });

  test('the link of the printed `kubectl gate token testvm2` line opens testvm2\'s console', async () => {
    const link = required('PLUGIN_LINK');
    assert.equal(
      new URL(link).origin,
      new URL(required('DEMO_LINK')).origin,
      'the plugin found the demo\'s gateway address on its own',
    );
    // A browser of its own: a person opening a link they were sent has no session yet.
    const other = await launch(new URL(link).origin);
    try {
      const page = await other.context.newPage();
      assert.equal(await openLoginLink(page, link, 30000), 'the console of VM testvm2 in namespace default');
      await waitState(page, 'connected', 30000);
      assert.equal(await page.locator('#vm-name').innerText(), 'testvm2');
      await waitColour(page, colourTestvm2, 30000);
      await screenshot(page, 'demo-plugin-link-testvm2.png');
      assert.deepEqual(other.external, []);
    } finally {
      await other.close();
    }
  });

  test('the printed revocation line closes the first console and the page says so', async () => {
    execSync(required('REVOKE_CMD'), { stdio: 'inherit', shell: '/bin/bash' });
    const text = await waitReason(first, 'revoked', 30000);
    assert.match(text, /revoked/);
  });

  test('no page made a request to another host', () => {
    assert.deepEqual(browser.external, []);
  });
});
