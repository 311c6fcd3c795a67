//! Caps that keep one client (or anybody on the network) from exhausting the gateway (review §11):
//! WebSocket sessions per token and in total ([`WebSocketSlots`]), a deadline for request bodies
//! ([`DeadlineBody`]), and the rate of audit records that anybody can cause ([`AuditLimiter`]).
//! Each is a small value decided without a server; the stages use them.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;

use crate::authn::Principal;

/// Why a WebSocket upgrade was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRefusal {
    /// The gateway has `max` sessions open.
    Total {
        /// The cap.
        max: usize,
    },
    /// The token has `max` sessions open.
    PerToken {
        /// The cap.
        max: usize,
    },
}

/// The open WebSocket sessions, counted in total and per token.
pub struct WebSocketSlots {
    max_total: usize,
    max_per_token: usize,
    hasher: RandomState,
    open: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_token: HashMap<TokenKey, usize>,
}

/// What identifies "one token": its `jti`, or (a token without one, a pass-through credential)
/// a keyed hash of the credential, so that the token itself is never kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenKey {
    /// The token id.
    Jti(String),
    /// A keyed hash of the credential.
    Hash(u64),
}

impl WebSocketSlots {
    /// At most `max_total` sessions, at most `max_per_token` of one token.
    pub fn new(max_total: usize, max_per_token: usize) -> Self {
        Self {
            max_total,
            max_per_token,
            hasher: RandomState::new(),
            open: Mutex::new(Counts::default()),
        }
    }

    /// The key of `principal`'s token.
    pub fn key(&self, principal: &Principal) -> TokenKey {
        match principal.jti() {
            Some(jti) => TokenKey::Jti(jti.to_owned()),
            None => TokenKey::Hash(self.hasher.hash_one(&principal.credential().token)),
        }
    }

    /// A slot for one more session of `key`, held until the guard is dropped.
    pub fn try_open(self: &Arc<Self>, key: TokenKey) -> Result<SlotGuard, SlotRefusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_total {
            return Err(SlotRefusal::Total {
                max: self.max_total,
            });
        }
        let mine = open.per_token.entry(key.clone()).or_default();
        if *mine >= self.max_per_token {
            return Err(SlotRefusal::PerToken {
                max: self.max_per_token,
            });
        }
        *mine += 1;
        open.total += 1;
        Ok(SlotGuard {
            slots: self.clone(),
            key,
        })
    }

    /// Sessions open now (in total, and of `key`).
    pub fn open(&self, key: &TokenKey) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        (open.total, open.per_token.get(key).copied().unwrap_or(0))
    }

    fn close(&self, key: &TokenKey) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_token.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                open.per_token.remove(key);
            }
        }
    }
}

/// One open (or opening) WebSocket session's slot; dropping it frees the slot.
pub struct SlotGuard {
    slots: Arc<WebSocketSlots>,
    key: TokenKey,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.close(&self.key);
    }
}

/// The error a [`DeadlineBody`] fails with when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// Whether `error` (or what caused it: hyper and axum wrap body errors) is a [`BodyTimedOut`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A request body that must arrive within a time from when the gateway starts answering: a
/// client sending it slowly (slow loris) gets an error instead of holding a connection, a
/// task and an upstream request open forever. A body that has ended is never cut.
pub struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must end within `limit` from now.
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Lets through a bounded rate of audit records that anybody can cause (refusals without a
/// verified token), so that a flood cannot fill the log; what it holds back is counted.
pub struct AuditLimiter<C: Clock = DefaultClock> {
    limiter: Option<RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>>,
    suppressed: Counter,
}

impl AuditLimiter {
    /// `per_second` records a second with bursts of ten times that (`0`: unlimited).
    pub fn new(per_second: u32, suppressed: Counter) -> Self {
        Self::with_clock(per_second, suppressed, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> AuditLimiter<C> {
    /// The same on `clock` (tests use a fake one).
    pub fn with_clock(per_second: u32, suppressed: Counter, clock: &C) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(9));
            RateLimiter::direct_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                C::clone(clock),
            )
        });
        Self {
            limiter,
            suppressed,
        }
    }

    /// Whether one more record may be written now; counts it as suppressed when not.
    pub fn admit(&self) -> bool {
        match &self.limiter {
            Some(l) if l.check().is_err() => {
                self.suppressed.inc();
                false
            }
            _ => true,
        }
    }
}

impl<C: Clock> std::fmt::Debug for AuditLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLimiter")
            .field("limited", &self.limiter.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;
    use http_body_util::BodyExt;
    use virt_gateway_auth::jwt::{Claims, VerifiedToken};
    use virt_gateway_auth::keys::KeyAlgorithm;

    use super::*;
    use crate::token::{Credential, TokenSource};

    fn principal(jti: Option<&str>, token: &str) -> Principal {
        let credential = Credential {
            token: token.into(),
            source: TokenSource::Header,
        };
        let Some(jti) = jti else {
            return Principal::PassThrough { credential };
        };
        let mut claims = Claims::new(u64::MAX);
        claims.jti = Some(jti.into());
        Principal::Token {
            credential,
            verified: Arc::new(VerifiedToken {
                claims,
                kid: "k".into(),
                algorithm: KeyAlgorithm::EcdsaP256,
                kid_in_header: true,
            }),
        }
    }

    /// Review §11: one token could open WebSockets without bound.
    #[test]
    fn one_token_gets_at_most_its_share_and_everybody_at_most_the_total() {
        let slots = Arc::new(WebSocketSlots::new(3, 2));
        let a = slots.key(&principal(Some("a"), "ta"));
        let b = slots.key(&principal(Some("b"), "tb"));
        let a1 = slots.try_open(a.clone()).unwrap();
        let _a2 = slots.try_open(a.clone()).unwrap();
        assert_eq!(
            slots.try_open(a.clone()).err(),
            Some(SlotRefusal::PerToken { max: 2 })
        );
        let _b1 = slots.try_open(b.clone()).unwrap();
        assert_eq!(
            slots.try_open(b.clone()).err(),
            Some(SlotRefusal::Total { max: 3 })
        );
        // A closed session frees its slot.
        drop(a1);
        assert_eq!(slots.open(&a), (2, 1));
        let _a3 = slots.try_open(a.clone()).unwrap();
        assert_eq!(slots.open(&a), (3, 2));
    }

    #[test]
    fn tokens_without_jti_are_told_apart_by_credential_without_keeping_it() {
        let slots = Arc::new(WebSocketSlots::new(10, 1));
        let x = slots.key(&principal(None, "secret-x"));
        let y = slots.key(&principal(None, "secret-y"));
        assert_ne!(x, y);
        assert_eq!(x, slots.key(&principal(None, "secret-x")));
        assert!(!format!("{x:?}").contains("secret"));
        let _x = slots.try_open(x.clone()).unwrap();
        assert!(slots.try_open(x).is_err());
        assert!(slots.try_open(y).is_ok());
    }

    /// A slow-loris body: the client sends a little, then nothing.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_at_its_deadline_and_says_so() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, std::io::Error>>();
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"{\"a\":"))))
            .unwrap();
        let body = DeadlineBody::new(http_body_util::StreamBody::new(rx), Duration::from_secs(30));
        // As the endpoints read it: through axum's body, with a size limit.
        let mut body = http_body_util::Limited::new(axum::body::Body::new(body), 1024);
        assert!(body.frame().await.unwrap().is_ok(), "data in time passes");
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(is_body_timeout(err.as_ref()), "{err}");
        assert!(matches!(
            crate::error::GatewayError::from_body_error(err.as_ref()),
            crate::error::GatewayError::BodyTimeout(30)
        ));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_ends_in_time_is_never_cut() {
        let mut body = DeadlineBody::new(
            http_body_util::Full::new(Bytes::from_static(b"done")),
            Duration::from_secs(1),
        );
        let data = body.frame().await.unwrap().unwrap();
        assert_eq!(data.into_data().unwrap(), "done");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none(), "an ended body stays ended");
    }

    /// A flood of anonymous refusals writes a bounded number of lines; the rest are counted.
    #[test]
    fn the_audit_limiter_admits_a_burst_then_the_rate_and_counts_the_rest() {
        let clock = FakeRelativeClock::default();
        let suppressed = Counter::default();
        let limiter = AuditLimiter::with_clock(2, suppressed.clone(), &clock);
        let admitted = (0..1000).filter(|_| limiter.admit()).count();
        assert_eq!(admitted, 20, "a burst of ten seconds' worth");
        assert_eq!(suppressed.get(), 980);
        clock.advance(Duration::from_secs(1));
        assert_eq!((0..1000).filter(|_| limiter.admit()).count(), 2);
        let unlimited = AuditLimiter::with_clock(0, Counter::default(), &clock);
        assert!((0..10_000).all(|_| unlimited.admit()));
    }
}
