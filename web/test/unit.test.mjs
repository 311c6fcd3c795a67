// Unit tests of the console page's pure helpers (no browser).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  explainClose,
  explainRefusal,
  formatDuration,
  httpUrl,
  parseConsolePath,
  websocketUrl,
} from '../src/assets/explain.js';

const PATH = 'k8s/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc';

test('a console path names its VM, namespace and version', () => {
  assert.deepEqual(parseConsolePath(PATH), { path: PATH, version: 'v1', namespace: 'default', name: 'testvm' });
  assert.equal(parseConsolePath('/' + PATH.replace('/v1/', '/v1alpha3/')).version, 'v1alpha3');
  assert.equal(parseConsolePath('/' + PATH).path, PATH, 'a leading slash is tolerated');
  const other = parseConsolePath('k8s/api/v1/namespaces/default/pods');
  assert.equal(other.name, null);
  assert.equal(other.path, 'k8s/api/v1/namespaces/default/pods');
});

test('a console path must stay on this server', () => {
  for (const bad of ['', '   ', null, 'https://evil.example/x', '//evil.example/x', 'javascript:alert(1)', 'k8s/../x', 'a\\b']) {
    assert.ok(parseConsolePath(bad).error, `accepted ${JSON.stringify(bad)}`);
  }
});

test('the WebSocket goes to the page host, ws or wss as the page', () => {
  assert.equal(websocketUrl({ protocol: 'https:', host: 'gw.example:8443' }, PATH, false), `wss://gw.example:8443/${PATH}`);
  assert.equal(websocketUrl({ protocol: 'http:', host: '127.0.0.1:8080' }, PATH, true), `ws://127.0.0.1:8080/${PATH}?preserveSession=true`);
  assert.equal(httpUrl('wss://h/x?y=1'), 'https://h/x?y=1');
  assert.equal(httpUrl('ws://h/x'), 'http://h/x');
});

test('durations read as a person reads them', () => {
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(59.9), '0:59');
  assert.equal(formatDuration(61), '1:01');
  assert.equal(formatDuration(3723), '1:02:03');
  assert.equal(formatDuration(-5), '0:00');
});

test('close codes and reasons from the gateway are explained', () => {
  assert.equal(explainClose({ code: 4001, reason: 'token expired' }).kind, 'expired');
  assert.equal(explainClose({ code: 4003, reason: 'token revoked' }).kind, 'revoked');
  assert.equal(explainClose({ code: 1008, reason: 'token expired' }).kind, 'expired');
  assert.equal(explainClose({ code: 1008, reason: 'GateToken revoked' }).kind, 'revoked');
  assert.equal(explainClose({ code: 1000, reason: 'VNC session taken over by a new connection' }).kind, 'taken-over');
  assert.equal(explainClose({ code: 1006, reason: '' }).kind, 'lost');
  const closed = explainClose({ code: 1000, reason: 'VNC server closed the connection' });
  assert.equal(closed.kind, 'closed');
  assert.match(closed.detail, /VNC server closed the connection/);
  assert.match(explainClose({ code: 4999, reason: '' }).title, /4999/);
});

test('HTTP refusals (Kubernetes Status bodies) are explained', () => {
  const status = (code, message) => ({ kind: 'Status', code, message });
  assert.equal(explainRefusal(401, status(401, 'token expired')).kind, 'expired');
  assert.equal(explainRefusal(401, status(401, 'token revoked')).kind, 'revoked');
  assert.equal(explainRefusal(401, status(401, 'no token')).kind, 'unauthenticated');
  assert.equal(explainRefusal(401, status(401, 'no token'), { expired: true }).kind, 'expired');
  assert.equal(explainRefusal(401, status(401, 'token revoked'), { expired: true }).kind, 'revoked');
  const forbidden = explainRefusal(403, status(403, 'not allowed: path not granted'));
  assert.equal(forbidden.kind, 'not-allowed');
  assert.match(forbidden.detail, /not allowed: path not granted/);
  assert.equal(explainRefusal(404, status(404, 'virtualmachineinstance.kubevirt.io "x" not found')).kind, 'not-found');
  assert.equal(explainRefusal(503, status(503, 'in use')).kind, 'busy');
  assert.equal(explainRefusal(502, 'bad gateway').kind, 'unreachable');
  assert.equal(explainRefusal(400, status(400, 'expected a WebSocket upgrade')).kind, 'failed');
  assert.match(explainRefusal(500, '').title, /500/);
});

// ---- the login page's link helpers ----

import { consoleFor, describeThen, isLocalPath, peekClaims, readLink } from '../src/assets/link.js';

const THEN = `/noVNC/vnc_lite.html?path=${PATH}`;

test('a link is read from the fragment first, then from upstream query forms', () => {
  const enc = encodeURIComponent;
  assert.deepEqual(readLink('', `#token=a.b.c&then=${enc(THEN)}`), { token: 'a.b.c', then: THEN, source: 'fragment' });
  assert.deepEqual(readLink(`?token=q.q.q&then=${enc(THEN)}`, ''), { token: 'q.q.q', then: THEN, source: 'query' });
  assert.deepEqual(
    readLink('?token=q.q.q&then=/x', `#token=f.f.f&then=${enc(THEN)}`),
    { token: 'f.f.f', then: THEN, source: 'fragment' },
    'the fragment wins',
  );
  assert.deepEqual(readLink('?token=t&name=testvm&namespace=default', '').then, consoleFor('default', 'testvm'));
  assert.deepEqual(readLink('?then=/x', ''), { token: '', then: '/x', source: null });
  assert.deepEqual(readLink('', ''), { token: '', then: '', source: null });
  // `+` in a token is a space in form encoding: a token that needs it must be percent-encoded.
  assert.equal(readLink('', '#token=a%2Bb.c.d').token, 'a+b.c.d');
});

test('a token\'s claims are read for display without trusting them', () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const jwt = (claims) => `${b64({ alg: 'ES256' })}.${b64(claims)}.sig`;
  assert.deepEqual(peekClaims(jwt({ exp: 2000000000, nbf: 1, namespace: 'default' })), {
    exp: 2000000000,
    nbf: 1,
    namespace: 'default',
  });
  assert.deepEqual(peekClaims(jwt({ exp: 'soon', namespace: 7 })), { exp: null, nbf: null, namespace: null });
  for (const bad of ['', 'a.b', 'a.b.c.d', 'x.!!!.y', `x.${Buffer.from('not json').toString('base64url')}.y`, `x.${b64(42)}.y`, null]) {
    assert.equal(peekClaims(bad), null, JSON.stringify(bad));
  }
  assert.deepEqual(peekClaims(`x.${b64({ exp: 5, name: 'é' })}.y`).exp, 5, 'UTF-8 payloads decode');
});

test('what a link opens is described, and only paths on this server are opened', () => {
  assert.deepEqual(describeThen(THEN), { what: 'the console of VM testvm in namespace default', path: '/noVNC/vnc_lite.html' });
  assert.deepEqual(describeThen('/'), { what: 'the page /', path: '/' });
  for (const bad of ['https://evil.example/', '//evil.example/x', '/\\evil.example', 'javascript:alert(1)', '', 'x']) {
    assert.ok(describeThen(bad).error, bad);
    assert.equal(isLocalPath(bad), false, bad);
  }
});

test('a shared console status reads the gateway\'s desktop name, and nothing else', async () => {
  const { parseConsoleStatus, describeConsoleStatus } = await import('../src/assets/explain.js');
  assert.deepEqual(parseConsoleStatus('testvm · you have control · 1 viewer'), {
    vm: 'testvm', state: 'you have control', kind: 'control', viewers: 1,
  });
  assert.equal(parseConsoleStatus('testvm · shared control · 3 viewers').kind, 'shared');
  assert.equal(parseConsoleStatus('testvm · view only · 2 viewers').kind, 'observe');
  const taken = parseConsoleStatus('testvm · control taken by another viewer · 3 viewers');
  assert.equal(taken.kind, 'taken-over');
  assert.equal(taken.viewers, 3);
  assert.equal(parseConsoleStatus('a · b · view only · 4 viewers').vm, 'a · b', 'the VM name may hold the separator');
  // A VNC server's own desktop name, or anything malformed, is no status.
  for (const other of ['testvm', 'QEMU (testvm)', '', null, undefined, 42,
    'testvm · you have control', 'testvm · in charge · 1 viewer', 'testvm · view only · many viewers',
    'testvm · view only · 1 viewers', 'testvm · view only · 2 viewer', ' · view only · 1 viewer',
    'testvm · constructor · 1 viewer', 'testvm · view only · -1 viewers']) {
    assert.equal(parseConsoleStatus(other), null, JSON.stringify(other));
  }
});

test('the status bar offers "Take control" only when control was taken', async () => {
  const { parseConsoleStatus, describeConsoleStatus } = await import('../src/assets/explain.js');
  const show = (name) => describeConsoleStatus(parseConsoleStatus(name));
  assert.deepEqual(show('vm · you have control · 1 viewer'), { text: 'You have control · 1 viewer', detail: '', takeControl: false });
  assert.equal(show('vm · shared control · 2 viewers').text, 'Shared control · 2 viewers');
  const observer = show('vm · view only · 3 viewers');
  assert.equal(observer.text, 'View only · 3 viewers');
  assert.equal(observer.takeControl, false);
  assert.match(observer.detail, /do not reach the VM/);
  const taken = show('vm · control taken by another viewer · 2 viewers');
  assert.equal(taken.text, 'Control taken by another viewer · 2 viewers');
  assert.equal(taken.takeControl, true);
  assert.match(taken.detail, /took control/);
  assert.equal(describeConsoleStatus(null), null);
});
