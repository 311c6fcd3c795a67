//! The gateway's own endpoints (everything but the API proxy and the static files): each a plain
//! function or struct over the state it uses, answering with a response that carries its
//! [`crate::outcome::Outcome`].

pub mod gettoken;
pub mod health;
pub mod jwks;
pub mod login;
pub mod session;
pub mod signin;
