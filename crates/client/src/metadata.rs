//! The cached view of the cluster: brokers, and for each topic its partitions and leaders.

use std::collections::HashMap;
use std::time::Instant;

use kafka_protocol::messages::MetadataResponse;

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id (-1 when there is none).
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Error code the broker reported for this partition.
    pub error_code: i16,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Error code the broker reported for the topic (0 when fine).
    pub error_code: i16,
    /// Whether it is an internal topic (`__consumer_offsets`).
    pub is_internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionMetadata>,
}

/// Brokers and topics as of the last Metadata response.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// Broker id to `host:port`.
    pub brokers: HashMap<i32, String>,
    /// Topic name to its metadata (only topics without a topic-level error).
    pub topics: HashMap<String, TopicMetadata>,
    /// The cluster id, when the broker sent one.
    pub cluster_id: Option<String>,
    /// The controller's broker id.
    pub controller_id: i32,
    /// When this view was fetched.
    pub fetched_at: Option<Instant>,
}

impl Metadata {
    /// Merges a response: brokers are replaced, topics in the response are replaced
    /// (topics with an error are removed), other cached topics stay.
    pub fn merge(&mut self, resp: &MetadataResponse) -> Vec<TopicMetadata> {
        if !resp.brokers.is_empty() {
            self.brokers = resp
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                .collect();
        }
        self.cluster_id = resp.cluster_id.as_ref().map(|c| c.to_string());
        self.controller_id = resp.controller_id.0;
        self.fetched_at = Some(Instant::now());
        let mut out = Vec::new();
        for t in &resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let tm = TopicMetadata {
                name: name.clone(),
                error_code: t.error_code,
                is_internal: t.is_internal,
                partitions,
            };
            if t.error_code == 0 {
                self.topics.insert(name, tm.clone());
            } else {
                self.topics.remove(&name);
            }
            out.push(tm);
        }
        out
    }

    /// The leader of a partition, when known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)
            .filter(|p| p.partition == partition && p.leader >= 0)
            .map(|p| p.leader)
    }
}
