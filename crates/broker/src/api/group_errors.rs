//! The group APIs' own error knowledge (their part of [`super::RefusableRequest`] and
//! [`super::ErrorCodes`]): what each answers when refused and where its error codes are.
//! Kept beside `groups.rs`, which maps the same APIs onto the coordinator.

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as DescribedConsumerGroup;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use rafka_hooks::Rejection;

use super::{sb, ErrorCodes, ErrorItem, RefusableRequest};
use crate::authz::OPERATIONS_OMITTED;

impl RefusableRequest for FindCoordinatorRequest {
    type Response = FindCoordinatorResponse;

    /// v4+ batches keys: each gets the refusal; earlier versions carry it at the top level.
    fn error_response(&self, version: i16, refusal: &Rejection) -> Self::Response {
        let message = Some(sb(refusal.message.clone()));
        if version >= 4 {
            let coordinators = self.coordinator_keys.iter().map(|k| {
                Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(refusal.code.0)
                    .with_error_message(message.clone())
            });
            return FindCoordinatorResponse::default().with_coordinators(coordinators.collect());
        }
        FindCoordinatorResponse::default()
            .with_error_code(refusal.code.0)
            .with_error_message(message)
            .with_node_id(BrokerId(-1))
            .with_port(-1)
    }
}

impl ErrorCodes for FindCoordinatorResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
        for c in &self.coordinators {
            f(ErrorItem::named(&c.key, c.error_code));
        }
    }
}

impl RefusableRequest for JoinGroupRequest {
    type Response = JoinGroupResponse;

    fn error_response(&self, version: i16, refusal: &Rejection) -> Self::Response {
        // The protocol name became nullable in v7; before, an empty string stands for none.
        let protocol_name = (version < 7).then(|| sb(""));
        JoinGroupResponse::default()
            .with_error_code(refusal.code.0)
            .with_generation_id(-1)
            .with_protocol_name(protocol_name)
            .with_member_id(self.member_id.clone())
    }
}

impl ErrorCodes for JoinGroupResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
    }
}

impl RefusableRequest for SyncGroupRequest {
    type Response = SyncGroupResponse;

    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        SyncGroupResponse::default().with_error_code(refusal.code.0)
    }
}

impl ErrorCodes for SyncGroupResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
    }
}

impl RefusableRequest for HeartbeatRequest {
    type Response = HeartbeatResponse;

    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        HeartbeatResponse::default().with_error_code(refusal.code.0)
    }
}

impl ErrorCodes for HeartbeatResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
    }
}

impl RefusableRequest for LeaveGroupRequest {
    type Response = LeaveGroupResponse;

    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        LeaveGroupResponse::default().with_error_code(refusal.code.0)
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
        self.members
            .iter()
            .for_each(|m: &MemberResponse| f(ErrorItem::named(&m.member_id, m.error_code)));
    }
}

impl RefusableRequest for OffsetCommitRequest {
    type Response = OffsetCommitResponse;

    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        OffsetCommitResponse::default().with_topics(
            self.topics
                .iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(refusal.code.0)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        for t in &self.topics {
            for p in &t.partitions {
                f(ErrorItem::partition(
                    &t.name,
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
    }
}

impl RefusableRequest for OffsetFetchRequest {
    type Response = OffsetFetchResponse;

    /// v8+ batches groups: each gets the refusal. Before, the top-level code (v2+) and every
    /// named partition carry it.
    fn error_response(&self, version: i16, refusal: &Rejection) -> Self::Response {
        let e = refusal.code.0;
        if version >= 8 {
            let groups = self.groups.iter().map(|g| {
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(e)
            });
            return OffsetFetchResponse::default()
                .with_error_code(e)
                .with_groups(groups.collect());
        }
        let topics = self.topics.iter().flatten().map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partition_indexes
                        .iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(-1)
                                .with_committed_leader_epoch(-1)
                                .with_metadata(Some(sb("")))
                                .with_error_code(e)
                        })
                        .collect(),
                )
        });
        OffsetFetchResponse::default()
            .with_error_code(e)
            .with_topics(topics.collect())
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
        for t in &self.topics {
            for p in &t.partitions {
                f(ErrorItem::partition(
                    &t.name,
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
        for g in &self.groups {
            f(ErrorItem::named(&g.group_id, g.error_code));
            for t in &g.topics {
                for p in &t.partitions {
                    f(ErrorItem::partition(
                        &t.name,
                        p.partition_index,
                        p.error_code,
                    ));
                }
            }
        }
    }
}

impl RefusableRequest for DescribeGroupsRequest {
    type Response = DescribeGroupsResponse;

    fn error_response(&self, version: i16, refusal: &Rejection) -> Self::Response {
        DescribeGroupsResponse::default().with_groups(
            self.groups
                .iter()
                .map(|g| {
                    DescribedGroup::default()
                        .with_group_id(g.clone())
                        .with_error_code(refusal.code.0)
                        // The message is a v6 field.
                        .with_error_message((version >= 6).then(|| sb(refusal.message.clone())))
                        .with_authorized_operations(OPERATIONS_OMITTED)
                })
                .collect(),
        )
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        for g in &self.groups {
            f(ErrorItem::named(&g.group_id, g.error_code));
        }
    }
}

impl RefusableRequest for ListGroupsRequest {
    type Response = ListGroupsResponse;

    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        ListGroupsResponse::default().with_error_code(refusal.code.0)
    }
}

impl ErrorCodes for ListGroupsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
    }
}

impl RefusableRequest for DeleteGroupsRequest {
    type Response = DeleteGroupsResponse;

    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        DeleteGroupsResponse::default().with_results(
            self.groups_names
                .iter()
                .map(|g| {
                    DeletableGroupResult::default()
                        .with_group_id(g.clone())
                        .with_error_code(refusal.code.0)
                })
                .collect(),
        )
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        for g in &self.results {
            f(ErrorItem::named(&g.group_id, g.error_code));
        }
    }
}

impl RefusableRequest for OffsetDeleteRequest {
    type Response = OffsetDeleteResponse;

    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        OffsetDeleteResponse::default().with_error_code(refusal.code.0)
    }
}

impl ErrorCodes for OffsetDeleteResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
        for t in &self.topics {
            for p in &t.partitions {
                f(ErrorItem::partition(
                    &t.name,
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
    }
}

impl RefusableRequest for ConsumerGroupHeartbeatRequest {
    type Response = ConsumerGroupHeartbeatResponse;

    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(refusal.code.0)
            .with_error_message(Some(sb(refusal.message.clone())))
            .with_member_epoch(-1)
    }
}

impl ErrorCodes for ConsumerGroupHeartbeatResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        f(ErrorItem::top(self.error_code));
    }
}

impl RefusableRequest for ConsumerGroupDescribeRequest {
    type Response = ConsumerGroupDescribeResponse;

    fn error_response(&self, _version: i16, refusal: &Rejection) -> Self::Response {
        ConsumerGroupDescribeResponse::default().with_groups(
            self.group_ids
                .iter()
                .map(|g| {
                    DescribedConsumerGroup::default()
                        .with_group_id(g.clone())
                        .with_error_code(refusal.code.0)
                        .with_error_message(Some(sb(refusal.message.clone())))
                        .with_authorized_operations(OPERATIONS_OMITTED)
                })
                .collect(),
        )
    }
}

impl ErrorCodes for ConsumerGroupDescribeResponse {
    fn error_codes<'a>(&'a self, f: &mut dyn FnMut(ErrorItem<'a>)) {
        for g in &self.groups {
            f(ErrorItem::named(&g.group_id, g.error_code));
        }
    }
}
