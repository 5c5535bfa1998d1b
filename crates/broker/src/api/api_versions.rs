//! ApiVersions: the advertisement of what this broker serves.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};

/// Answers with the served table.
pub fn handle() -> ResponseKind {
    ResponseKind::ApiVersions(rafka_protocol::versions::api_versions_response(None))
}

impl super::RefusableRequest for ApiVersionsRequest {
    type Response = ApiVersionsResponse;

    /// Hooks never refuse ApiVersions (a client could not talk at all); should anything else
    /// refuse it, the error still comes with the ranges, so the client can make sense of it.
    fn error_response(&self, _version: i16, refusal: &rafka_hooks::Rejection) -> Self::Response {
        rafka_protocol::versions::api_versions_response(None).with_error_code(refusal.code.0)
    }
}

impl super::ErrorCodes for ApiVersionsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(super::ErrorItem<'a>)) {
        f(super::ErrorItem::top(self.error_code));
    }
}
