//! Kubernetes request attributes from a method, path and query, exactly as kube-apiserver's
//! RequestInfo resolver computes them (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`), with
//! API prefixes `api` (the legacy core group, `""`) and `apis`.
//!
//! The input path is the one the API server would see: the gateway's own prefix (e.g. `/k8s`)
//! already stripped, e.g.
//! `/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc`.
//!
//! # Canonical paths only
//!
//! Authorization is only as good as the agreement between what it checks and what the API server
//! serves, so paths that could be read two ways are refused with a [`RequestError`] instead of being
//! guessed at:
//! * the path must start with `/` and be at most [`MAX_PATH_LEN`] bytes;
//! * no `.` or `..` segment, no empty segment (`//`);
//! * a trailing `/` only on non-resource paths (e.g. `/logs/`), where RBAC compares the literal path;
//!   on resource paths the API server would ignore it, so it is refused (e.g. `/api/v1/pods/`); the
//!   root `/` is fine;
//! * only RFC 3986 path characters appear raw (letters, digits, `-._~!$&'()*+,;=:@`); anything else
//!   (space, `"`, `\`, `<`, `{`, non-ASCII, controls, ...) must be percent-encoded;
//! * percent-encodings must be valid (`%` and two hex digits) and are **decoded** for comparison,
//!   as the API server decodes them; but encodings of `/`, `.`, `%`, `\` and of control characters
//!   (`%2F`, `%2E`, `%25`, `%5C`, `%00`–`%1F`, `%7F`, either case) are refused, as is a segment that
//!   does not decode to UTF-8.
//!
//! The query string must be well formed too (`&`-separated `key=value` pairs, valid
//! percent-encodings, no `;`), because the verb (`watch`) and a name (`fieldSelector`) can come from
//! it.
//!
//! **Round trip.** For every accepted path, [`RequestInfo::to_path`] (which rebuilds the path from the
//! parsed prefix, group, version, `watch`/`proxy` prefix, namespace and parts) returns exactly
//! [`RequestInfo::path`], the decoded path; for a path without percent-encodings that is the input
//! itself. So nothing in the path escapes the parsed attributes.

use std::fmt::Write as _;

/// Longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 8 * 1024;
/// Longest query string accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 32 * 1024;
/// Longest HTTP method accepted, in bytes.
pub const MAX_METHOD_LEN: usize = 32;

/// Kubernetes request attributes, as kube-apiserver's RequestInfo.
///
/// Build one with [`parse`], or with [`RequestInfo::resource`] / [`RequestInfo::non_resource`] when
/// the attributes are already known (tests, tools).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// Whether this is a request for an API resource (or subresource) rather than a plain path.
    pub is_resource_request: bool,
    /// The path, percent-decoded (what RBAC matches `nonResourceURLs` against).
    pub path: String,
    /// The Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `proxy`, or `""` for an HTTP method with no verb; for non-resource
    /// requests, the lower-cased HTTP method.
    pub verb: String,
    /// `api` or `apis` for resource requests, empty otherwise.
    pub api_prefix: String,
    /// The API group; `""` for the core group (`/api`).
    pub api_group: String,
    /// The API version, e.g. `v1`.
    pub api_version: String,
    /// The namespace; empty for cluster-scoped requests (and for the list of all namespaces).
    pub namespace: String,
    /// The resource, e.g. `pods`.
    pub resource: String,
    /// The subresource, e.g. `status`, `vnc`; empty if none.
    pub subresource: String,
    /// The object name; empty for collections (unless a `fieldSelector=metadata.name=...` gave one).
    pub name: String,
    /// The path parts from the resource on: `[resource, name, subresource, ...]`.
    pub parts: Vec<String>,
    /// `watch`/`proxy` came from a path segment (`/api/v1/watch/...`) rather than the method.
    verb_in_path: bool,
    /// `namespaces/{namespace}` was consumed from the path before `parts`.
    namespace_in_path: bool,
}

/// Why a request could not be turned into attributes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The HTTP method is empty, too long, or not an HTTP token.
    #[error("HTTP method {method:?} is not a valid method token")]
    InvalidMethod {
        /// The method (truncated).
        method: String,
    },
    /// The path does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("path is {len} bytes long; the limit is {max}")]
    PathTooLong {
        /// The path's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The query is longer than [`MAX_QUERY_LEN`].
    #[error("query is {len} bytes long; the limit is {max}")]
    QueryTooLong {
        /// The query's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `.` or `..` segment.
    #[error(
        "path has a dot segment ({segment:?}) at position {index}; send the resolved path instead"
    )]
    DotSegment {
        /// Segment position, from 0 (after the leading '/').
        index: usize,
        /// `.` or `..`.
        segment: String,
    },
    /// An empty segment (`//`).
    #[error("path has an empty segment (\"//\") at position {index}")]
    EmptySegment {
        /// Segment position, from 0.
        index: usize,
    },
    /// A trailing `/` on a resource path.
    #[error("resource path ends with '/'; send it without the trailing slash")]
    TrailingSlash,
    /// A character that must be percent-encoded appears raw.
    #[error("path contains {ch:?}, which must be percent-encoded")]
    InvalidCharacter {
        /// The character.
        ch: char,
    },
    /// A `%` not followed by two hex digits.
    #[error("path has an invalid percent-encoding at byte {offset}")]
    InvalidPercentEncoding {
        /// Byte offset of the `%`.
        offset: usize,
    },
    /// A percent-encoding of `/`, `.`, `%`, `\` or a control character.
    #[error(
        "path contains {escape}, an encoded '/', '.', '%', '\\' or control character, which is refused"
    )]
    ForbiddenEscape {
        /// The escape as written, e.g. `%2F`.
        escape: String,
    },
    /// A segment whose percent-decoding is not UTF-8.
    #[error("path segment at position {index} does not decode to UTF-8")]
    InvalidUtf8 {
        /// Segment position, from 0.
        index: usize,
    },
    /// A malformed query string.
    #[error("invalid query string: {reason}")]
    InvalidQuery {
        /// What is wrong.
        reason: &'static str,
    },
    /// `/{prefix}/{version}/watch` or `/proxy` with nothing after it (kube-apiserver: "unable to
    /// determine kind and namespace from url").
    #[error("unable to determine kind and namespace from the path: nothing follows {verb:?}")]
    MissingResource {
        /// `watch` or `proxy`.
        verb: String,
    },
}

/// Verbs that can be given as a path segment before the resource (deprecated API forms).
const SPECIAL_VERBS: [&str; 2] = ["proxy", "watch"];
/// Subresources of a namespace object, which must not be read as a namespaced resource.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

impl RequestInfo {
    /// Attributes of a resource request, given directly (no path parsing). The path is rendered from
    /// them.
    pub fn resource(
        verb: &str,
        api_group: &str,
        api_version: &str,
        namespace: &str,
        resource: &str,
        name: &str,
        subresource: &str,
    ) -> Self {
        let mut parts = vec![resource.to_owned()];
        if !name.is_empty() || !subresource.is_empty() {
            parts.push(name.to_owned());
        }
        if !subresource.is_empty() {
            parts.push(subresource.to_owned());
        }
        let mut info = Self {
            is_resource_request: true,
            path: String::new(),
            verb: verb.to_owned(),
            api_prefix: if api_group.is_empty() { "api" } else { "apis" }.to_owned(),
            api_group: api_group.to_owned(),
            api_version: api_version.to_owned(),
            namespace: namespace.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name: name.to_owned(),
            parts,
            verb_in_path: false,
            namespace_in_path: !namespace.is_empty(),
        };
        info.path = info.to_path();
        info
    }

    /// Attributes of a non-resource request, given directly.
    pub fn non_resource(verb: &str, path: &str) -> Self {
        Self {
            is_resource_request: false,
            path: path.to_owned(),
            verb: verb.to_owned(),
            api_prefix: String::new(),
            api_group: String::new(),
            api_version: String::new(),
            namespace: String::new(),
            resource: String::new(),
            subresource: String::new(),
            name: String::new(),
            parts: Vec::new(),
            verb_in_path: false,
            namespace_in_path: false,
        }
    }

    /// The resource with its subresource, as RBAC matches it: `pods` or `pods/status`.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// Rebuilds the (decoded) path from the parsed attributes. For a request from [`parse`] this equals
    /// [`RequestInfo::path`]: every segment of the path is accounted for.
    pub fn to_path(&self) -> String {
        if !self.is_resource_request {
            return self.path.clone();
        }
        let mut out = String::with_capacity(self.path.len().max(32));
        let _ = write!(out, "/{}", self.api_prefix);
        if self.api_prefix != "api" {
            let _ = write!(out, "/{}", self.api_group);
        }
        let _ = write!(out, "/{}", self.api_version);
        if self.verb_in_path {
            let _ = write!(out, "/{}", self.verb);
        }
        if self.namespace_in_path {
            let _ = write!(out, "/namespaces/{}", self.namespace);
        }
        for part in &self.parts {
            let _ = write!(out, "/{part}");
        }
        out
    }
}

/// Parses a request as kube-apiserver would: `method` is the HTTP method (case-sensitive, as Go's
/// `req.Method`), `path` the path under the API prefix (raw, percent-encoded as received), `query`
/// the raw query string without `?`.
pub fn parse(method: &str, path: &str, query: Option<&str>) -> Result<RequestInfo, RequestError> {
    check_method(method)?;
    let query = query.unwrap_or("");
    if query.len() > MAX_QUERY_LEN {
        return Err(RequestError::QueryTooLong {
            len: query.len(),
            max: MAX_QUERY_LEN,
        });
    }
    let canonical = canonical_path(path)?;
    let query = parse_query(query)?;
    let segments = &canonical.segments;

    let non_resource = |canonical: CanonicalPath| {
        RequestInfo::non_resource(&method.to_ascii_lowercase(), &canonical.path)
    };

    // Resource requests have at least {prefix}/{version}/{resource}, plus the group under `apis`.
    let (Some(prefix), Some(after_prefix)) = (segments.first(), segments.get(1..)) else {
        return Ok(non_resource(canonical));
    };
    if segments.len() < 3 || (prefix != "api" && prefix != "apis") {
        return Ok(non_resource(canonical));
    }
    let (api_group, rest) = if prefix == "apis" {
        match after_prefix {
            [group, rest @ ..] if rest.len() >= 2 => (group.clone(), rest),
            _ => return Ok(non_resource(canonical)),
        }
    } else {
        (String::new(), after_prefix)
    };
    if canonical.trailing_slash {
        return Err(RequestError::TrailingSlash);
    }
    let [api_version, rest @ ..] = rest else {
        return Ok(non_resource(canonical));
    };

    let (verb, verb_in_path, mut rest) = match rest {
        [special, tail @ ..] if SPECIAL_VERBS.contains(&special.as_str()) => {
            if tail.is_empty() {
                return Err(RequestError::MissingResource {
                    verb: special.clone(),
                });
            }
            (special.clone(), true, tail)
        }
        _ => (verb_for_method(method).to_owned(), false, rest),
    };

    // /namespaces/{namespace}/{resource}/...: parts become relative to the resource, unless what
    // follows the namespace name is a namespace subresource (status, finalize).
    let mut namespace = String::new();
    let mut namespace_in_path = false;
    if let [first, ns, tail @ ..] = rest
        && first == "namespaces"
    {
        namespace = ns.clone();
        if let Some(next) = tail.first()
            && !NAMESPACE_SUBRESOURCES.contains(&next.as_str())
        {
            rest = tail;
            namespace_in_path = true;
        }
    }

    let parts = rest.to_vec();
    let resource = parts.first().cloned().unwrap_or_default();
    let name = parts.get(1).cloned().unwrap_or_default();
    let subresource = if verb == "proxy" {
        String::new()
    } else {
        parts.get(2).cloned().unwrap_or_default()
    };

    let mut info = RequestInfo {
        is_resource_request: true,
        path: canonical.path,
        verb,
        api_prefix: prefix.clone(),
        api_group,
        api_version: api_version.clone(),
        namespace,
        resource,
        subresource,
        name,
        parts,
        verb_in_path,
        namespace_in_path,
    };

    // A GET with no name is a list, or a watch with ?watch=<anything but 0/false>; for both, a
    // fieldSelector of metadata.name=<x> names the object.
    if info.name.is_empty() && info.verb == "get" {
        info.verb = if query.watch { "watch" } else { "list" }.to_owned();
        if let Some(name) = query
            .field_selector
            .as_deref()
            .and_then(field_selector_name)
        {
            info.name = name;
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_owned();
    }
    Ok(info)
}

/// The verb kube-apiserver maps an HTTP method to (exact, upper-case methods only, as Go compares
/// them); `""` for any other method.
fn verb_for_method(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

fn check_method(method: &str) -> Result<(), RequestError> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.bytes().all(is_tchar) {
        return Err(RequestError::InvalidMethod {
            method: crate::keys::truncate(method),
        });
    }
    Ok(())
}

struct CanonicalPath {
    /// The decoded path.
    path: String,
    /// Decoded segments, without the trailing empty one.
    segments: Vec<String>,
    trailing_slash: bool,
}

/// Characters allowed raw in a path segment (RFC 3986 `pchar` minus `%`, which starts an escape).
fn is_raw_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn canonical_path(path: &str) -> Result<CanonicalPath, RequestError> {
    if path.len() > MAX_PATH_LEN {
        return Err(RequestError::PathTooLong {
            len: path.len(),
            max: MAX_PATH_LEN,
        });
    }
    let Some(body) = path.strip_prefix('/') else {
        return Err(RequestError::NotAbsolute);
    };
    if body.is_empty() {
        return Ok(CanonicalPath {
            path: "/".to_owned(),
            segments: Vec::new(),
            trailing_slash: false,
        });
    }
    let (body, trailing_slash) = match body.strip_suffix('/') {
        Some(b) => (b, true),
        None => (body, false),
    };
    let mut segments = Vec::new();
    let mut offset = 1; // byte offset of the current segment in `path`
    for (index, raw) in body.split('/').enumerate() {
        if raw.is_empty() {
            return Err(RequestError::EmptySegment { index });
        }
        if raw == "." || raw == ".." {
            return Err(RequestError::DotSegment {
                index,
                segment: raw.to_owned(),
            });
        }
        segments.push(decode_segment(raw, index, offset)?);
        offset += raw.len() + 1;
    }
    let mut decoded = String::with_capacity(path.len());
    for s in &segments {
        decoded.push('/');
        decoded.push_str(s);
    }
    if trailing_slash {
        decoded.push('/');
    }
    Ok(CanonicalPath {
        path: decoded,
        segments,
        trailing_slash,
    })
}

fn decode_segment(raw: &str, index: usize, offset: usize) -> Result<String, RequestError> {
    let bytes = raw.as_bytes();
    if !raw.contains('%') {
        if let Some(bad) = bytes.iter().position(|b| !is_raw_path_char(*b)) {
            let ch = raw
                .get(bad..)
                .and_then(|s| s.chars().next())
                .unwrap_or('\u{FFFD}');
            return Err(RequestError::InvalidCharacter { ch });
        }
        return Ok(raw.to_owned());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(RequestError::InvalidPercentEncoding { offset: offset + i });
            };
            let decoded = hi << 4 | lo;
            if matches!(decoded, b'/' | b'.' | b'%' | b'\\' | 0x00..=0x1f | 0x7f) {
                return Err(RequestError::ForbiddenEscape {
                    escape: raw.get(i..i + 3).unwrap_or("%").to_owned(),
                });
            }
            out.push(decoded);
            i += 3;
        } else if is_raw_path_char(b) {
            out.push(b);
            i += 1;
        } else {
            let ch = raw
                .get(i..)
                .and_then(|s| s.chars().next())
                .unwrap_or('\u{FFFD}');
            return Err(RequestError::InvalidCharacter { ch });
        }
    }
    String::from_utf8(out).map_err(|_| RequestError::InvalidUtf8 { index })
}

/// What the RequestInfo resolver reads from the query: the first `watch` and `fieldSelector` values.
struct Query {
    watch: bool,
    field_selector: Option<String>,
}

/// Parses the query like Go's `url.ParseQuery` (`&`-separated, `+` is a space, percent-decoding) but
/// refuses what Go would silently drop (a pair with `;`, an invalid escape), so that the gateway and
/// the API server cannot disagree about the parameters.
fn parse_query(query: &str) -> Result<Query, RequestError> {
    let mut watch: Option<Vec<u8>> = None;
    let mut field_selector: Option<Vec<u8>> = None;
    for pair in query.split('&') {
        if pair.contains(';') {
            return Err(RequestError::InvalidQuery {
                reason: "';' is not a query separator",
            });
        }
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = query_unescape(key)?;
        let value = query_unescape(value)?;
        match key.as_slice() {
            b"watch" if watch.is_none() => watch = Some(value),
            b"fieldSelector" if field_selector.is_none() => field_selector = Some(value),
            _ => {}
        }
    }
    let watch = match watch {
        None => false,
        Some(v) => {
            // kube-apiserver compares with Go's Unicode case folding in one code path and
            // ToLower in another; they only differ outside ASCII, so refuse that.
            if !v.is_ascii() {
                return Err(RequestError::InvalidQuery {
                    reason: "the watch parameter is not ASCII",
                });
            }
            // Any value but "0" or "false" (any case), including empty, means true.
            !(v == b"0" || v.eq_ignore_ascii_case(b"false"))
        }
    };
    // A non-UTF-8 selector gives no name (the conservative reading: a collection request).
    let field_selector = field_selector.and_then(|v| String::from_utf8(v).ok());
    Ok(Query {
        watch,
        field_selector,
    })
}

fn query_unescape(s: &str) -> Result<Vec<u8>, RequestError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(RequestError::InvalidQuery {
                        reason: "invalid percent-encoding",
                    });
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The name a field selector pins, as `fields.ParseSelector(s).RequiresExactMatch("metadata.name")`
/// followed by `path.IsValidPathSegmentName` in kube-apiserver; `None` if the selector is invalid,
/// pins no name, or pins an invalid one.
fn field_selector_name(selector: &str) -> Option<String> {
    let mut terms = split_terms(selector);
    terms.sort_unstable();
    let mut exact: Option<String> = None;
    for term in terms.into_iter().filter(|t| !t.is_empty()) {
        // Every term must parse, or the whole selector is invalid.
        let (field, op, raw_value) = split_term(term)?;
        let value = unescape_selector_value(raw_value)?;
        if exact.is_none() && op != "!=" && field == "metadata.name" {
            exact = Some(value);
        }
    }
    let name = exact?;
    let valid = name != "." && name != ".." && !name.contains('/') && !name.contains('%');
    valid.then_some(name)
}

/// Splits on commas not escaped by a backslash (the backslashes stay in the terms).
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(selector.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    terms.push(selector.get(start..).unwrap_or_default());
    terms
}

/// Splits a term at the first operator, trying `!=`, `==`, `=` at each position.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let remaining = term.get(i..)?;
        for op in ["!=", "==", "="] {
            if remaining.starts_with(op) {
                return Some((term.get(..i)?, op, remaining.get(op.len()..)?));
            }
        }
    }
    None
}

/// Field selector value unescaping: `\\`, `\,`, `\=` are the only escapes; a raw `,` or `=` is an error.
fn unescape_selector_value(s: &str) -> Option<String> {
    if !s.contains(['\\', ',', '=']) {
        return Some(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return None;
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return None,
            _ => out.push(c),
        }
    }
    (!in_slash).then_some(out)
}
