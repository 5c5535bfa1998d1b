//! SCRAM credentials over the wire (KIP-554): DescribeUserScramCredentials and
//! AlterUserScramCredentials, what `rafka user` runs. The password never leaves the client:
//! it draws a random salt and sends the salted password (`Hi(password, salt, iterations)`),
//! from which the broker derives the keys it stores.

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use rafka_protocol::sasl::scram::{salted_password, ScramMechanism};

use crate::admin::check_with_message;
use crate::client::Client;
use crate::error::ClientError;
use crate::security::random_bytes;

/// DescribeUserScramCredentials versions this client speaks.
const DESCRIBE_VERSIONS: (i16, i16) = (0, 0);
/// AlterUserScramCredentials versions this client speaks.
const ALTER_VERSIONS: (i16, i16) = (0, 0);
/// Bytes of salt drawn for a new credential (the broker's bootstrap users get as many).
const SALT_BYTES: usize = 32;
/// Iterations when none are given (Kafka's minimum, the tools' default).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// A user's SCRAM credentials as the broker describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserScramCredentials {
    /// The user name.
    pub user: String,
    /// Mechanism and iteration count of each credential.
    pub credentials: Vec<(ScramMechanism, u32)>,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Client {
    /// The credentials of `users`, or of every user with one when `users` is empty. A named
    /// user without credentials fails with RESOURCE_NOT_FOUND.
    pub async fn describe_user_scram_credentials(
        &self,
        users: &[String],
    ) -> Result<Vec<UserScramCredentials>, ClientError> {
        let req = DescribeUserScramCredentialsRequest::default().with_users(
            (!users.is_empty()).then(|| {
                users
                    .iter()
                    .map(|u| UserName::default().with_name(sb(u)))
                    .collect()
            }),
        );
        let resp = self.call_any(&req, DESCRIBE_VERSIONS).await?;
        check_with_message(resp.error_code, resp.error_message, || {
            "describe SCRAM credentials".into()
        })?;
        let mut out = Vec::new();
        for r in resp.results {
            let user = r.user.to_string();
            check_with_message(r.error_code, r.error_message, || {
                format!("describe SCRAM credentials of {user:?}")
            })?;
            out.push(UserScramCredentials {
                user,
                credentials: r
                    .credential_infos
                    .iter()
                    .filter_map(|c| {
                        Some((
                            ScramMechanism::from_kafka_type(c.mechanism)?,
                            c.iterations.max(0) as u32,
                        ))
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Creates or replaces `user`'s credential for `mechanism` from `password`, salted here
    /// with a fresh random salt and `iterations` (4096..=16384 on Kafka and Rafka).
    pub async fn upsert_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> Result<(), ClientError> {
        let mut salt = [0u8; SALT_BYTES];
        random_bytes(&mut salt)?;
        let salted = salted_password(mechanism, password, &salt, iterations);
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(sb(user))
                .with_mechanism(mechanism.kafka_type())
                .with_iterations(iterations.min(i32::MAX as u32) as i32)
                .with_salt(Bytes::copy_from_slice(&salt))
                .with_salted_password(Bytes::from(salted)),
        ]);
        self.alter_scram(req, user, "set").await
    }

    /// Deletes `user`'s credential for `mechanism`.
    pub async fn delete_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<(), ClientError> {
        let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![
            ScramCredentialDeletion::default()
                .with_name(sb(user))
                .with_mechanism(mechanism.kafka_type()),
        ]);
        self.alter_scram(req, user, "delete").await
    }

    async fn alter_scram(
        &self,
        req: AlterUserScramCredentialsRequest,
        user: &str,
        what: &str,
    ) -> Result<(), ClientError> {
        let conn = self.controller().await?;
        let resp = self.call_on(&conn, &req, ALTER_VERSIONS).await?;
        for r in resp.results {
            check_with_message(r.error_code, r.error_message, || {
                format!("{what} SCRAM credential of {user:?}")
            })?;
        }
        Ok(())
    }
}
