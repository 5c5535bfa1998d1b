//! InitProducerId v0–5: for idempotent producers here (a new producer id, or a KIP-360
//! epoch bump of the producer's own id, checked against its current epoch); with a
//! transactional id, through the transaction coordinator (`api::txn`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::{storage_error_code, Reply};
use crate::diskless::Diskless;
use crate::shared::Shared;

/// InitProducerId.
pub fn handle(shared: &Arc<Shared>, req: InitProducerIdRequest, version: i16) -> Reply {
    if let Some(d) = shared.diskless.clone() {
        return diskless(shared, d, req, version);
    }
    if let Some(txn) = req.transactional_id.as_ref().filter(|t| !t.is_empty()) {
        return super::txn::init_producer_id(shared, txn, &req, version);
    }
    Reply::Now(idempotent(shared, &req, version))
}

/// How many idempotent producer ids [`IdempotentEpochs`] remembers; past it the oldest
/// registered is forgotten (and its next bump is accepted as if its epoch were current).
const EPOCHS_MAX: usize = 100_000;

/// What the broker knows of an idempotent producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    /// The current epoch (`i16::MAX` once the id is used up and replaced).
    epoch: i16,
    /// The last bump: the epoch it was asked with and what was answered, so that a retry
    /// after a lost answer gets the same answer instead of being fenced.
    last_bump: Option<(i16, (i64, i16))>,
}

/// KIP-360 for idempotent producers: the current epoch of each producer id this broker
/// handed out or bumped (in memory, bounded by [`EPOCHS_MAX`], oldest forgotten first).
/// An id it does not know (handed out before a restart, or forgotten) is taken at the
/// epoch its producer presents.
#[derive(Debug, Default)]
pub(crate) struct IdempotentEpochs {
    known: HashMap<i64, Known>,
    /// Ids in registration order, for forgetting the oldest.
    order: VecDeque<i64>,
}

/// Why an epoch bump was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BumpRefused {
    /// The epoch presented is not the producer id's current one: another instance has
    /// bumped it since (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH before v4).
    Fenced,
}

/// What an InitProducerId with a producer id and epoch should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bump {
    /// This id and epoch.
    Answer(i64, i16),
    /// The epoch is used up: hand out a new id (epoch 0) and record it with
    /// [`IdempotentEpochs::replaced`].
    NewId,
}

impl IdempotentEpochs {
    fn insert(&mut self, pid: i64, k: Known) {
        if self.known.insert(pid, k).is_none() {
            self.order.push_back(pid);
            while self.order.len() > EPOCHS_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.known.remove(&old);
                }
            }
        }
    }

    /// A new producer id at epoch 0.
    pub(crate) fn register(&mut self, pid: i64) {
        self.insert(
            pid,
            Known {
                epoch: 0,
                last_bump: None,
            },
        );
    }

    /// The producer `pid` at `epoch` asks for a new epoch.
    pub(crate) fn bump(&mut self, pid: i64, epoch: i16) -> Result<Bump, BumpRefused> {
        let known = self.known.get(&pid).copied();
        if let Some(Known {
            last_bump: Some((asked, answer)),
            ..
        }) = known
        {
            if asked == epoch {
                return Ok(Bump::Answer(answer.0, answer.1));
            }
        }
        if known.is_some_and(|k| k.epoch != epoch) {
            return Err(BumpRefused::Fenced);
        }
        if epoch == i16::MAX {
            return Ok(Bump::NewId);
        }
        self.insert(
            pid,
            Known {
                epoch: epoch + 1,
                last_bump: Some((epoch, (pid, epoch + 1))),
            },
        );
        Ok(Bump::Answer(pid, epoch + 1))
    }

    /// `pid`, at its last epoch, was replaced by `new_pid` (epoch 0).
    pub(crate) fn replaced(&mut self, pid: i64, new_pid: i64) {
        self.insert(
            pid,
            Known {
                epoch: i16::MAX,
                last_bump: Some((i16::MAX, (new_pid, 0))),
            },
        );
        self.register(new_pid);
    }
}

/// InitProducerId without a transactional id: a new producer id at epoch 0, or (v3+, with
/// the producer's id and epoch) a KIP-360 epoch bump, so an idempotent producer that hit
/// a sequence gap or a delivery timeout starts its sequences again at 0 under a new epoch.
/// The epoch presented must be the id's current one; a stale one is fenced.
fn idempotent(shared: &Shared, req: &InitProducerIdRequest, version: i16) -> ResponseKind {
    if let Err(r) = bump_or_new(shared, req, version) {
        return *r;
    }
    assign(
        shared,
        req,
        shared
            .cluster
            .next_producer_id()
            .map_err(|e| storage_error_code(&e)),
    )
}

/// The answer when the request is a bump that this broker answers (or refuses) itself;
/// `Ok` when a new producer id is needed.
fn bump_or_new(
    shared: &Shared,
    req: &InitProducerIdRequest,
    version: i16,
) -> Result<(), Box<ResponseKind>> {
    let r = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    if (pid >= 0) != (epoch >= 0) {
        // Kafka: the id and the epoch are set together or not at all.
        return Err(Box::new(ResponseKind::InitProducerId(
            r.with_error_code(ResponseError::InvalidRequest.code()),
        )));
    }
    if pid >= 0 {
        let bump = shared.idempotent_epochs.lock().bump(pid, epoch);
        match bump {
            Ok(Bump::Answer(id, e)) => {
                return Err(Box::new(ResponseKind::InitProducerId(
                    r.with_producer_id(ProducerId(id)).with_producer_epoch(e),
                )))
            }
            Err(BumpRefused::Fenced) => {
                let code = if version >= 4 {
                    ResponseError::ProducerFenced
                } else {
                    ResponseError::InvalidProducerEpoch
                };
                return Err(Box::new(ResponseKind::InitProducerId(
                    r.with_error_code(code.code()),
                )));
            }
            Ok(Bump::NewId) => {}
        }
    }
    Ok(())
}

/// InitProducerId in a diskless cluster: idempotent producers get ids unique across the
/// cluster (blocks taken from PostgreSQL); epoch bumps are checked as in single-node
/// mode. A transactional id is refused: transactions on diskless topics are not
/// supported yet (the response has no message field; the broker logs why).
fn diskless(
    shared: &Arc<Shared>,
    d: Arc<Diskless>,
    req: InitProducerIdRequest,
    version: i16,
) -> Reply {
    let refused = |code: ResponseError| {
        Reply::Now(ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_error_code(code.code()),
        ))
    };
    if let Some(txn) = req.transactional_id.as_ref().filter(|t| !t.is_empty()) {
        tracing::info!(
            transactional_id = %txn.as_str(),
            "InitProducerId refused: transactions are not supported in cluster.mode: diskless yet"
        );
        return refused(ResponseError::InvalidRequest);
    }
    match bump_or_new(shared, &req, version) {
        Err(r) => Reply::Now(*r),
        Ok(()) => {
            let shared = shared.clone();
            Reply::Later(Box::pin(async move {
                let id = d.producer_ids.next(&d.pg).await.map_err(|e| {
                    tracing::warn!(error = %e, "no producer id block from the coordinator");
                    ResponseError::CoordinatorNotAvailable
                });
                assign(&shared, &req, id)
            }))
        }
    }
}

/// The new id `id` (or its error) as InitProducerId's answer, recorded for later bumps.
fn assign(
    shared: &Shared,
    req: &InitProducerIdRequest,
    id: Result<i64, ResponseError>,
) -> ResponseKind {
    let r = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let pid = req.producer_id.0;
    match id {
        Ok(id) => {
            let mut epochs = shared.idempotent_epochs.lock();
            if pid >= 0 {
                epochs.replaced(pid, id);
            } else {
                epochs.register(id);
            }
            drop(epochs);
            ResponseKind::InitProducerId(r.with_producer_id(ProducerId(id)).with_producer_epoch(0))
        }
        Err(e) => ResponseKind::InitProducerId(r.with_error_code(e.code())),
    }
}

impl super::RefusableRequest for InitProducerIdRequest {
    type Response = InitProducerIdResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        InitProducerIdResponse::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_error_code(refusal.code.0)
    }
}

impl super::ErrorCodes for InitProducerIdResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_follow_the_current_epoch_and_fence_stale_ones() {
        let mut e = IdempotentEpochs::default();
        e.register(7);
        assert_eq!(e.bump(7, 0), Ok(Bump::Answer(7, 1)));
        // A retry of the same bump (lost answer) gets the same answer.
        assert_eq!(e.bump(7, 0), Ok(Bump::Answer(7, 1)));
        assert_eq!(e.bump(7, 1), Ok(Bump::Answer(7, 2)));
        // Epoch 0 is now two behind; 5 is ahead: both fenced.
        assert_eq!(e.bump(7, 0), Err(BumpRefused::Fenced));
        assert_eq!(e.bump(7, 5), Err(BumpRefused::Fenced));
        // Unknown ids (before a restart) are taken at their word.
        assert_eq!(e.bump(9, 4), Ok(Bump::Answer(9, 5)));
        assert_eq!(e.bump(9, 4), Ok(Bump::Answer(9, 5)));
        assert_eq!(e.bump(9, 3), Err(BumpRefused::Fenced));
    }

    #[test]
    fn the_last_epoch_is_replaced_by_a_new_id() {
        let mut e = IdempotentEpochs::default();
        assert_eq!(e.bump(3, i16::MAX), Ok(Bump::NewId));
        e.replaced(3, 4);
        // The retry gets the same new id; the new id bumps from 0.
        assert_eq!(e.bump(3, i16::MAX), Ok(Bump::Answer(4, 0)));
        assert_eq!(e.bump(3, 5), Err(BumpRefused::Fenced));
        assert_eq!(e.bump(4, 0), Ok(Bump::Answer(4, 1)));
    }

    #[test]
    fn memory_is_bounded() {
        let mut e = IdempotentEpochs::default();
        for pid in 0..(EPOCHS_MAX as i64 + 10) {
            e.register(pid);
        }
        assert_eq!(e.known.len(), EPOCHS_MAX);
        assert_eq!(e.order.len(), EPOCHS_MAX);
        assert!(!e.known.contains_key(&0));
        // Forgotten: taken at its word.
        assert_eq!(e.bump(0, 3), Ok(Bump::Answer(0, 4)));
    }
}
