//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554), v0: the SCRAM
//! credentials of `shared.credentials`, with Kafka's checks and error codes.
//!
//! - Describe: every user with a credential, or the named ones; a named user without one
//!   is RESOURCE_NOT_FOUND, an empty name too, a name asked twice DUPLICATE_RESOURCE.
//! - Alter: the client sends salt and salted password (never the password); a user named
//!   twice in one request (deletions and upsertions together) is DUPLICATE_RESOURCE, an
//!   empty name or an iteration count outside 4096..=16384 UNACCEPTABLE_CREDENTIAL, an
//!   unknown mechanism UNSUPPORTED_SASL_MECHANISM, deleting a credential that does not
//!   exist RESOURCE_NOT_FOUND. The accepted changes are applied together and stored.
//!
//! FIXME(issue 20): Kafka requires DESCRIBE / ALTER on the cluster resource; until ACLs
//! exist, any client that may connect may read and change credentials.

use std::collections::HashMap;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rafka_hooks::Rejection;
use rafka_protocol::sasl::scram::{self, ScramCredential, ScramMechanism};

use super::{ErrorCodes, ErrorItem, RefusableRequest};
use crate::credentials::{ChangeOutcome, CredentialChange, CREDENTIAL_USERS_MAX};
use crate::shared::Shared;

fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn describe_result(
    user: &str,
    error: Option<(ResponseError, String)>,
) -> DescribeUserScramCredentialsResult {
    let r = DescribeUserScramCredentialsResult::default().with_user(sb(user));
    match error {
        Some((e, message)) => r
            .with_error_code(e.code())
            .with_error_message(Some(sb(message))),
        None => r,
    }
}

fn infos(creds: &[(ScramMechanism, u32)]) -> Vec<CredentialInfo> {
    creds
        .iter()
        .map(|(m, i)| {
            CredentialInfo::default()
                .with_mechanism(m.kafka_type())
                .with_iterations(*i as i32)
        })
        .collect()
}

/// DescribeUserScramCredentials.
pub(crate) fn describe(shared: &Shared, req: &DescribeUserScramCredentialsRequest) -> ResponseKind {
    let mut resp = DescribeUserScramCredentialsResponse::default();
    match req.users.as_ref().filter(|u| !u.is_empty()) {
        None => {
            for (user, creds) in shared.credentials.describe(None) {
                resp.results
                    .push(describe_result(&user, None).with_credential_infos(infos(&creds)));
            }
        }
        Some(users) => {
            let mut times: HashMap<&str, usize> = HashMap::new();
            for u in users {
                *times.entry(u.name.as_str()).or_default() += 1;
            }
            let mut answered: Vec<&str> = Vec::new();
            for u in users {
                let name = u.name.as_str();
                if answered.contains(&name) {
                    continue;
                }
                answered.push(name);
                let r = if name.is_empty() {
                    describe_result(
                        name,
                        Some((
                            ResponseError::ResourceNotFound,
                            "Cannot describe SCRAM credentials for empty user name".into(),
                        )),
                    )
                } else if times[name] > 1 {
                    describe_result(
                        name,
                        Some((
                            ResponseError::DuplicateResource,
                            format!(
                                "Cannot describe SCRAM credentials for the same user twice in a \
                                 single request: {name}"
                            ),
                        )),
                    )
                } else {
                    match shared.credentials.describe(Some(name)).pop() {
                        Some((_, creds)) => {
                            describe_result(name, None).with_credential_infos(infos(&creds))
                        }
                        None => describe_result(
                            name,
                            Some((
                                ResponseError::ResourceNotFound,
                                format!(
                                    "Attempt to describe a user credential that does not exist: \
                                     {name}"
                                ),
                            )),
                        ),
                    }
                };
                resp.results.push(r);
            }
        }
    }
    ResponseKind::DescribeUserScramCredentials(resp)
}

/// Kafka's checks of a user name and mechanism type, shared by deletions and upsertions.
fn check_name_and_mechanism(
    name: &str,
    mechanism: i8,
) -> Result<ScramMechanism, (ResponseError, String)> {
    if name.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty".into(),
        ));
    }
    ScramMechanism::from_kafka_type(mechanism).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        "Unknown SCRAM mechanism".into(),
    ))
}

/// AlterUserScramCredentials.
pub(crate) fn alter(shared: &Shared, req: &AlterUserScramCredentialsRequest) -> ResponseKind {
    // Per user, in order of first appearance: the change, or why it is refused.
    let mut order: Vec<String> = Vec::new();
    let mut outcome: HashMap<String, Result<CredentialChange, (ResponseError, String)>> =
        HashMap::new();
    let seen = |name: &str, order: &mut Vec<String>, outcome: &mut HashMap<_, _>| {
        if outcome.contains_key(name) {
            outcome.insert(
                name.to_string(),
                Err((
                    ResponseError::DuplicateResource,
                    "A user credential cannot be altered twice in the same request".to_string(),
                )),
            );
            true
        } else {
            order.push(name.to_string());
            false
        }
    };
    for d in &req.deletions {
        let name = d.name.as_str();
        if seen(name, &mut order, &mut outcome) {
            continue;
        }
        let change = check_name_and_mechanism(name, d.mechanism)
            .map(|m| CredentialChange::Delete(name.to_string(), m));
        outcome.insert(name.to_string(), change);
    }
    for u in &req.upsertions {
        let name = u.name.as_str();
        if seen(name, &mut order, &mut outcome) {
            continue;
        }
        let change = check_name_and_mechanism(name, u.mechanism).and_then(|m| {
            let iterations = u.iterations;
            if iterations < scram::MIN_ITERATIONS as i32 {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "Too few iterations".into(),
                ));
            }
            if iterations > scram::MAX_ITERATIONS as i32 {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "Too many iterations".into(),
                ));
            }
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "Salt and salted password must not be empty".into(),
                ));
            }
            Ok(CredentialChange::Upsert(
                name.to_string(),
                ScramCredential::from_salted_password(
                    m,
                    &u.salt,
                    &u.salted_password,
                    iterations as u32,
                ),
            ))
        });
        outcome.insert(name.to_string(), change);
    }

    let mut changes = Vec::new();
    let mut changed_users = Vec::new();
    let mut errors: HashMap<String, (ResponseError, String)> = HashMap::new();
    for name in &order {
        match outcome.remove(name) {
            Some(Ok(change)) => {
                changes.push(change);
                changed_users.push(name.clone());
            }
            Some(Err(e)) => {
                errors.insert(name.clone(), e);
            }
            None => {}
        }
    }
    if !changes.is_empty() {
        match shared.credentials.alter(changes) {
            Ok(outcomes) => {
                for (name, o) in changed_users.iter().zip(outcomes) {
                    let e = match o {
                        ChangeOutcome::Done => continue,
                        ChangeOutcome::NotFound => (
                            ResponseError::ResourceNotFound,
                            "Attempt to delete a user credential that does not exist".into(),
                        ),
                        ChangeOutcome::TooManyUsers => (
                            ResponseError::UnacceptableCredential,
                            format!("The broker holds at most {CREDENTIAL_USERS_MAX} users"),
                        ),
                    };
                    errors.insert(name.clone(), e);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store SCRAM credentials");
                for name in &changed_users {
                    errors.insert(
                        name.clone(),
                        (
                            ResponseError::UnknownServerError,
                            "The credentials could not be stored".into(),
                        ),
                    );
                }
            }
        }
    }
    let results = order
        .iter()
        .map(|name| {
            let r = AlterUserScramCredentialsResult::default().with_user(sb(name.as_str()));
            match errors.remove(name) {
                Some((e, message)) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(message))),
                None => r,
            }
        })
        .collect();
    ResponseKind::AlterUserScramCredentials(
        AlterUserScramCredentialsResponse::default().with_results(results),
    )
}

impl RefusableRequest for DescribeUserScramCredentialsRequest {
    type Response = DescribeUserScramCredentialsResponse;

    /// The top-level code, and each named user's (Kafka's `getErrorResponse`).
    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        let message = Some(sb(refusal.message.clone()));
        DescribeUserScramCredentialsResponse::default()
            .with_error_code(refusal.code.0)
            .with_error_message(message.clone())
            .with_results(
                self.users
                    .iter()
                    .flatten()
                    .map(|u| {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(u.name.clone())
                            .with_error_code(refusal.code.0)
                            .with_error_message(message.clone())
                    })
                    .collect(),
            )
    }
}

impl ErrorCodes for DescribeUserScramCredentialsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
        for r in &self.results {
            f(ErrorItem::named(r.user.as_str(), r.error_code));
        }
    }
}

impl RefusableRequest for AlterUserScramCredentialsRequest {
    type Response = AlterUserScramCredentialsResponse;

    /// Each user named in deletions or upsertions, once, sorted (Kafka's
    /// `getErrorResponse`).
    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        let mut users: Vec<&StrBytes> = self
            .deletions
            .iter()
            .map(|d| &d.name)
            .chain(self.upsertions.iter().map(|u| &u.name))
            .collect();
        users.sort();
        users.dedup();
        AlterUserScramCredentialsResponse::default().with_results(
            users
                .into_iter()
                .map(|u| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(u.clone())
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                })
                .collect(),
        )
    }
}

impl ErrorCodes for AlterUserScramCredentialsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        for r in &self.results {
            f(ErrorItem::named(r.user.as_str(), r.error_code));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
    use proptest::prelude::*;

    fn check(shared: &Shared, upsertions: Vec<ScramCredentialUpsertion>) -> Vec<(String, i16)> {
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(upsertions);
        let ResponseKind::AlterUserScramCredentials(resp) = alter(shared, &req) else {
            panic!("not an AlterUserScramCredentials answer")
        };
        resp.results
            .iter()
            .map(|r| (r.user.to_string(), r.error_code))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        // The mirror of the refusals: every well-formed upsertion (any non-empty name, a
        // known mechanism, 4096..=16384 iterations, a salt and a salted password) is
        // accepted, and Describe gives back each user's mechanism and iterations.
        #[test]
        fn every_valid_upsertion_is_accepted_and_described(
            users in proptest::collection::btree_map(
                "[^\u{0}]{1,40}",
                (1i8..=2, 4096i32..=16384, proptest::collection::vec(any::<u8>(), 1..48),
                 proptest::collection::vec(any::<u8>(), 1..80)),
                1..8,
            )
        ) {
            let shared = Shared::for_tests(vec![]);
            let upsertions = users
                .iter()
                .map(|(name, (mech, iterations, salt, salted))| {
                    ScramCredentialUpsertion::default()
                        .with_name(sb(name.as_str()))
                        .with_mechanism(*mech)
                        .with_iterations(*iterations)
                        .with_salt(bytes::Bytes::from(salt.clone()))
                        .with_salted_password(bytes::Bytes::from(salted.clone()))
                })
                .collect();
            let results = check(&shared, upsertions);
            prop_assert_eq!(results.len(), users.len());
            prop_assert!(results.iter().all(|(_, code)| *code == 0), "{:?}", results);
            let ResponseKind::DescribeUserScramCredentials(d) =
                describe(&shared, &DescribeUserScramCredentialsRequest::default())
            else {
                panic!("not a DescribeUserScramCredentials answer")
            };
            let described: Vec<(String, i8, i32)> = d
                .results
                .iter()
                .map(|r| {
                    let c = &r.credential_infos[0];
                    (r.user.to_string(), c.mechanism, c.iterations)
                })
                .collect();
            let want: Vec<(String, i8, i32)> = users
                .iter()
                .map(|(name, (mech, iterations, _, _))| (name.clone(), *mech, *iterations))
                .collect();
            prop_assert_eq!(described, want);
        }
    }
}
