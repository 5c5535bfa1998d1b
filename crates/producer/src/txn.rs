//! Transactions (a producer with `transactional_id`), as Kafka's clients do them with the
//! version 1 flow: FindCoordinator (key type 1) and InitProducerId in `init_transactions`;
//! AddPartitionsToTxn before the transaction's first batch to each partition;
//! AddOffsetsToTxn and then TxnOffsetCommit (to the group coordinator) for
//! `send_offsets_to_transaction`; flush and EndTxn in `commit_transaction` and
//! `abort_transaction`.
//!
//! Errors: PRODUCER_FENCED, INVALID_PRODUCER_EPOCH and the other errors Kafka treats as
//! fatal make the producer unusable for transactions ([`ProducerError::TxnFatal`]); a failed
//! batch or a refused offset commit makes the transaction abortable
//! ([`ProducerError::TxnAbortable`]): it can only be aborted, and the producer then goes on
//! (with a new epoch when a batch failed, so sequence numbers start again in step).
//! NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE (the coordinator is looked up again),
//! COORDINATOR_LOAD_IN_PROGRESS and CONCURRENT_TRANSACTIONS are retried with backoff, for
//! at most `max_block` per call.
//!
//! The transaction state lives in the producer's `State` (one `std::sync::Mutex`, never held
//! across an `.await`); a call in progress marks it busy so calls cannot overlap.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use kafka_protocol::messages::{
    add_partitions_to_txn_request::AddPartitionsToTxnTopic,
    txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic},
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use rafka_client::admin::{COORDINATOR_GROUP, COORDINATOR_TRANSACTION};
use rafka_client::{ClientError, GroupMetadata};

use crate::error::ProducerError;
use crate::producer::{reset_sequences, Producer, Shared};

const INIT_PRODUCER_ID: (i16, i16) = (0, 4);
/// v4+ is the broker-to-broker verify form; clients use v3 and below.
const ADD_PARTITIONS_TO_TXN: (i16, i16) = (0, 3);
const ADD_OFFSETS_TO_TXN: (i16, i16) = (0, 3);
/// v5 is transaction version 2 (an epoch bump on every end); this producer uses version 1.
const END_TXN: (i16, i16) = (0, 3);
const TXN_OFFSET_COMMIT: (i16, i16) = (0, 3);
/// Backoff after CONCURRENT_TRANSACTIONS.
const CONCURRENT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(20);

/// Where a transactional producer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
    /// Before `init_transactions`.
    #[default]
    Uninitialized,
    /// Between transactions.
    Ready,
    /// After `begin_transaction`.
    InTransaction,
    /// A transactional call is running.
    Busy(&'static str),
}

/// The transaction state of a producer.
#[derive(Debug, Default)]
pub(crate) struct TxnState {
    phase: Phase,
    /// Partitions added to the ongoing transaction.
    partitions: HashSet<(String, i32)>,
    /// Whether the coordinator knows of the ongoing transaction (a partition or offsets
    /// were added), so that ending it needs an EndTxn.
    started: bool,
    /// What ends the transaction (abortable) or the producer (fatal).
    error: Option<ProducerError>,
    /// A batch failed: the partition's sequence numbers may be out of step with the
    /// broker's, so the abort gets a new epoch (KIP-360).
    needs_bump: bool,
}

impl TxnState {
    fn describe(&self) -> String {
        match self.phase {
            Phase::Uninitialized => "init_transactions has not completed".into(),
            Phase::Ready => "no transaction is open (call begin_transaction)".into(),
            Phase::InTransaction => "a transaction is open".into(),
            Phase::Busy(op) => format!("{op} is in progress"),
        }
    }

    /// Whether a record may be sent now.
    pub(crate) fn may_send(&self) -> Result<(), ProducerError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.phase {
            Phase::InTransaction => Ok(()),
            _ => Err(ProducerError::TxnState {
                operation: "send",
                state: self.describe(),
            }),
        }
    }

    pub(crate) fn has_partition(&self, topic: &str, partition: i32) -> bool {
        self.partitions.contains(&(topic.to_string(), partition))
    }

    /// A batch of the transaction failed finally.
    pub(crate) fn batch_failed(&mut self, e: &ProducerError) {
        self.needs_bump = true;
        let e = classify(e.clone());
        let keep = matches!(&self.error, Some(old) if old.is_fatal());
        if !keep && (self.error.is_none() || e.is_fatal()) {
            self.error = Some(e);
        }
    }

    fn fail(&mut self, e: &ProducerError) {
        if matches!(
            e,
            ProducerError::TxnFatal(_) | ProducerError::TxnAbortable(_)
        ) && !matches!(&self.error, Some(old) if old.is_fatal())
        {
            self.error = Some(e.clone());
        }
    }
}

fn fatal_code(e: ResponseError) -> bool {
    matches!(
        e,
        ResponseError::ProducerFenced
            | ResponseError::InvalidProducerEpoch
            | ResponseError::TransactionalIdAuthorizationFailed
            | ResponseError::InvalidProducerIdMapping
            | ResponseError::InvalidTxnState
            | ResponseError::ClusterAuthorizationFailed
            | ResponseError::UnsupportedVersion
            | ResponseError::FencedInstanceId
    )
}

/// Wraps a failure inside a transaction as fatal (fenced and the like) or abortable.
/// A timeout or a lost connection stays as it is: the call may be tried again.
pub(crate) fn classify(e: ProducerError) -> ProducerError {
    match e {
        ProducerError::TxnFatal(_)
        | ProducerError::TxnAbortable(_)
        | ProducerError::TxnState { .. } => e,
        e if e.kafka_error().is_some_and(fatal_code) => ProducerError::TxnFatal(Box::new(e)),
        e => ProducerError::TxnAbortable(Box::new(e)),
    }
}

/// Like [`classify`], but a failure that is neither the broker's answer nor final (a
/// timeout, a lost connection) is returned as it is and the call may be tried again.
fn classify_call(e: ProducerError) -> ProducerError {
    let transient = matches!(&e, ProducerError::Client(c) if c.kafka_error().is_none());
    if transient {
        e
    } else {
        classify(e)
    }
}

fn retriable_code(e: ResponseError) -> bool {
    matches!(
        e,
        ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::ConcurrentTransactions
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::RequestTimedOut
    )
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// Sends `req` to the coordinator of `key` and retries what Kafka retries (see the module
/// docs) until it succeeds, fails otherwise, or `max_block` has passed. `code` picks the
/// answer's error code.
async fn coordinator_call<R: Request>(
    shared: &Shared,
    operation: &'static str,
    key: (&str, i8),
    req: &R,
    versions: (i16, i16),
    code: impl Fn(&R::Response) -> i16,
) -> Result<R::Response, ProducerError> {
    let max_block = shared.cfg.max_block;
    let deadline = Instant::now() + max_block;
    let mut attempt = 0u32;
    loop {
        let cached = if key.1 == COORDINATOR_TRANSACTION {
            *shared.coordinator.lock().expect("coordinator lock")
        } else {
            None
        };
        let outcome = async {
            let node = match cached {
                Some(n) => n,
                None => {
                    let n = shared.client.find_coordinator_of(key.0, key.1).await?;
                    if key.1 == COORDINATOR_TRANSACTION {
                        *shared.coordinator.lock().expect("coordinator lock") = Some(n);
                    }
                    n
                }
            };
            shared.client.call_broker(node, req, versions).await
        }
        .await;
        let last: ProducerError = match outcome {
            Ok(r) => match ResponseError::try_from_code(code(&r)) {
                None => return Ok(r),
                Some(error) if retriable_code(error) => ProducerError::Coordinator {
                    operation: operation.into(),
                    error,
                },
                Some(error) => {
                    return Err(ProducerError::Coordinator {
                        operation: operation.into(),
                        error,
                    })
                }
            },
            Err(e) if e.is_retriable() => ProducerError::Client(e),
            Err(e) => return Err(ProducerError::Client(e)),
        };
        if matches!(
            last.kafka_error(),
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
        ) || matches!(last, ProducerError::Client(_))
        {
            *shared.coordinator.lock().expect("coordinator lock") = None;
        }
        attempt += 1;
        // CONCURRENT_TRANSACTIONS clears when the coordinator finishes the previous
        // transaction's markers: retried sooner, as the Java client and librdkafka do.
        let backoff = if last.kafka_error() == Some(ResponseError::ConcurrentTransactions) {
            CONCURRENT_BACKOFF.min(shared.cfg.client.backoff(attempt))
        } else {
            shared.cfg.client.backoff(attempt)
        };
        if Instant::now() + backoff >= deadline {
            tracing::debug!(operation, error = %last, "transactional call gave up");
            return Err(ProducerError::Client(ClientError::Timeout {
                what: format!("{operation} (last error: {last})"),
                after: max_block,
            }));
        }
        tracing::debug!(operation, error = %last, attempt, "retrying transactional call");
        tokio::time::sleep(backoff).await;
    }
}

/// InitProducerId for `id`: a new producer (`current` = (-1, -1)) or an epoch bump of the
/// current one. Returns the id and epoch.
async fn init_producer_id(
    shared: &Shared,
    id: &str,
    current: (i64, i16),
) -> Result<(i64, i16), ProducerError> {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(shared.cfg.transaction_timeout.as_millis() as i32)
        .with_producer_id(ProducerId(current.0))
        .with_producer_epoch(current.1);
    let r = coordinator_call(
        shared,
        "InitProducerId",
        (id, COORDINATOR_TRANSACTION),
        &req,
        INIT_PRODUCER_ID,
        |r| r.error_code,
    )
    .await?;
    Ok((r.producer_id.0, r.producer_epoch))
}

/// AddPartitionsToTxn for one partition (the first record of the transaction to it).
pub(crate) async fn add_partition(
    shared: &Shared,
    topic: &str,
    partition: i32,
) -> Result<(), ProducerError> {
    let Some(id) = shared.cfg.transactional_id.as_deref() else {
        return Ok(());
    };
    let (pid, epoch) = *shared.ids.lock().expect("ids lock");
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![partition])]);
    let r = coordinator_call(
        shared,
        "AddPartitionsToTxn",
        (id, COORDINATOR_TRANSACTION),
        &req,
        ADD_PARTITIONS_TO_TXN,
        |r| {
            let mut code = r.error_code;
            for t in &r.results_by_topic_v3_and_below {
                for p in &t.results_by_partition {
                    // OPERATION_NOT_ATTEMPTED only says another partition failed.
                    if p.partition_error_code != 0 && (code == 0 || code == 55) {
                        code = p.partition_error_code;
                    }
                }
            }
            code
        },
    )
    .await;
    let mut st = shared.state.lock().expect("producer lock");
    match r {
        Ok(_) => {
            st.txn.partitions.insert((topic.to_string(), partition));
            st.txn.started = true;
            Ok(())
        }
        Err(e) => {
            let e = classify_call(e);
            st.txn.fail(&e);
            Err(e)
        }
    }
}

impl Producer {
    fn transactional_id(&self, operation: &'static str) -> Result<String, ProducerError> {
        self.shared
            .cfg
            .transactional_id
            .clone()
            .ok_or_else(|| ProducerError::TxnState {
                operation,
                state: "the producer has no transactional_id".into(),
            })
    }

    /// Moves from `from` to busy with `operation`, or says why not.
    fn enter(
        &self,
        operation: &'static str,
        from: Phase,
        refuse_abortable: bool,
    ) -> Result<(), ProducerError> {
        let mut st = self.shared.state.lock().expect("producer lock");
        if let Some(e) = &st.txn.error {
            if e.is_fatal() || refuse_abortable {
                return Err(e.clone());
            }
        }
        if st.txn.phase != from {
            return Err(ProducerError::TxnState {
                operation,
                state: st.txn.describe(),
            });
        }
        st.txn.phase = Phase::Busy(operation);
        Ok(())
    }

    fn set_phase(&self, phase: Phase) {
        self.shared.state.lock().expect("producer lock").txn.phase = phase;
    }

    /// Finds the transaction coordinator and gets the producer id and epoch for
    /// `transactional_id` (InitProducerId), fencing any older producer with the same id
    /// and letting the coordinator finish that producer's open transaction. Call once,
    /// before the first transaction; may be called again after a timeout.
    pub async fn init_transactions(&self) -> Result<(), ProducerError> {
        let id = self.transactional_id("init_transactions")?;
        self.enter("init_transactions", Phase::Uninitialized, true)?;
        let r = init_producer_id(&self.shared, &id, (-1, -1)).await;
        let mut st = self.shared.state.lock().expect("producer lock");
        match r {
            Ok(ids) => {
                *self.shared.ids.lock().expect("ids lock") = ids;
                reset_sequences(&mut st);
                st.txn.phase = Phase::Ready;
                tracing::debug!(transactional_id = %id, producer_id = ids.0, epoch = ids.1, "transactions initialised");
                Ok(())
            }
            Err(e) => {
                st.txn.phase = Phase::Uninitialized;
                let e = classify_call(e);
                if e.is_fatal() {
                    st.txn.error = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Opens a transaction (locally; the coordinator learns of it with the first record or
    /// offsets).
    pub fn begin_transaction(&self) -> Result<(), ProducerError> {
        self.transactional_id("begin_transaction")?;
        let mut st = self.shared.state.lock().expect("producer lock");
        if let Some(e) = &st.txn.error {
            return Err(e.clone());
        }
        if st.txn.phase != Phase::Ready {
            return Err(ProducerError::TxnState {
                operation: "begin_transaction",
                state: st.txn.describe(),
            });
        }
        st.txn.phase = Phase::InTransaction;
        st.txn.partitions.clear();
        st.txn.started = false;
        Ok(())
    }

    /// Adds consumed positions (`(topic, partition)` → next offset to read) to the
    /// transaction for `group`: they become the group's committed offsets when the
    /// transaction commits, and are dropped when it aborts (AddOffsetsToTxn, then
    /// TxnOffsetCommit to the group coordinator, fenced by the group's generation).
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &BTreeMap<(String, i32), i64>,
        group: &GroupMetadata,
    ) -> Result<(), ProducerError> {
        let id = self.transactional_id("send_offsets_to_transaction")?;
        self.shared
            .state
            .lock()
            .expect("producer lock")
            .txn
            .may_send()
            .map_err(|e| match e {
                ProducerError::TxnState { state, .. } => ProducerError::TxnState {
                    operation: "send_offsets_to_transaction",
                    state,
                },
                e => e,
            })?;
        let r = self.add_offsets(&id, offsets, group).await;
        if let Err(e) = r {
            let e = classify_call(e);
            self.shared
                .state
                .lock()
                .expect("producer lock")
                .txn
                .fail(&e);
            return Err(e);
        }
        Ok(())
    }

    async fn add_offsets(
        &self,
        id: &str,
        offsets: &BTreeMap<(String, i32), i64>,
        group: &GroupMetadata,
    ) -> Result<(), ProducerError> {
        let shared = &self.shared;
        let (pid, epoch) = *shared.ids.lock().expect("ids lock");
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn_id(id))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())));
        coordinator_call(
            shared,
            "AddOffsetsToTxn",
            (id, COORDINATOR_TRANSACTION),
            &req,
            ADD_OFFSETS_TO_TXN,
            |r| r.error_code,
        )
        .await?;
        shared.state.lock().expect("producer lock").txn.started = true;
        let mut topics: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            topics.entry(t).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_leader_epoch(-1),
            );
        }
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id(id))
            .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(group.generation_id)
            .with_member_id(StrBytes::from_string(group.member_id.clone()))
            .with_group_instance_id(
                group
                    .group_instance_id
                    .as_ref()
                    .map(|s| StrBytes::from_string(s.clone())),
            )
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        coordinator_call(
            shared,
            "TxnOffsetCommit",
            (&group.group_id, COORDINATOR_GROUP),
            &req,
            TXN_OFFSET_COMMIT,
            |r| {
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .map(|p| p.error_code)
                    .find(|c| *c != 0)
                    .unwrap_or(0)
            },
        )
        .await?;
        Ok(())
    }

    async fn end_txn(&self, id: &str, commit: bool) -> Result<(), ProducerError> {
        let (pid, epoch) = *self.shared.ids.lock().expect("ids lock");
        let req = EndTxnRequest::default()
            .with_transactional_id(txn_id(id))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        coordinator_call(
            &self.shared,
            "EndTxn",
            (id, COORDINATOR_TRANSACTION),
            &req,
            END_TXN,
            |r| r.error_code,
        )
        .await?;
        Ok(())
    }

    /// Flushes the transaction's records and commits it (EndTxn). Fails with
    /// [`ProducerError::TxnAbortable`] when a record or the offsets failed (abort then),
    /// [`ProducerError::TxnFatal`] when fenced; after a timeout it may be called again.
    pub async fn commit_transaction(&self) -> Result<(), ProducerError> {
        let id = self.transactional_id("commit_transaction")?;
        self.enter("commit_transaction", Phase::InTransaction, true)?;
        let flushed = self.flush().await;
        let failed = self
            .shared
            .state
            .lock()
            .expect("producer lock")
            .txn
            .error
            .clone();
        if let Some(e) = failed {
            self.set_phase(Phase::InTransaction);
            return Err(e);
        }
        if let Err(e) = flushed {
            self.set_phase(Phase::InTransaction);
            return Err(e);
        }
        let started = self.shared.state.lock().expect("producer lock").txn.started;
        if started {
            if let Err(e) = self.end_txn(&id, true).await {
                let e = classify_call(e);
                let mut st = self.shared.state.lock().expect("producer lock");
                st.txn.fail(&e);
                st.txn.phase = Phase::InTransaction;
                return Err(e);
            }
        }
        self.finish_transaction();
        Ok(())
    }

    /// Aborts the transaction: its records are sent (and stay invisible to read_committed
    /// consumers), then EndTxn(abort). After a failed batch the producer also takes a new
    /// epoch (InitProducerId with its id and epoch), so its sequences start again.
    pub async fn abort_transaction(&self) -> Result<(), ProducerError> {
        let id = self.transactional_id("abort_transaction")?;
        self.enter("abort_transaction", Phase::InTransaction, false)?;
        // Batch failures during this flush only add to why the transaction is aborted.
        let flushed = self.flush().await;
        let (started, fatal, bump) = {
            let st = self.shared.state.lock().expect("producer lock");
            let fatal = st.txn.error.clone().filter(|e| e.is_fatal());
            (st.txn.started, fatal, st.txn.needs_bump)
        };
        if let Some(e) = fatal {
            self.set_phase(Phase::InTransaction);
            return Err(e);
        }
        if let Err(e) = flushed {
            self.set_phase(Phase::InTransaction);
            return Err(e);
        }
        if started {
            if let Err(e) = self.end_txn(&id, false).await {
                let e = classify_call(e);
                let mut st = self.shared.state.lock().expect("producer lock");
                if e.is_fatal() {
                    st.txn.fail(&e);
                }
                st.txn.phase = Phase::InTransaction;
                return Err(e);
            }
        }
        if bump {
            let current = *self.shared.ids.lock().expect("ids lock");
            match init_producer_id(&self.shared, &id, current).await {
                Ok(ids) => {
                    *self.shared.ids.lock().expect("ids lock") = ids;
                    let mut st = self.shared.state.lock().expect("producer lock");
                    reset_sequences(&mut st);
                    st.txn.needs_bump = false;
                }
                Err(e) => {
                    let e = classify_call(e);
                    let mut st = self.shared.state.lock().expect("producer lock");
                    if e.is_fatal() {
                        st.txn.fail(&e);
                    }
                    // The transaction is aborted; only the bump is left to do.
                    st.txn.started = false;
                    st.txn.phase = Phase::InTransaction;
                    return Err(e);
                }
            }
        }
        self.finish_transaction();
        Ok(())
    }

    fn finish_transaction(&self) {
        let mut st = self.shared.state.lock().expect("producer lock");
        st.txn.phase = Phase::Ready;
        st.txn.partitions.clear();
        st.txn.started = false;
        st.txn.error = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(error: ResponseError) -> ProducerError {
        ProducerError::Kafka {
            topic: "t".into(),
            partition: 0,
            error,
        }
    }

    #[test]
    fn fencing_errors_are_fatal_and_others_abortable() {
        for e in [
            ResponseError::ProducerFenced,
            ResponseError::InvalidProducerEpoch,
        ] {
            assert!(classify(kafka(e)).is_fatal(), "{e:?}");
        }
        for e in [
            ResponseError::MessageTooLarge,
            ResponseError::OutOfOrderSequenceNumber,
            ResponseError::TransactionAbortable,
        ] {
            assert!(classify(kafka(e)).is_abortable(), "{e:?}");
        }
        let timeout = ProducerError::Client(ClientError::Timeout {
            what: "x".into(),
            after: std::time::Duration::from_secs(1),
        });
        assert!(matches!(classify_call(timeout), ProducerError::Client(_)));
    }

    #[test]
    fn sends_are_refused_outside_a_transaction_and_after_a_failure() {
        let mut st = TxnState::default();
        assert!(matches!(
            st.may_send(),
            Err(ProducerError::TxnState {
                operation: "send",
                ..
            })
        ));
        st.phase = Phase::InTransaction;
        assert!(st.may_send().is_ok());
        st.batch_failed(&kafka(ResponseError::MessageTooLarge));
        assert!(st.may_send().unwrap_err().is_abortable());
        assert!(st.needs_bump);
        // A later fencing error wins over the abortable one; an abortable one never
        // replaces a fatal one.
        st.batch_failed(&kafka(ResponseError::ProducerFenced));
        assert!(st.may_send().unwrap_err().is_fatal());
        st.batch_failed(&kafka(ResponseError::MessageTooLarge));
        assert!(st.may_send().unwrap_err().is_fatal());
    }

    #[test]
    fn retried_coordinator_errors() {
        for e in [
            ResponseError::ConcurrentTransactions,
            ResponseError::CoordinatorLoadInProgress,
            ResponseError::NotCoordinator,
            ResponseError::CoordinatorNotAvailable,
        ] {
            assert!(retriable_code(e), "{e:?}");
            assert!(!fatal_code(e), "{e:?}");
        }
        assert!(!retriable_code(ResponseError::ProducerFenced));
    }
}
