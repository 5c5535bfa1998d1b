//! CreateAcls, DescribeAcls and DeleteAcls on the wire: SECURITY_DISABLED without an
//! authorizer, CLUSTER_AUTHORIZATION_FAILED for a principal without ALTER/DESCRIBE on the
//! cluster, INVALID_REQUEST per bad creation, filters (ANY, MATCH, LITERAL), and bindings
//! surviving a restart.

use crate::common::{str_bytes, KafkaConn};

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, RequestKind, ResponseKind,
};

const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
// Kafka's codes: resource TOPIC 2; pattern ANY 1, MATCH 2, LITERAL 3, PREFIXED 4;
// operation ANY 1, READ 3, WRITE 4; permission ANY 1, DENY 2, ALLOW 3.
const TOPIC: i8 = 2;

fn creation(name: &str, pattern: i8, principal: &str, op: i8, perm: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(TOPIC)
        .with_resource_name(str_bytes(name))
        .with_resource_pattern_type(pattern)
        .with_principal(str_bytes(principal))
        .with_host(str_bytes("*"))
        .with_operation(op)
        .with_permission_type(perm)
}

async fn create(conn: &mut KafkaConn, version: i16, creations: Vec<AclCreation>) -> Vec<i16> {
    match conn
        .send(
            ApiKey::CreateAcls,
            version,
            RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(creations)),
        )
        .await
    {
        ResponseKind::CreateAcls(r) => r.results.iter().map(|r| r.error_code).collect(),
        other => panic!("{other:?}"),
    }
}

/// DescribeAcls: the top-level code and, per resource, (type, name, pattern, [(principal,
/// operation, permission)]).
async fn describe(
    conn: &mut KafkaConn,
    version: i16,
    name: Option<&str>,
    pattern: i8,
) -> (i16, Vec<(i8, String, i8, Vec<(String, i8, i8)>)>) {
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(name.map(str_bytes))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1);
    match conn
        .send(
            ApiKey::DescribeAcls,
            version,
            RequestKind::DescribeAcls(req),
        )
        .await
    {
        ResponseKind::DescribeAcls(r) => (
            r.error_code,
            r.resources
                .iter()
                .map(|res| {
                    (
                        res.resource_type,
                        res.resource_name.to_string(),
                        res.pattern_type,
                        res.acls
                            .iter()
                            .map(|a| (a.principal.to_string(), a.operation, a.permission_type))
                            .collect(),
                    )
                })
                .collect(),
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn acl_apis_store_select_and_delete_bindings_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut cfg = rafka_broker::Config::default();
        cfg.broker.listen = "127.0.0.1:0".into();
        cfg.storage.path = dir.path().to_path_buf();
        cfg.broker.authorizer_class_name = STANDARD_AUTHORIZER.into();
        // A plaintext client is User:ANONYMOUS; as a super user it may change ACLs.
        cfg.broker.super_users = vec!["User:ANONYMOUS".into()];
        rafka_broker::Broker::start(cfg)
    };
    let b = start().await.expect("broker starts");
    let mut conn = KafkaConn::connect(&b.bootstrap_address()).await;
    let codes = create(
        &mut conn,
        3,
        vec![
            creation("orders", 3, "User:alice", 3, 3),
            creation("pay-", 4, "User:bob", 4, 2),
            creation("x", 2, "User:bob", 4, 3), // MATCH is no pattern for a binding
            creation("x", 3, "bob", 4, 3),      // not Type:name
        ],
    )
    .await;
    assert_eq!(codes, [0, 0, 42, 42]);
    let all = describe(&mut conn, 1, None, 1).await;
    assert_eq!(
        all,
        (
            0,
            vec![
                (TOPIC, "orders".into(), 3, vec![("User:alice".into(), 3, 3)]),
                (TOPIC, "pay-".into(), 4, vec![("User:bob".into(), 4, 2)]),
            ]
        )
    );
    // MATCH on a concrete name selects the prefix binding that covers it.
    let matched = describe(&mut conn, 3, Some("pay-in"), 2).await;
    assert_eq!(matched.1.len(), 1);
    assert_eq!(matched.1[0].1, "pay-");
    // An UNKNOWN pattern filter is refused.
    assert_eq!(describe(&mut conn, 2, None, 0).await.0, 42);
    let deleted = match conn
        .send(
            ApiKey::DeleteAcls,
            2,
            RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![
                DeleteAclsFilter::default()
                    .with_resource_type_filter(TOPIC)
                    .with_resource_name_filter(Some(str_bytes("orders")))
                    .with_pattern_type_filter(3)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_operation(1)
                    .with_permission_type(1),
                DeleteAclsFilter::default()
                    .with_resource_type_filter(TOPIC)
                    .with_pattern_type_filter(9),
            ])),
        )
        .await
    {
        ResponseKind::DeleteAcls(r) => r
            .filter_results
            .iter()
            .map(|f| {
                (
                    f.error_code,
                    f.matching_acls
                        .iter()
                        .map(|m| (m.resource_name.to_string(), m.principal.to_string()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        deleted,
        [
            (0, vec![("orders".to_string(), "User:alice".to_string())]),
            (42, vec![])
        ]
    );
    drop(conn);
    b.shutdown().await.expect("clean shutdown");
    // What was left is there after a restart.
    let b = start().await.expect("broker restarts");
    let mut conn = KafkaConn::connect(&b.bootstrap_address()).await;
    assert_eq!(
        describe(&mut conn, 1, None, 1).await,
        (
            0,
            vec![(TOPIC, "pay-".into(), 4, vec![("User:bob".into(), 4, 2)])]
        )
    );
    drop(conn);
    b.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn acl_apis_without_an_authorizer_or_without_cluster_rights_are_refused() {
    // No authorizer: SECURITY_DISABLED (54), as Kafka answers.
    let b = crate::common::start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&b.addr()).await;
    assert_eq!(
        create(&mut conn, 1, vec![creation("t", 3, "User:a", 3, 3)]).await,
        [54]
    );
    assert_eq!(describe(&mut conn, 1, None, 1).await, (54, vec![]));
    drop(conn);
    b.shutdown().await;
    // An authorizer, and User:ANONYMOUS holds no ALTER/DESCRIBE on the cluster:
    // CLUSTER_AUTHORIZATION_FAILED (31), and nothing is stored.
    let b = crate::common::start_broker(|c| {
        c.broker.authorizer_class_name = STANDARD_AUTHORIZER.into();
        c.broker.super_users = vec!["User:admin".into()];
    })
    .await;
    let mut conn = KafkaConn::connect(&b.addr()).await;
    assert_eq!(
        create(&mut conn, 2, vec![creation("t", 3, "User:a", 3, 3)]).await,
        [31]
    );
    assert_eq!(describe(&mut conn, 2, None, 1).await, (31, vec![]));
    assert!(!b.dir.path().join("rafka-acls.yaml").exists());
    drop(conn);
    b.shutdown().await;
}
