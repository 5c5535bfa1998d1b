//! ApiVersions: the advertisement of what this broker serves.

use kafka_protocol::messages::ResponseKind;

/// Answers with the served table.
pub fn handle() -> ResponseKind {
    ResponseKind::ApiVersions(rafka_protocol::versions::api_versions_response(None))
}
