//! Transaction admin calls on [`Client`]: ListTransactions (every broker), DescribeTransactions
//! (the id's coordinator) and DescribeProducers (each partition's leader), plus
//! [`GroupMetadata`], what a transactional producer sends with the offsets of a
//! consume-transform-produce loop.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    describe_producers_request::TopicRequest, DescribeProducersRequest,
    DescribeTransactionsRequest, ListTransactionsRequest, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::COORDINATOR_TRANSACTION;
use crate::client::Client;
use crate::error::ClientError;

/// Versions this client speaks for the transaction admin APIs.
pub mod versions {
    /// ListTransactions (v1 adds the duration filter, v2 the id pattern).
    pub const LIST_TRANSACTIONS: (i16, i16) = (0, 1);
    /// DescribeTransactions.
    pub const DESCRIBE_TRANSACTIONS: (i16, i16) = (0, 0);
    /// DescribeProducers.
    pub const DESCRIBE_PRODUCERS: (i16, i16) = (0, 0);
}

/// A consumer's group membership as a transactional producer sends it with offsets
/// (Kafka's `ConsumerGroupMetadata`): the group coordinator fences commits from a member
/// of an older generation (KIP-447).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// `group.id`.
    pub group_id: String,
    /// The generation, or -1 outside group membership.
    pub generation_id: i32,
    /// The member id, or empty outside group membership.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
}

impl GroupMetadata {
    /// Metadata of a group this producer is not a member of (generation -1, no member).
    pub fn new(group_id: impl Into<String>) -> GroupMetadata {
        GroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// One transactional id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its state (Empty, Ongoing, PrepareCommit, ...).
    pub state: String,
}

/// A described transactional id (DescribeTransactions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// State (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, ...).
    pub state: String,
    /// `transaction.timeout.ms` the producer asked for.
    pub timeout_ms: i32,
    /// When the ongoing transaction started (ms), -1 without one.
    pub start_time_ms: i64,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Partitions in the ongoing transaction, by topic.
    pub partitions: BTreeMap<String, Vec<i32>>,
}

/// A producer active on a partition (DescribeProducers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerDescription {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i32,
    /// Last sequence number written.
    pub last_sequence: i32,
    /// Timestamp of its last batch (ms).
    pub last_timestamp: i64,
    /// First offset of its open transaction, -1 without one.
    pub current_txn_start_offset: i64,
}

impl Client {
    /// Every transactional id the brokers coordinate; with `states`, only those in one of
    /// them (Kafka's state names). Asks every broker, as each coordinates its own ids.
    pub async fn list_transactions(
        &self,
        states: &[String],
    ) -> Result<Vec<TransactionListing>, ClientError> {
        let req = ListTransactionsRequest::default()
            .with_state_filters(
                states
                    .iter()
                    .map(|s| StrBytes::from_string(s.clone()))
                    .collect(),
            )
            .with_duration_filter(-1);
        self.refresh_metadata(Some(&[])).await?;
        let mut brokers: Vec<i32> = self.metadata().brokers.keys().copied().collect();
        brokers.sort_unstable();
        let mut out = Vec::new();
        for id in brokers {
            let resp = self
                .retry(|| async {
                    let r = self
                        .call_broker(id, &req, versions::LIST_TRANSACTIONS)
                        .await?;
                    ClientError::check(r.error_code, || "list transactions".into())?;
                    Ok(r)
                })
                .await?;
            out.extend(
                resp.transaction_states
                    .into_iter()
                    .map(|t| TransactionListing {
                        transactional_id: t.transactional_id.0.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                    }),
            );
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// Describes one transactional id, asked from its coordinator.
    pub async fn describe_transaction(
        &self,
        transactional_id: &str,
    ) -> Result<TransactionDescription, ClientError> {
        let req =
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_string(transactional_id.to_string()),
            )]);
        let state = self
            .retry(|| async {
                let coordinator = self
                    .find_coordinator_of(transactional_id, COORDINATOR_TRANSACTION)
                    .await?;
                let r = self
                    .call_broker(coordinator, &req, versions::DESCRIBE_TRANSACTIONS)
                    .await?;
                let Some(s) = r.transaction_states.into_iter().next() else {
                    return Err(ClientError::Protocol(
                        "empty DescribeTransactions answer".into(),
                    ));
                };
                ClientError::check(s.error_code, || {
                    format!("describe transactional id {transactional_id:?}")
                })?;
                Ok(s)
            })
            .await?;
        let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for t in state.topics {
            let e = partitions.entry(t.topic.0.to_string()).or_default();
            e.extend(t.partitions);
            e.sort_unstable();
        }
        Ok(TransactionDescription {
            transactional_id: state.transactional_id.0.to_string(),
            state: state.transaction_state.to_string(),
            timeout_ms: state.transaction_timeout_ms,
            start_time_ms: state.transaction_start_time_ms,
            producer_id: state.producer_id.0,
            producer_epoch: state.producer_epoch,
            partitions,
        })
    }

    /// The active producers of each of `partitions` of `topic`, asked from each leader:
    /// partition → producers (by producer id).
    pub async fn describe_producers(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Vec<ProducerDescription>>, ClientError> {
        let by_leader = self.partitions_by_leader(topic, partitions).await?;
        let mut out = BTreeMap::new();
        for (leader, parts) in by_leader {
            let req = DescribeProducersRequest::default()
                .with_topics(vec![TopicRequest::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_indexes(parts)]);
            let resp = self
                .retry(|| self.call_broker(leader, &req, versions::DESCRIBE_PRODUCERS))
                .await?;
            for t in resp.topics {
                for p in t.partitions {
                    ClientError::check(p.error_code, || {
                        format!("describe producers of {topic}-{}", p.partition_index)
                    })?;
                    let mut producers: Vec<ProducerDescription> = p
                        .active_producers
                        .into_iter()
                        .map(|s| ProducerDescription {
                            producer_id: s.producer_id.0,
                            producer_epoch: s.producer_epoch,
                            last_sequence: s.last_sequence,
                            last_timestamp: s.last_timestamp,
                            current_txn_start_offset: s.current_txn_start_offset,
                        })
                        .collect();
                    producers.sort_by_key(|d| d.producer_id);
                    out.insert(p.partition_index, producers);
                }
            }
        }
        Ok(out)
    }
}
