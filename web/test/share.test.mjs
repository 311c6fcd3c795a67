// Unit tests of the "Your VMs" page's pure helpers (no browser).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CREATOR_ANNOTATION,
  NOTE_ANNOTATION,
  SHARED_VM_LABEL,
  activeLinks,
  consolePage,
  explainApiError,
  formatTimeLeft,
  parseDuration,
  readMe,
  shareGateToken,
  shareLink,
  tokenState,
  vmiListUrl,
  vmsOf,
  vncAccessReview,
} from '../src/assets/share.js';

const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_';

test('the share link carries the token and the console in the fragment, exactly as issue 14 writes it', () => {
  const link = shareLink('https://gw.example/', JWT, 'default', 'testvm');
  const then = '/console.html?path=k8s/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc';
  assert.equal(link, `https://gw.example/login.html#token=${JWT}&then=${encodeURIComponent(then)}`);
  const url = new URL(link);
  assert.equal(url.search, '', 'nothing in the query string (which servers log)');
  const fragment = new URLSearchParams(url.hash.slice(1));
  assert.equal(fragment.get('token'), JWT);
  assert.equal(fragment.get('then'), then);
  assert.equal(consolePage('default', 'testvm'), then);
});

test('a token with characters that mean something in a fragment survives the round trip', () => {
  const odd = 'a&b=c#d+e/f';
  const fragment = new URLSearchParams(new URL(shareLink('http://127.0.0.1:1', odd, 'ns', 'vm')).hash.slice(1));
  assert.equal(fragment.get('token'), odd);
});

test('durations: presets are exact, custom values are read with units, bare numbers are minutes', () => {
  assert.deepEqual(parseDuration('10'), { seconds: 600 });
  assert.deepEqual(parseDuration('45m'), { seconds: 2700 });
  assert.deepEqual(parseDuration(' 2H '), { seconds: 7200 });
  assert.deepEqual(parseDuration('1h30m'), { seconds: 5400 });
  assert.deepEqual(parseDuration('3d'), { seconds: 3 * 86400 });
  assert.deepEqual(parseDuration('90s'), { seconds: 90 });
  for (const bad of ['', '  ', 'soon', '-5', '1.5h', '1w', 'h', '2m1h', '10 minutes']) {
    assert.ok(parseDuration(bad).error, `accepted ${JSON.stringify(bad)}`);
  }
  assert.match(parseDuration('30s').error, /at least 1 minute/);
  assert.match(parseDuration('31d').error, /at most 30 days/);
  assert.ok(parseDuration('30d').seconds);
  assert.ok(parseDuration('99999999999999999999').error, 'no overflow');
});

test('time left reads well from minutes to days', () => {
  assert.equal(formatTimeLeft(599.7), '9:59');
  assert.equal(formatTimeLeft(3600 + 5 * 60), '1 h 05 min');
  assert.equal(formatTimeLeft(2 * 86400 + 3 * 3600 + 59), '2 d 3 h');
  assert.equal(formatTimeLeft(0), 'expired');
  assert.equal(formatTimeLeft(-3), 'expired');
  assert.equal(formatTimeLeft(NaN), 'expired');
});

test('the GateToken of a share grants get on exactly one VM console, nothing more', () => {
  const body = shareGateToken({
    tokenNamespace: 'kube-gateway',
    server: 'gateserver-sample',
    vm: { namespace: 'default', name: 'testvm' },
    durationSec: 600,
    note: '  for Dana  ',
    creator: 'system:serviceaccount:kube-gateway:alice',
  });
  assert.equal(body.apiVersion, 'ocgate.yaacov.com/v1beta1');
  assert.equal(body.kind, 'GateToken');
  assert.equal(body.metadata.namespace, 'kube-gateway');
  assert.equal(body.metadata.generateName, 'share-testvm-');
  assert.equal(body.metadata.name, undefined);
  assert.equal(body.metadata.labels[SHARED_VM_LABEL], 'testvm');
  assert.equal(body.metadata.annotations[CREATOR_ANNOTATION], 'system:serviceaccount:kube-gateway:alice');
  assert.equal(body.metadata.annotations[NOTE_ANNOTATION], 'for Dana');
  assert.deepEqual(body.spec, {
    namespace: 'default',
    verbs: ['get'],
    apiGroups: ['subresources.kubevirt.io'],
    resources: ['virtualmachineinstances/vnc'],
    resourceNames: ['testvm'],
    durationSec: 600,
    server: 'gateserver-sample',
  });
  const bare = shareGateToken({ tokenNamespace: 'ns', vm: { namespace: 'a', name: 'b' }, durationSec: 60, note: ' ' });
  assert.deepEqual(bare.metadata.annotations, {});
  assert.equal(bare.spec.server, undefined);
  const long = shareGateToken({ tokenNamespace: 'ns', vm: { namespace: 'a', name: 'v'.repeat(100) }, durationSec: 60, note: 'x'.repeat(500) });
  assert.ok(long.metadata.generateName.length <= 42);
  assert.ok(long.metadata.labels[SHARED_VM_LABEL].length <= 63);
  assert.equal(long.metadata.annotations[NOTE_ANNOTATION].length, 200);
});

test('the access review asks exactly what the VNC WebSocket needs', () => {
  assert.deepEqual(vncAccessReview('default', 'testvm').spec.resourceAttributes, {
    group: 'subresources.kubevirt.io',
    resource: 'virtualmachineinstances',
    subresource: 'vnc',
    verb: 'get',
    namespace: 'default',
    name: 'testvm',
  });
  assert.equal(vmiListUrl(null), '/k8s/apis/kubevirt.io/v1/virtualmachineinstances');
  assert.equal(vmiListUrl('default'), '/k8s/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances');
});

test('a VMI list becomes sorted VMs; names that are not Kubernetes names are dropped', () => {
  const list = {
    items: [
      { metadata: { namespace: 'b', name: 'z' }, status: { phase: 'Running' } },
      { metadata: { namespace: 'a', name: 'y' } },
      { metadata: { namespace: 'a', name: '../evil' } },
      { metadata: { namespace: 'a/b', name: 'x' } },
      null,
    ],
  };
  assert.deepEqual(vmsOf(list), [
    { namespace: 'a', name: 'y', phase: '' },
    { namespace: 'b', name: 'z', phase: 'Running' },
  ]);
  assert.deepEqual(vmsOf(null), []);
  assert.deepEqual(vmsOf({ kind: 'Status' }), []);
});

test('a created GateToken is waited for until the operator signed it, or explained when it failed', () => {
  assert.deepEqual(tokenState({ status: { phase: '' } }), { state: 'waiting' });
  assert.deepEqual(tokenState({}), { state: 'waiting' });
  assert.deepEqual(tokenState({ status: { phase: 'Ready', token: '' } }), { state: 'waiting' });
  assert.deepEqual(tokenState({ status: { phase: 'Ready', token: JWT, data: { exp: 5 } } }), { state: 'ready', token: JWT, exp: 5 });
  const failed = tokenState({
    status: { phase: 'Error', conditions: [{ type: 'Ready', status: 'False', message: 'the signing key is missing' }] },
  });
  assert.deepEqual(failed, { state: 'failed', phase: 'Error', message: 'the signing key is missing' });
});

function token(name, { creator = 'alice', exp = 2000, phase = 'Ready', revoked = false, shared = 'testvm', note } = {}) {
  const annotations = { [CREATOR_ANNOTATION]: creator };
  if (note) annotations[NOTE_ANNOTATION] = note;
  const labels = shared === null ? {} : { [SHARED_VM_LABEL]: shared };
  return {
    metadata: { name, annotations, labels },
    spec: { namespace: 'default', resourceNames: [shared ?? 'x'], revoked },
    status: { phase, token: JWT, data: { exp } },
  };
}

test('active links are the person own, unexpired, unrevoked shares, soonest to end first', () => {
  const list = {
    items: [
      token('later', { exp: 3000, note: 'for Dana' }),
      token('sooner', { exp: 1500 }),
      token('bob', { creator: 'bob' }),
      token('expired', { exp: 999 }),
      token('completed', { phase: 'Completed' }),
      token('revoked', { revoked: true }),
      token('revoked-phase', { phase: 'Revoked' }),
      token('by-kubectl', { shared: null }),
    ],
  };
  const links = activeLinks(list, 'alice', 1000);
  assert.deepEqual(links.map((l) => l.name), ['sooner', 'later']);
  assert.deepEqual(links[1], { name: 'later', vm: 'testvm', namespace: 'default', note: 'for Dana', phase: 'Ready', exp: 3000, token: JWT });
  assert.deepEqual(activeLinks(list, '', 1000), [], 'no name, no links');
  assert.deepEqual(activeLinks({ kind: 'Status' }, 'alice', 1000), []);
});

test('refusals: 401 asks to sign in again, 403 keeps the Kubernetes Status message verbatim', () => {
  const signedOut = explainApiError(401, { kind: 'Status', message: 'Unauthorized' });
  assert.equal(signedOut.kind, 'signed-out');
  assert.match(signedOut.title, /Sign in again/);
  const message = 'ValidatingAdmissionPolicy \'virt-gateway-gatetoken-delegation\' denied request: this GateToken grants "get" on "virtualmachineinstances/vnc"';
  const forbidden = explainApiError(403, { kind: 'Status', message });
  assert.equal(forbidden.kind, 'forbidden');
  assert.equal(forbidden.message, message);
  assert.equal(explainApiError(403, null).message, '');
  assert.equal(explainApiError(403, 'text').message, '');
  assert.equal(explainApiError(404, {}).kind, 'not-found');
  assert.equal(explainApiError(422, {}).kind, 'invalid');
  assert.equal(explainApiError(503, {}).kind, 'unavailable');
  assert.equal(explainApiError(0, {}).kind, 'error');
  assert.equal(explainApiError(500, {}).kind, 'error');
});

test('/auth/me: a signed-in person, the way to sign in, or no sign-in at all', () => {
  const ok = (body) => ({ ok: true, status: 200, body });
  assert.deepEqual(readMe(ok({ signedIn: true, signInAvailable: true, username: 'oidc:alice@x', mode: 'oidc' })), {
    signedIn: true,
    username: 'oidc:alice@x',
    signIn: '/auth/login?then=%2Fvms.html',
  });
  assert.deepEqual(readMe(ok({ signedIn: false, signInAvailable: true, login: '/auth/login' })), {
    signedIn: false,
    signInAvailable: true,
    signIn: '/auth/login?then=%2Fvms.html',
  });
  // Only a local path is followed: a sign-in URL elsewhere would be a phishing hop.
  for (const login of ['https://evil.example/login', '//evil.example/x', '/\\evil.example', 'javascript:alert(1)']) {
    assert.equal(readMe(ok({ signedIn: false, signInAvailable: true, login })).signIn, '/auth/login?then=%2Fvms.html', login);
  }
  const none = { signedIn: false, signInAvailable: false };
  assert.deepEqual(readMe(ok({ signedIn: false, signInAvailable: false })), none);
  assert.deepEqual(readMe({ ok: false, status: 404, body: null }), none, 'a gateway without /auth/me');
  assert.deepEqual(readMe(ok({ signedIn: true })), none, 'signed in without a name is not trusted');
  assert.deepEqual(readMe(null), none);
});

test('the login page reads a share link back exactly (issue 14 is its consumer)', async () => {
  const { readLink, describeThen } = await import('../src/assets/link.js');
  const url = new URL(shareLink('https://gw.example', JWT, 'default', 'testvm'));
  const read = readLink(url.search, url.hash);
  assert.equal(read.source, 'fragment');
  assert.equal(read.token, JWT);
  assert.equal(read.then, consolePage('default', 'testvm'));
  assert.equal(describeThen(read.then).what, 'the console of VM testvm in namespace default');
});
