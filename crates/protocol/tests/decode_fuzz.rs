//! Property tests standing in for a fuzzer (cargo-fuzz needs a nightly toolchain this
//! project does not have): whatever bytes a peer sends, decoding never panics; it yields
//! requests, or an error that closes the connection. And the mirror image: every valid
//! request of every served API and version passes the pre-decode guard and decodes to the
//! value that was encoded (`valid_requests` builds them).

mod valid_requests;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;
use rafka_protocol::connection::{decode_request, encode_request, Inbound};
use rafka_protocol::versions::SERVED;
use rafka_protocol::Connection;

/// Feeds `chunks` to a connection and drains it; returns how many requests decoded.
fn drain(chunks: &[Vec<u8>]) -> usize {
    let mut conn = Connection::new(1 << 20);
    let mut n = 0;
    for c in chunks {
        conn.receive(c);
        loop {
            match conn.next_request() {
                Ok(Some(Inbound::Request(_))) | Ok(Some(Inbound::Answered(_))) => n += 1,
                Ok(None) => break,
                Err(_) => return n, // the broker closes the connection here
            }
        }
    }
    n
}

/// A valid frame for each served API at each served version (default bodies).
fn valid_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for api in SERVED {
        for version in api.served_min..=api.max {
            let header = RequestHeader::default()
                .with_request_api_key(api.key as i16)
                .with_request_api_version(version)
                .with_correlation_id(1)
                .with_client_id(Some(StrBytes::from_static_str("fuzz")));
            let Some(body) = default_body(api.key) else {
                continue;
            };
            let frame = if rafka_protocol::legacy::handles(api.key, version) {
                rafka_protocol::legacy::client_side::encode_request(
                    api.key, version, 1, "fuzz", &body,
                )
            } else {
                encode_request(&header, &body)
            };
            if let Ok(frame) = frame {
                out.push(frame.to_vec());
            }
        }
    }
    out
}

fn default_body(key: ApiKey) -> Option<RequestKind> {
    use kafka_protocol::messages::*;
    Some(match key {
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(1)),
        ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        _ => return None,
    })
}

// Mutations of valid frames once found a body claiming billions of elements, which made the
// codec's up-front allocation abort the process; `rafka_protocol::guard` now refuses those
// before the real decode, and this property keeps it so.
proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8)) {
        drain(&chunks);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        pick in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        split in any::<prop::sample::Index>(),
    ) {
        let frames = valid_frames();
        let mut frame = frames[pick.index(frames.len())].clone();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            // Keep the size prefix intact so decoding goes past framing.
            if i >= 4 {
                frame[i] = byte;
            }
        }
        let keep = 4 + cut.index(frame.len() - 3);
        frame.truncate(keep.min(frame.len()));
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        let at = split.index(frame.len() + 1);
        let (a, b) = frame.split_at(at);
        drain(&[a.to_vec(), b.to_vec()]);
    }
}

#[test]
fn every_valid_frame_decodes() {
    let frames = valid_frames();
    assert!(frames.len() > 50, "{} frames", frames.len());
    for f in &frames {
        assert_eq!(drain(std::slice::from_ref(f)), 1, "frame {:02x?}", &f[..12]);
    }
    // Back to back, split at every byte boundary of the first 64 bytes.
    let mut all = BytesMut::new();
    for f in frames.iter().take(10) {
        all.put_slice(f);
    }
    for at in 0..64 {
        let (a, b) = all.split_at(at);
        assert_eq!(drain(&[a.to_vec(), b.to_vec()]), 10);
    }
}

/// Every served API key and version the kafka-protocol codec decodes (the generator's
/// schema). The versions below the codec's range (Produce v0–2, Fetch v0–3, ...) go through
/// `rafka_protocol::legacy`, whose own property tests hold its hand decoders to all good input.
fn served_versions() -> impl Iterator<Item = (ApiKey, i16)> {
    SERVED.iter().flat_map(|a| {
        (a.served_min..=a.max)
            .filter(move |v| !rafka_protocol::legacy::handles(a.key, *v))
            .map(move |v| (a.key, v))
    })
}

/// Encodes `body` as the `kafka-protocol` crate does and reads it back the way the broker
/// does: the guard's probe, the codec's decode, and the whole frame through `decode_request`.
fn read_back(api: ApiKey, version: i16, body: &RequestKind) -> Result<(), String> {
    let mut b = BytesMut::new();
    body.encode(&mut b, version)
        .map_err(|e| format!("encode: {e}"))?;
    let bytes = b.freeze();
    rafka_protocol::guard::probe(api, &bytes, version).map_err(|e| format!("probe: {e}"))?;
    let decoded = RequestKind::decode(api, &mut bytes.clone(), version)
        .map_err(|e| format!("decode: {e}"))?;
    if decoded != *body {
        return Err("decoded body differs from the encoded one".into());
    }
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(i32::MAX)
        .with_client_id(Some(StrBytes::from_static_str("valid")));
    let frame = encode_request(&header, body)?;
    match decode_request(frame.slice(4..)) {
        Ok(Inbound::Request(r)) if r.body == *body => Ok(()),
        Ok(Inbound::Request(_)) => Err("frame decoded to a different body".into()),
        Ok(Inbound::Answered(_)) => Err("answered by the protocol layer".into()),
        Err(e) => Err(format!("frame: {e}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    // The mirror of the allocation-bomb tests (STYLE.md section 9): a guard tested only with
    // garbage refused valid SyncGroup requests whose one assignment held most of the body.
    #[test]
    fn every_valid_request_passes_the_guard_and_decodes_unchanged(seed in any::<u64>()) {
        for (api, version) in served_versions() {
            let generated = valid_requests::generate_request(api, version, seed)
                .unwrap_or_else(|| panic!("no generator for served API {api:?}"));
            let Some((body, _)) = generated else { continue };
            let result = read_back(api, version, &body);
            prop_assert!(result.is_ok(), "{:?} v{} seed {}: {:?}", api, version, seed, result);
        }
    }
}

/// The generator is not vacuous: for every served API and version it builds requests, with
/// several array elements, large byte strings and extreme plain INT32 values wherever the
/// schema has such fields. Fixed seeds: the same requests every run.
#[test]
fn valid_request_generator_covers_every_served_version() {
    const SEEDS: u64 = 16;
    for (api, version) in served_versions() {
        let mut built = 0;
        let mut cov = valid_requests::Coverage::default();
        for seed in 0..SEEDS {
            let generated = valid_requests::generate_request(api, version, seed)
                .unwrap_or_else(|| panic!("no generator for served API {api:?}"));
            let Some((body, c)) = generated else { continue };
            assert_eq!(
                read_back(api, version, &body),
                Ok(()),
                "{api:?} v{version} seed {seed}"
            );
            built += 1;
            cov.plain_i32 += c.plain_i32;
            cov.plain_i32_extreme += c.plain_i32_extreme;
            cov.lengths += c.lengths;
            cov.large_lengths += c.large_lengths;
            cov.counts += c.counts;
            cov.max_elements = cov.max_elements.max(c.max_elements);
            cov.high_varints += c.high_varints;
        }
        let at = format!("{api:?} v{version}: {cov:?}");
        assert!(
            built >= SEEDS * 3 / 4,
            "{at}: only {built} of {SEEDS} built"
        );
        assert!(cov.plain_i32 == 0 || cov.plain_i32_extreme > 0, "{at}");
        assert!(cov.lengths == 0 || cov.large_lengths > 0, "{at}");
        assert!(cov.counts == 0 || cov.max_elements >= 2, "{at}");
        eprintln!("{at}");
    }
}
