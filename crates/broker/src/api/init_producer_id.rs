//! InitProducerId v0–5: for idempotent producers here (a new producer id, or a KIP-360
//! epoch bump of the producer's own id); with a transactional id, through the transaction
//! coordinator (`api::txn`).

use std::sync::Arc;

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use super::{storage_error_code, Reply};
use crate::shared::Shared;

/// InitProducerId.
pub fn handle(shared: &Arc<Shared>, req: InitProducerIdRequest, version: i16) -> Reply {
    if let Some(txn) = req.transactional_id.as_ref().filter(|t| !t.is_empty()) {
        return super::txn::init_producer_id(shared, txn, &req, version);
    }
    Reply::Now(idempotent(shared, &req))
}

/// InitProducerId without a transactional id.
fn idempotent(shared: &Shared, req: &InitProducerIdRequest) -> ResponseKind {
    let r = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    // KIP-360: an idempotent producer may ask to bump the epoch of its own id.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        if req.producer_epoch == i16::MAX {
            // Epoch exhausted: a new id instead.
        } else {
            return ResponseKind::InitProducerId(
                r.with_producer_id(req.producer_id)
                    .with_producer_epoch(req.producer_epoch + 1),
            );
        }
    }
    match shared.cluster.next_producer_id() {
        Ok(id) => {
            ResponseKind::InitProducerId(r.with_producer_id(ProducerId(id)).with_producer_epoch(0))
        }
        Err(e) => ResponseKind::InitProducerId(r.with_error_code(storage_error_code(&e).code())),
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
