// Pure helpers of the login page (no DOM), unit-tested in Node (test/unit.test.mjs): reading a
// console link, and what can be shown of it before the person decides to open it.
//
// The link contract (also in crates/gateway/README.md and crates/kubectl-gate/README.md):
//   <gateway>/login.html#token=<jwt>&then=<percent-encoded local path>
// The token is in the fragment, which the browser never sends to a server. Upstream's query
// forms `?token=…&then=…` and `?token=…&name=…&namespace=…` are read too.

import { parseConsolePath } from './explain.js';

/** The console page of a VM, as upstream's `name`/`namespace` links mean it. */
export function consoleFor(namespace, name) {
  const path = `k8s/apis/subresources.kubevirt.io/v1/namespaces/${encodeURIComponent(namespace)}/virtualmachineinstances/${encodeURIComponent(name)}/vnc`;
  return `/noVNC/vnc_lite.html?path=${path}`;
}

/** Whether `value` is a path on this server (one leading "/", no "//" or backslash). */
export function isLocalPath(value) {
  return typeof value === 'string' && value.startsWith('/') && !value.startsWith('//') && !value.includes('\\');
}

function paramsOf(text) {
  const p = new URLSearchParams(text);
  const token = (p.get('token') || '').trim();
  const then =
    p.get('then') || (p.get('name') && p.get('namespace') ? consoleFor(p.get('namespace'), p.get('name')) : '');
  return { token, then: then.trim() };
}

/**
 * The token and destination of a link, from the fragment (`location.hash`, preferred) or the
 * query (`location.search`, upstream links). `{ token, then, source }`, `source` being
 * "fragment", "query" or null (no token: the page is the manual form).
 */
export function readLink(search, hash) {
  const fromHash = paramsOf((hash || '').replace(/^#/, ''));
  if (fromHash.token) return { ...fromHash, source: 'fragment' };
  const fromQuery = paramsOf((search || '').replace(/^\?/, ''));
  if (fromQuery.token) return { ...fromQuery, source: 'query' };
  return { token: '', then: fromHash.then || fromQuery.then, source: null };
}

/**
 * The claims a token says it has, WITHOUT verifying anything (for display only: the gateway
 * decides). `{ exp, nbf, namespace }` (each null when absent or malformed), or null when the
 * token is not a JWT with a JSON payload.
 */
export function peekClaims(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1])) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const text = new TextDecoder().decode(Uint8Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0)));
    const claims = JSON.parse(text);
    if (!claims || typeof claims !== 'object') return null;
    const num = (v) => (Number.isFinite(v) && v >= 0 ? v : null);
    return {
      exp: num(claims.exp),
      nbf: num(claims.nbf),
      namespace: typeof claims.namespace === 'string' ? claims.namespace : null,
    };
  } catch {
    return null;
  }
}

/**
 * What a link opens, for a person: `{ what, path }` where `what` reads "the console of VM
 * testvm in namespace default" for a console page, else "the page <path>"; or `{ error }` for a
 * destination that is not on this server.
 */
export function describeThen(then) {
  if (!isLocalPath(then)) return { error: 'This link does not open a page on this server.' };
  let url;
  try {
    url = new URL(then, 'http://this.server');
  } catch {
    return { error: 'This link does not open a page on this server.' };
  }
  if (url.host !== 'this.server') return { error: 'This link does not open a page on this server.' };
  const path = url.searchParams.get('path');
  if (path) {
    const vnc = parseConsolePath(path);
    if (!vnc.error && vnc.name) {
      return { what: `the console of VM ${vnc.name} in namespace ${vnc.namespace}`, path: url.pathname };
    }
  }
  return { what: `the page ${url.pathname}`, path: url.pathname };
}
