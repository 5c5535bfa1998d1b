//! What Rafka serves, API by API, and the ApiVersions advertisement built from it.
//!
//! Advertise exactly what is served. Below the `kafka-protocol` crate's minimums (Kafka 4
//! dropped those versions, KIP-896) Rafka serves what Kafka 3.9 served for the APIs
//! pre-2017 clients use, through [`crate::legacy`]: Produce v0–2, Fetch v0–3,
//! ListOffsets v0, OffsetCommit v0–1, OffsetFetch v0 and DescribeConfigs v0.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::ResponseError;

/// One served API: the versions advertised and the versions actually decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedApi {
    /// The API.
    pub key: ApiKey,
    /// Lowest version advertised.
    pub advertised_min: i16,
    /// Lowest version decoded; requests below it close the connection.
    pub served_min: i16,
    /// Highest version advertised and decoded.
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ServedApi {
    ServedApi {
        key,
        advertised_min: min,
        served_min: min,
        max,
    }
}

/// Every API Rafka serves. Ranges start at Kafka 4.x's minimums (KIP-896), or lower where
/// [`crate::legacy`] serves what Kafka 3.9 still did.
pub const SERVED: &[ServedApi] = &[
    api(ApiKey::Produce, 0, 12),
    api(ApiKey::Fetch, 0, 16),
    api(ApiKey::ListOffsets, 0, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::OffsetCommit, 0, 9),
    api(ApiKey::OffsetFetch, 0, 9),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 0, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::TxnOffsetCommit, 0, 5),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 2),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::AlterClientQuotas, 0, 1),
];

/// The `transaction.version` feature: supported levels 0 to [`TRANSACTION_VERSION_MAX`],
/// finalized at the maximum, as Kafka 4 advertises it (KIP-890).
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// The highest `transaction.version` level served.
pub const TRANSACTION_VERSION_MAX: i16 = 2;

/// The served entry for an API key, if Rafka serves it.
pub fn served(key: i16) -> Option<&'static ServedApi> {
    SERVED.iter().find(|a| a.key as i16 == key)
}

/// Whether `version` of `key` is decoded by this broker.
pub fn is_served(key: i16, version: i16) -> bool {
    served(key).is_some_and(|a| version >= a.served_min && version <= a.max)
}

/// The ApiVersions advertisement, with `error` (none, or UNSUPPORTED_VERSION when the
/// client asked for an ApiVersions version we do not know).
pub fn api_versions_response(error: Option<ResponseError>) -> ApiVersionsResponse {
    let keys = SERVED
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.advertised_min)
                .with_max_version(a.max)
        })
        .collect();
    // Tagged fields of v3+: an older answer leaves them out when encoded.
    let name = || kafka_protocol::protocol::StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    ApiVersionsResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_api_keys(keys)
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(name())
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION_MAX)])
        .with_finalized_features_epoch(0)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(name())
            .with_min_version_level(TRANSACTION_VERSION_MAX)
            .with_max_version_level(TRANSACTION_VERSION_MAX)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    #[test]
    fn served_ranges_are_decodable_by_the_codec_or_the_legacy_decoder() {
        for a in SERVED {
            let codec = a.key.valid_versions();
            for v in a.served_min..=a.max {
                assert!(
                    v >= codec.min || crate::legacy::handles(a.key, v),
                    "{:?} v{v} has no decoder",
                    a.key
                );
            }
            assert!(a.max <= codec.max, "{:?} above codec range", a.key);
            assert_eq!(a.advertised_min, a.served_min, "advertise what is served");
        }
        assert_eq!(kafka_protocol::messages::ProduceRequest::VERSIONS.min, 3);
    }

    #[test]
    fn old_versions_are_served_as_advertised() {
        for (key, min) in [(0, 0), (1, 0), (2, 0), (8, 0), (9, 0), (32, 0)] {
            let p = served(key).unwrap();
            assert_eq!((p.advertised_min, p.served_min), (min, min), "key {key}");
            assert!(is_served(key, min));
        }
        assert!(is_served(0, 2));
        assert!(!is_served(1000, 0));
    }
}
