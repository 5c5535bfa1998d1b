//! Who is on the other end of a connection: the [`Session`] the broker creates when it
//! accepts one and carries in every [`crate::RequestContext`] of that connection.
//!
//! The broker fills in the listener and its protocol at accept; the principal is
//! `User:ANONYMOUS` unless the client authenticated: on an `SSL` listener with mutual TLS it
//! is `User:` + the client certificate's subject DN; on a `SASL_*` listener `User:` + the
//! SASL user name, with `sasl_mechanism` set (no request but ApiVersions reaches hooks
//! before that). A KIP-368 re-authentication replaces the session between two requests.
//! `on_connect` hooks run at accept, before any TLS handshake or SASL exchange. The
//! authorizer and quotas will read the principal from here.

use std::fmt;
use std::net::SocketAddr;

pub use rafka_core::SecurityProtocol;

/// A Kafka principal: a type and a name, written `User:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The principal type (`User` for every principal Kafka's authenticators produce).
    pub kind: String,
    /// The name within the type.
    pub name: String,
}

impl Principal {
    /// `User:ANONYMOUS`, Kafka's principal for an unauthenticated connection.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: "User".to_string(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// One accepted connection. Built once at accept and shared (behind an `Arc`) by every
/// request of the connection; it changes only by being replaced when authentication
/// completes, so a request always sees one consistent view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The client's address.
    pub peer: SocketAddr,
    /// The broker address the client connected to.
    pub local: SocketAddr,
    /// The name of the listener that accepted the connection (Kafka's listener name).
    pub listener: String,
    /// The listener's security protocol.
    pub security_protocol: SecurityProtocol,
    /// Who the client is.
    pub principal: Principal,
    /// The SASL mechanism the client authenticated with, once it has.
    pub sasl_mechanism: Option<String>,
}

impl Session {
    /// An unauthenticated session on a `PLAINTEXT` listener named `PLAINTEXT`.
    pub fn plaintext(peer: SocketAddr, local: SocketAddr) -> Session {
        Session {
            peer,
            local,
            listener: "PLAINTEXT".to_string(),
            security_protocol: SecurityProtocol::Plaintext,
            principal: Principal::anonymous(),
            sasl_mechanism: None,
        }
    }

    /// What `on_connect` hooks see of the session.
    pub fn peer_info(&self) -> crate::PeerInfo {
        crate::PeerInfo {
            peer: self.peer,
            local: self.local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unauthenticated_plaintext_session_is_user_anonymous() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let s = Session::plaintext(a, a);
        assert_eq!(s.principal.to_string(), "User:ANONYMOUS");
        assert_eq!(s.security_protocol.name(), "PLAINTEXT");
        assert_eq!(s.listener, "PLAINTEXT");
    }
}
