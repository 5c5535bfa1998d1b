//! SaslHandshake and SaslAuthenticate as the request pipeline sees them: on a listener
//! without SASL, or after a SASL connection authenticated (outside a KIP-368
//! re-authentication). The exchange itself runs before the pipeline, in [`crate::sasl`];
//! what reaches here is out of place, and Kafka answers it ILLEGAL_SASL_STATE.

use kafka_protocol::messages::{
    ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;

use super::sb;

/// SaslHandshake where no exchange can start: ILLEGAL_SASL_STATE, no mechanisms.
pub fn handshake() -> ResponseKind {
    ResponseKind::SaslHandshake(
        SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code()),
    )
}

/// SaslAuthenticate outside an exchange: ILLEGAL_SASL_STATE with Kafka's message.
pub fn authenticate() -> ResponseKind {
    ResponseKind::SaslAuthenticate(
        SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(sb(
                "SaslAuthenticate request received after successful authentication",
            ))),
    )
}

impl super::RefusableRequest for SaslHandshakeRequest {
    type Response = SaslHandshakeResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        SaslHandshakeResponse::default().with_error_code(refusal.code.0)
    }
}

impl super::ErrorCodes for SaslHandshakeResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
    }
}

impl super::RefusableRequest for SaslAuthenticateRequest {
    type Response = SaslAuthenticateResponse;

    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        SaslAuthenticateResponse::default()
            .with_error_code(refusal.code.0)
            .with_error_message(Some(sb(refusal.message.clone())))
    }
}

impl super::ErrorCodes for SaslAuthenticateResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
    }
}
