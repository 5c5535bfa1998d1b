//! rafka-hooks: custom logic at every stage of a request.
//!
//! A [`Hook`] declares the stages and topics it wants ([`Interest`]) and is called by the
//! broker at those stages only: `on_connect`, `on_request`, `on_produce`, `on_fetch`,
//! `on_admin`, `on_response`. A [`HookChain`] runs the configured hooks in order; a
//! [`Verdict::Reject`] stops the chain and is answered to the client; a hook that errs or
//! panics counts as a rejection. Hooks see Rafka types only ([`Record`], [`ErrorCode`],
//! [`Api`]), never wire types, so a new protocol version never breaks one.
//!
//! The built-in hooks (`topic_policy`, `validate_json`, `add_headers`, `redact`,
//! `audit_log`) are configured from YAML through [`HookConfig`] and built with
//! [`build_hooks`]. This crate does no networking; `audit_log` owns one writer thread.

pub mod builtin;
mod chain;
mod hook;
mod pattern;
mod session;

pub use builtin::{build_hooks, HookConfig, HookConfigError};
pub use chain::{ChainError, HookChain, Plan};
pub use hook::{
    AdminOp, Api, ErrorCode, Header, Hook, HookError, HookResult, Interest, Outcome, OutcomeItem,
    PeerInfo, Record, RecordError, RecordSet, Rejection, RequestContext, Stages, TopicFilter,
    Verdict,
};
pub use pattern::TopicPatterns;
pub use session::{Principal, SecurityProtocol, Session};
