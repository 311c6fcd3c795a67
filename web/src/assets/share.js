// Pure helpers of the "Your VMs" page (vms.html): the API requests it makes with the person's
// own identity, the GateToken a share creates, the share link, durations, and what a refusal
// means. No DOM here, so that web/test can check all of it without a browser.

/** Where kube-gateway forwards Kubernetes API requests (its -api-path). */
export const API = '/k8s';
/** The annotation that names who created a shared link (see web/README.md, "Who created it"). */
export const CREATOR_ANNOTATION = 'ocgate.yaacov.com/created-by'; // crates/api CREATED_BY_ANNOTATION
/** The annotation that carries the optional note of a shared link. */
export const NOTE_ANNOTATION = 'ocgate.yaacov.com/note';
/** The label that marks GateTokens made by this page, and the VM each is for. */
export const SHARED_VM_LABEL = 'ocgate.yaacov.com/shared-vm';
export const NOTE_MAX = 200;
export const MIN_DURATION_SEC = 60;
export const MAX_DURATION_SEC = 30 * 24 * 3600;

export const DURATION_PRESETS = [
  { id: '10m', label: '10 minutes', seconds: 600 },
  { id: '1h', label: '1 hour', seconds: 3600 },
  { id: '8h', label: '8 hours', seconds: 8 * 3600 },
  { id: '1d', label: '1 day', seconds: 24 * 3600 },
  { id: '7d', label: '7 days', seconds: 7 * 24 * 3600 },
];

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isDnsLabel(value) {
  return typeof value === 'string' && DNS_LABEL.test(value);
}

function isObjectName(value) {
  return typeof value === 'string' && value.length <= 253 && DNS_SUBDOMAIN.test(value);
}

/** The VMIs the person may list: all namespaces, or one. */
export function vmiListUrl(namespace) {
  if (namespace == null) return `${API}/apis/kubevirt.io/v1/virtualmachineinstances`;
  return `${API}/apis/kubevirt.io/v1/namespaces/${encodeURIComponent(namespace)}/virtualmachineinstances`;
}

export const SSAR_URL = `${API}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews`;
export const SELF_REVIEW_URL = `${API}/apis/authentication.k8s.io/v1/selfsubjectreviews`;

/** "May I open this VM's console?": what the API server decides for the VNC WebSocket. */
export function vncAccessReview(namespace, name) {
  return {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SelfSubjectAccessReview',
    spec: {
      resourceAttributes: {
        group: 'subresources.kubevirt.io',
        resource: 'virtualmachineinstances',
        subresource: 'vnc',
        verb: 'get',
        namespace,
        name,
      },
    },
  };
}

export const SELF_REVIEW = { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' };

/** The gateway's "who is signed in" endpoint (issue 17's sign-in). */
export const ME_URL = '/auth/me';
const AFTER_SIGN_IN = '/vms.html';

/**
 * Reads the answer to `GET /auth/me`: `{ signedIn, username }` for a signed-in person;
 * `{ signedIn: false, signInAvailable: true, signIn }` (the sign-in URL, back to this page
 * afterwards) when the gateway has sign-in but no session; `{ signedIn: false,
 * signInAvailable: false }` when it has no sign-in (or no such endpoint), where the page asks
 * the API server instead. Only a local sign-in path is followed.
 */
export function readMe(answer) {
  const none = { signedIn: false, signInAvailable: false };
  const body = answer && answer.ok && answer.body && typeof answer.body === 'object' ? answer.body : null;
  if (!body) return none;
  const login = typeof body.login === 'string' && /^\/[^/\\]/.test(body.login) ? body.login : '/auth/login';
  const signIn = `${login}${login.includes('?') ? '&' : '?'}then=${encodeURIComponent(AFTER_SIGN_IN)}`;
  if (body.signedIn === true && typeof body.username === 'string' && body.username) {
    return { signedIn: true, username: body.username, signIn };
  }
  if (body.signInAvailable === true) return { signedIn: false, signInAvailable: true, signIn };
  return none;
}

/** The VMs of a VMI list, sorted by namespace and name. */
export function vmsOf(list) {
  const items = (list && Array.isArray(list.items) ? list.items : [])
    .map((item) => ({
      namespace: item?.metadata?.namespace,
      name: item?.metadata?.name,
      phase: typeof item?.status?.phase === 'string' ? item.status.phase : '',
    }))
    .filter((vm) => isDnsLabel(vm.namespace) && isObjectName(vm.name));
  return items.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
}

/** The VNC WebSocket path of a VM through the gateway (no leading slash, as console links write it). */
export function vncPath(namespace, name) {
  return `k8s/apis/subresources.kubevirt.io/v1/namespaces/${namespace}/virtualmachineinstances/${name}/vnc`;
}

/** The console page for a VM (a local path). */
export function consolePage(namespace, name) {
  return `/console.html?path=${vncPath(namespace, name)}`;
}

/**
 * The link a share hands out: `<gateway>/login.html#token=<jwt>&then=<console page>`. The token
 * travels in the fragment, which browsers never send to a server or in a Referer.
 */
export function shareLink(gatewayUrl, token, namespace, name) {
  const base = String(gatewayUrl).replace(/\/+$/, '');
  return `${base}/login.html#token=${encodeURIComponent(token)}&then=${encodeURIComponent(consolePage(namespace, name))}`;
}

/**
 * Reads a custom duration: "45m", "2h", "1h30m", "3d", "90s", or a bare number of minutes.
 * Returns `{ seconds }` or `{ error }`.
 */
export function parseDuration(text) {
  const value = String(text ?? '').trim().toLowerCase().replace(/\s+/g, '');
  if (!value) return { error: 'Enter a duration, for example 45m, 2h or 3d.' };
  let seconds = 0;
  if (/^\d+$/.test(value)) {
    seconds = Number(value) * 60;
  } else {
    const parts = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(value);
    if (!parts || value === '') return { error: `"${text}" is not a duration: write it like 45m, 2h, 1h30m or 3d.` };
    const [d, h, m, s] = parts.slice(1).map((p) => Number(p || 0));
    seconds = d * 86400 + h * 3600 + m * 60 + s;
  }
  if (!Number.isSafeInteger(seconds) || seconds < MIN_DURATION_SEC) {
    return { error: 'A link must last at least 1 minute.' };
  }
  if (seconds > MAX_DURATION_SEC) return { error: 'A link may last at most 30 days.' };
  return { seconds };
}

/** "2 d 3 h", "1 h 05 min", "4:59" (under an hour), "expired". */
export function formatTimeLeft(seconds) {
  const s = Math.floor(seconds);
  if (!(s > 0)) return 'expired';
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

/** The label value for a VM name (labels are at most 63 characters). */
function labelValue(name) {
  return name.length <= 63 ? name : name.slice(0, 63).replace(/[^a-z0-9]+$/, '');
}

/**
 * The GateToken a share creates, in `tokenNamespace` (the GateServer's): `get` on exactly this
 * VM's `virtualmachineinstances/vnc` for `durationSec`, which is what opening its console takes
 * and nothing more. The delegation policy checks at admission that the creator may do that.
 */
export function shareGateToken({ tokenNamespace, server, vm, durationSec, note, creator }) {
  const annotations = {};
  if (creator) annotations[CREATOR_ANNOTATION] = creator;
  const trimmed = String(note ?? '').trim();
  if (trimmed) annotations[NOTE_ANNOTATION] = trimmed.slice(0, NOTE_MAX);
  const prefix = `share-${vm.name}`.slice(0, 40).replace(/[-.]+$/, '');
  const spec = {
    namespace: vm.namespace,
    verbs: ['get'],
    apiGroups: ['subresources.kubevirt.io'],
    resources: ['virtualmachineinstances/vnc'],
    resourceNames: [vm.name],
    durationSec,
  };
  if (server) spec.server = server;
  return {
    apiVersion: 'ocgate.yaacov.com/v1beta1',
    kind: 'GateToken',
    metadata: {
      generateName: `${prefix}-`,
      namespace: tokenNamespace,
      labels: { [SHARED_VM_LABEL]: labelValue(vm.name) },
      annotations,
    },
    spec,
  };
}

export function gateTokensUrl(tokenNamespace, name) {
  const base = `${API}/apis/ocgate.yaacov.com/v1beta1/namespaces/${encodeURIComponent(tokenNamespace)}/gatetokens`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

/** Where a created GateToken stands: waiting for the operator, ready with its JWT, or failed. */
export function tokenState(gateToken) {
  const status = gateToken?.status || {};
  const phase = status.phase || '';
  if ((phase === 'Ready' || phase === 'Pending') && typeof status.token === 'string' && status.token) {
    return { state: 'ready', token: status.token, exp: status.data?.exp ?? null };
  }
  if (phase === 'Error' || phase === 'Revoked' || phase === 'Completed') {
    const conditions = Array.isArray(status.conditions) ? status.conditions : [];
    const why = conditions.find((c) => c && c.status === 'False' && c.message) || conditions.find((c) => c && c.message);
    return { state: 'failed', phase, message: why ? why.message : `The link is ${phase}.` };
  }
  return { state: 'waiting' };
}

/**
 * The person's active links, soonest to end first: GateTokens this page made whose creator is
 * `username`, not revoked, and not expired at `now` (Unix seconds).
 */
export function activeLinks(list, username, now) {
  const items = list && Array.isArray(list.items) ? list.items : [];
  return items
    .filter((t) => t?.metadata?.annotations?.[CREATOR_ANNOTATION] === username && username)
    .filter((t) => t?.metadata?.labels?.[SHARED_VM_LABEL] !== undefined)
    .filter((t) => !t?.spec?.revoked)
    .map((t) => ({
      name: t.metadata.name,
      vm: (t.spec?.resourceNames || [])[0] || '',
      namespace: t.spec?.namespace || '',
      note: t.metadata.annotations?.[NOTE_ANNOTATION] || '',
      phase: t.status?.phase || '',
      exp: Number(t.status?.data?.exp) || null,
      token: typeof t.status?.token === 'string' ? t.status.token : '',
    }))
    .filter((l) => l.phase !== 'Completed' && l.phase !== 'Error' && l.phase !== 'Revoked')
    .filter((l) => l.exp === null || l.exp > now)
    .sort((a, b) => (a.exp ?? Infinity) - (b.exp ?? Infinity) || a.name.localeCompare(b.name));
}

/**
 * What a refused API request means for the person: `kind` (`signed-out`, `forbidden`,
 * `invalid`, `not-found`, `conflict`, `unavailable`, `error`), a sentence, and the Kubernetes
 * `Status` message verbatim (the reason the API server, an admission policy or the gateway gave).
 */
export function explainApiError(status, body) {
  const message = body && typeof body === 'object' && typeof body.message === 'string' ? body.message : '';
  const with_ = (kind, title) => ({ kind, status, title, message });
  if (status === 401) return with_('signed-out', 'You are not signed in, or your sign-in has ended. Sign in again.');
  if (status === 403) return with_('forbidden', 'Not allowed.');
  if (status === 404) return with_('not-found', 'Not found: it was deleted, or this cluster does not have it.');
  if (status === 409) return with_('conflict', 'Someone changed it at the same time. Try again.');
  if (status === 400 || status === 422) return with_('invalid', 'The request was refused as invalid.');
  if (status === 429 || status === 502 || status === 503 || status === 504) {
    return with_('unavailable', 'The cluster cannot be reached right now. Try again in a moment.');
  }
  return with_('error', `The request failed (HTTP ${status}).`);
}
