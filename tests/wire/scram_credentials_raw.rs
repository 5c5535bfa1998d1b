//! DescribeUserScramCredentials and AlterUserScramCredentials v0 on the wire: Kafka's error
//! codes for each refusal (unknown mechanism, empty name, iterations out of range, a user
//! twice in one request, deleting or describing what does not exist), the accepted changes
//! applied beside the refused ones, and the credentials file: mode 0600, no password in it,
//! kept across a restart, and a credential changed over the wire outliving the bootstrap
//! user of the configuration.

use crate::common::{str_bytes, KafkaConn};

use std::path::Path;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, RequestKind,
    ResponseKind,
};
use kafka_protocol::ResponseError;
use rafka_broker::{Broker, Config};

const SHA256: i8 = 1;
const SHA512: i8 = 2;

async fn start(dir: &Path) -> Broker {
    let mut cfg = Config::from_yaml(
        "broker:\n  scram_users:\n    - name: boot\n      password: boot-secret\n      \
         mechanisms: [SCRAM-SHA-512]\n      iterations: 8192\n",
    )
    .unwrap();
    cfg.broker.listen = "127.0.0.1:0".into();
    // A YAML config turns the admin endpoint on at 127.0.0.1:9644, which a broker run
    // beside the tests (the README's first command) holds.
    cfg.admin.listen = String::new();
    cfg.storage.path = dir.to_path_buf();
    Broker::start(cfg).await.expect("broker starts")
}

fn upsert(name: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
    ScramCredentialUpsertion::default()
        .with_name(str_bytes(name))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(Bytes::from_static(b"0123456789abcdef"))
        .with_salted_password(Bytes::from(vec![7u8; 32]))
}

fn delete(name: &str, mechanism: i8) -> ScramCredentialDeletion {
    ScramCredentialDeletion::default()
        .with_name(str_bytes(name))
        .with_mechanism(mechanism)
}

async fn alter(
    conn: &mut KafkaConn,
    deletions: Vec<ScramCredentialDeletion>,
    upsertions: Vec<ScramCredentialUpsertion>,
) -> Vec<(String, i16)> {
    let req = AlterUserScramCredentialsRequest::default()
        .with_deletions(deletions)
        .with_upsertions(upsertions);
    let resp: AlterUserScramCredentialsResponse = match conn
        .send(
            ApiKey::AlterUserScramCredentials,
            0,
            RequestKind::AlterUserScramCredentials(req),
        )
        .await
    {
        ResponseKind::AlterUserScramCredentials(r) => r,
        other => panic!("{other:?}"),
    };
    let mut out: Vec<(String, i16)> = resp
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    out.sort();
    out
}

/// Per user: error code and (mechanism, iterations) pairs.
async fn describe(
    conn: &mut KafkaConn,
    users: Option<&[&str]>,
) -> Vec<(String, i16, Vec<(i8, i32)>)> {
    let req = DescribeUserScramCredentialsRequest::default().with_users(users.map(|us| {
        us.iter()
            .map(|u| UserName::default().with_name(str_bytes(u)))
            .collect()
    }));
    let resp: DescribeUserScramCredentialsResponse = match conn
        .send(
            ApiKey::DescribeUserScramCredentials,
            0,
            RequestKind::DescribeUserScramCredentials(req),
        )
        .await
    {
        ResponseKind::DescribeUserScramCredentials(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(resp.error_code, 0);
    resp.results
        .iter()
        .map(|r| {
            (
                r.user.to_string(),
                r.error_code,
                r.credential_infos
                    .iter()
                    .map(|c| (c.mechanism, c.iterations))
                    .collect(),
            )
        })
        .collect()
}

fn s(v: &str) -> String {
    v.to_string()
}

#[tokio::test]
async fn describe_and_alter_with_kafkas_error_codes_and_a_durable_store() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut conn = KafkaConn::connect(&broker.bootstrap_address()).await;

    // The bootstrap user of the configuration.
    assert_eq!(
        describe(&mut conn, None).await,
        vec![(s("boot"), 0, vec![(SHA512, 8192)])]
    );

    let not_found = ResponseError::ResourceNotFound.code();
    let duplicate = ResponseError::DuplicateResource.code();
    let unacceptable = ResponseError::UnacceptableCredential.code();
    let mechanism = ResponseError::UnsupportedSaslMechanism.code();
    let got = alter(
        &mut conn,
        vec![
            delete("eve", SHA256),
            delete("frank", SHA256),
            delete("gil", 9),
        ],
        vec![
            upsert("alice", SHA256, 4096),
            upsert("alice2", SHA512, 16384),
            upsert("bob", 0, 4096),
            upsert("", SHA256, 4096),
            upsert("carol", SHA256, 4095),
            upsert("dave", SHA512, 16385),
            upsert("eve", SHA512, 4096),
            upsert("boot", SHA512, 4096),
        ],
    )
    .await;
    assert_eq!(
        got,
        vec![
            (s(""), unacceptable),
            (s("alice"), 0),
            (s("alice2"), 0),
            (s("bob"), mechanism),
            (s("boot"), 0),
            (s("carol"), unacceptable),
            (s("dave"), unacceptable),
            (s("eve"), duplicate),
            (s("frank"), not_found),
            (s("gil"), mechanism),
        ]
    );
    // The same user twice among the upsertions, even for two mechanisms.
    assert_eq!(
        alter(
            &mut conn,
            vec![],
            vec![upsert("hal", SHA256, 4096), upsert("hal", SHA512, 4096)]
        )
        .await,
        vec![(s("hal"), duplicate)]
    );

    let all = vec![
        (s("alice"), 0, vec![(SHA256, 4096)]),
        (s("alice2"), 0, vec![(SHA512, 16384)]),
        (s("boot"), 0, vec![(SHA512, 4096)]),
    ];
    assert_eq!(describe(&mut conn, None).await, all);
    assert_eq!(describe(&mut conn, Some(&[])).await, all);
    assert_eq!(
        describe(&mut conn, Some(&["alice", "nobody", "boot", "boot", ""])).await,
        vec![
            (s("alice"), 0, vec![(SHA256, 4096)]),
            (s("nobody"), not_found, vec![]),
            (s("boot"), duplicate, vec![]),
            (s(""), not_found, vec![]),
        ]
    );

    // The file: owner-only, salts and keys, no password.
    let file = dir.path().join("rafka-credentials.yaml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("alice2") && text.contains("stored_key"),
        "{text}"
    );
    assert!(!text.contains("boot-secret"), "{text}");

    // After a restart: the same credentials; boot keeps the one set over the wire, not the
    // configuration's 8192 iterations.
    drop(conn);
    broker.shutdown().await.unwrap();
    let broker = start(dir.path()).await;
    let mut conn = KafkaConn::connect(&broker.bootstrap_address()).await;
    assert_eq!(describe(&mut conn, None).await, all);

    // Deletions, kept across a restart too.
    assert_eq!(
        alter(
            &mut conn,
            vec![delete("alice", SHA256), delete("alice2", SHA256)],
            vec![]
        )
        .await,
        vec![(s("alice"), 0), (s("alice2"), not_found)]
    );
    drop(conn);
    broker.shutdown().await.unwrap();
    let broker = start(dir.path()).await;
    let mut conn = KafkaConn::connect(&broker.bootstrap_address()).await;
    assert_eq!(
        describe(&mut conn, Some(&["alice", "alice2"])).await,
        vec![
            (s("alice"), not_found, vec![]),
            (s("alice2"), 0, vec![(SHA512, 16384)]),
        ]
    );
    drop(conn);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_damaged_credentials_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rafka-credentials.yaml"),
        "version: 1\nusers:\n  alice:\n    SCRAM-SHA-256: {salt: zz, stored_key: '', server_key: '', iterations: 4096}\n",
    )
    .unwrap();
    let mut cfg = Config::default();
    cfg.broker.listen = "127.0.0.1:0".into();
    cfg.storage.path = dir.path().to_path_buf();
    let e = Broker::start(cfg).await.err().expect("refused");
    let e = e.to_string();
    assert!(
        e.contains("rafka-credentials.yaml") && e.contains("bad salt"),
        "{e}"
    );
}
