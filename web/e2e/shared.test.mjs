// Issue 16's shared console in real Chromium against the real gateway (shared consoles on), the
// real API server and the KubeVirt stand-in with a real Xvnc. crates/demo/tests/shared_console_e2e.rs
// starts all of that, mints the tokens, keeps a viewer that never reads open the whole time, and
// serves a small control endpoint (the keys testvm received, repainting testvm's screen,
// revoking a GateToken); this file drives one browser with a context (a cookie jar) per viewer.
//
// Environment (all required):
//   GATEWAY_URL          the gateway, http://127.0.0.1:PORT
//   METRICS_URL          the gateway's /metrics
//   CONTROL_URL          the test's control endpoint
//   TOKEN_CONTROLLER_A   a control token for testvm (the seed's)
//   TOKEN_CONTROLLER_B   another control token for testvm
//   TOKEN_OBSERVER       a view-only token for testvm (consoleRole: observe); its GateToken is
//                        the one CONTROL_URL/revoke revokes
//   TOKEN_LATE           a view-only token for testvm, for the viewer joining late
//
// Nothing here measures time: every wait is for a behaviour (a status, a key, a colour), with a
// generous bound only so that a broken gateway fails instead of hanging.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, SAMPLE_POINTS, loginLink, openLoginLink, samplePixels, waitReason, waitState } from './lib.mjs';

function required(name) {
  const value = process.env[name];
  assert.ok(value && value.trim(), `environment variable ${name} is required (see the top of e2e/shared.test.mjs)`);
  return value.trim();
}

const WAIT = 30000;
const KEY = { a: 0x61, b: 0x62, c: 0x63, o: 0x6f, p: 0x70, x: 0x78, y: 0x79, z: 0x7a };
// Screens the test paints, none of them a stand-in VM's own colour.
const GREEN = '#2e7d32';
const PURPLE = '#6a1b9a';
const ORANGE = '#ef6c00';

const control = (path, method = 'GET') => fetch(`${required('CONTROL_URL')}${path}`, { method }).then(async (r) => {
  const text = await r.text();
  assert.equal(r.status, 200, `${method} ${path}: ${text}`);
  return JSON.parse(text);
});
/** The keysyms of the key presses testvm received, oldest first. */
const keysReceived = () => control('/keys');
const repaint = (colour) => control(`/repaint?colour=${encodeURIComponent(colour)}`, 'POST');

/** Observer input the gateway dropped, by kind (kube_gateway_console_input_dropped_total). */
async function dropped(kind) {
  const text = await (await fetch(required('METRICS_URL'))).text();
  const line = text.split('\n').find((l) => l.startsWith(`kube_gateway_console_input_dropped_total{kind="${kind}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** Polls `probe` until it returns a truthy value. */
async function until(what, probe, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: never happened (last ${JSON.stringify(last)})`);
}

/** A hash of every framebuffer pixel on the page's canvas, or null before it has any. */
function screenHash(page) {
  return page.evaluate(() => {
    const canvas = document.querySelector('#screen canvas');
    if (!canvas || canvas.width === 0) return null;
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let h = 0x811c9dc5;
    for (let i = 0; i < data.length; i += 1) h = Math.imul(h ^ data[i], 0x01000193) >>> 0;
    return `${canvas.width}x${canvas.height}:${h.toString(16)}`;
  });
}

/** Waits until every page shows `colour` at the sample points and all show the same pixels. */
async function sameScreen(pages, colour) {
  return until(`the same ${colour} screen on ${pages.length} pages`, async () => {
    for (const page of pages) {
      const seen = await samplePixels(page, SAMPLE_POINTS);
      if (!seen || !seen.every((c) => c === colour)) return false;
    }
    const hashes = await Promise.all(pages.map(screenHash));
    return hashes.every((h) => h && h === hashes[0]) && hashes[0];
  });
}

/** The shared console status the page shows: the gateway's state text and viewer count. */
function consoleStatus(page) {
  return page.evaluate(() => {
    const box = document.getElementById('console-status');
    return {
      hidden: box.hidden,
      kind: box.dataset.kind || null,
      viewers: Number(box.dataset.viewers || 0),
      text: document.getElementById('console-status-text').textContent,
      detail: document.getElementById('console-status-detail').textContent,
      takeControl: !document.getElementById('take-control').hidden,
      desktopName: document.getElementById('screen').dataset.desktopName || null,
    };
  });
}

const STATE_TEXT = {
  control: 'You have control',
  observe: 'View only',
  'taken-over': 'Control taken by another viewer',
};

/** Waits until the page's status is `kind` with at least `viewers` viewers, as the contract says. */
async function waitStatus(page, kind, viewers) {
  const status = await until(`status ${kind} with ${viewers}+ viewers`, async () => {
    const s = await consoleStatus(page);
    return !s.hidden && s.kind === kind && s.viewers >= viewers && s;
  });
  const count = `${status.viewers} ${status.viewers === 1 ? 'viewer' : 'viewers'}`;
  assert.equal(status.text, `${STATE_TEXT[kind]} · ${count}`);
  const state = STATE_TEXT[kind].toLowerCase();
  assert.equal(status.desktopName, `testvm · ${state} · ${count}`, 'the gateway\'s DesktopName, word for word');
  assert.equal(status.takeControl, kind === 'taken-over', `"Take control" only when control was taken (${kind})`);
  return status;
}

/** Types `key` into the console (the canvas has the keyboard focus, as after a click). */
async function type(page, key) {
  await page.focus('#screen canvas');
  await page.keyboard.press(key);
}

/** Waits until testvm received `key` pressed; returns every key it received. */
const reaches = (key) => until(`key ${key} reaching testvm`, async () => {
  const keys = await keysReceived();
  return keys.includes(KEY[key]) && keys;
});

describe('a shared console: two controllers, an observer, a late joiner, a viewer that stops reading', () => {
  let browser;
  const contexts = [];
  const pages = {};

  /** Opens the console link of `token` in a browser context of its own (its own session). */
  async function open(name, token, viewport = { width: 1024, height: 768 }) {
    const context = await browser.newContext({ viewport });
    contexts.push(context);
    const page = await context.newPage();
    await openLoginLink(page, loginLink(required('GATEWAY_URL'), token, 'testvm'), WAIT);
    await waitState(page, 'connected', WAIT);
    pages[name] = page;
    return page;
  }

  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  });

  after(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    for (const [name, page] of Object.entries(pages)) {
      await page.screenshot({ path: join(ARTIFACTS, `shared-${name}.png`) }).catch(() => {});
    }
    for (const context of contexts) await context.close().catch(() => {});
    if (browser) await browser.close();
  });

  test('a controller and an observer see the same screen, each told its role', async () => {
    const a = await open('controller-a', required('TOKEN_CONTROLLER_A'));
    await waitStatus(a, 'control', 1);
    await repaint(GREEN);
    const o = await open('observer', required('TOKEN_OBSERVER'));
    const seen = await waitStatus(o, 'observe', 2);
    assert.match(seen.detail, /do not reach the VM/);
    await waitStatus(a, 'control', 2);
    await sameScreen([a, o], GREEN);
  });

  test('the observer\'s keys are dropped at the gateway, the controller\'s reach the VM', async () => {
    const { 'controller-a': a, observer: o } = pages;
    await type(a, 'a');
    await reaches('a');
    const before = await dropped('key');
    await type(o, 'o');
    // The gateway counted the observer's key as dropped: it has handled it, and did not pass it on.
    await until('the observer\'s key counted as dropped', async () => (await dropped('key')) > before);
    await type(a, 'b');
    const keys = await reaches('b');
    assert.ok(!keys.includes(KEY.o), `the observer's key reached testvm: ${keys}`);
  });

  test('a second controller takes control: the first is told, and its keys no longer reach the VM', async () => {
    const { 'controller-a': a, observer: o } = pages;
    const b = await open('controller-b', required('TOKEN_CONTROLLER_B'));
    await waitStatus(b, 'control', 3);
    const taken = await waitStatus(a, 'taken-over', 3);
    assert.match(taken.detail, /took control/);
    await waitStatus(o, 'observe', 3);
    await sameScreen([a, o, b], GREEN);
    await type(a, 'x');
    await type(b, 'y');
    await reaches('y');
    await type(b, 'z');
    const keys = await reaches('z');
    assert.ok(!keys.includes(KEY.x), `the taken-over controller's key reached testvm: ${keys}`);
    await pages['controller-a'].screenshot({ path: join(ARTIFACTS, 'shared-taken-over.png') }).catch(() => {});
  });

  test('"Take control" reconnects and gives control back', async () => {
    const { 'controller-a': a, 'controller-b': b } = pages;
    await a.locator('#take-control').click();
    await waitState(a, 'connected', WAIT);
    await waitStatus(a, 'control', 3);
    await waitStatus(b, 'taken-over', 3);
    await type(a, 'c');
    await reaches('c');
  });

  test('a viewer joining late sees the whole current screen', async () => {
    const { 'controller-a': a, 'controller-b': b, observer: o } = pages;
    await repaint(PURPLE);
    await sameScreen([a, b, o], PURPLE);
    // On a phone: the status is on screen, within 375 px, with nothing scrolling sideways.
    const late = await open('late', required('TOKEN_LATE'), { width: 375, height: 740 });
    await waitStatus(late, 'observe', 4);
    await sameScreen([a, b, o, late], PURPLE);
    const box = await late.locator('#console-status-text').boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 375 && box.y + box.height <= 740, `status at ${JSON.stringify(box)}`);
    assert.ok(await late.locator('#console-status-text').isVisible());
    assert.ok((await late.evaluate(() => document.documentElement.scrollWidth)) <= 375, 'the page scrolls sideways');
  });

  test('revoking the observer\'s GateToken closes its page alone; the others keep updating', async () => {
    const { 'controller-a': a, 'controller-b': b, observer: o, late } = pages;
    await control('/revoke', 'POST');
    await waitReason(o, 'revoked', WAIT);
    await repaint(ORANGE);
    await sameScreen([a, b, late], ORANGE);
    for (const page of [a, b, late]) {
      assert.equal(await page.locator('#state').getAttribute('data-state'), 'connected');
    }
    // The observer's page still shows the last screen it had, and no status any more.
    assert.equal((await consoleStatus(o)).hidden, true);
    const keys = await keysReceived();
    assert.ok(!keys.includes(KEY.o), `the observer's key reached testvm: ${keys}`);
  });
});
