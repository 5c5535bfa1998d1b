//! Authorized operations as Kafka reports them (KIP-430): a 32-bit field with bit `n` set
//! for each allowed `AclOperation` code `n`.
//!
//! Without an authorizer Kafka reports every operation a resource type supports as allowed
//! (its `AuthHelper.authorizedOperations`), which is what the handlers fill in from here;
//! with one, `api/authorize.rs` narrows each field to what the principal may do.

use crate::acl::{Operation, ResourceType};

/// Kafka's marker for "authorized operations were not requested".
pub(crate) const OPERATIONS_OMITTED: i32 = i32::MIN;

/// The operations Kafka's `AclEntry.supportedOperations` lists for a resource type.
pub(crate) fn supported_operations(resource: ResourceType) -> &'static [Operation] {
    use Operation::*;
    match resource {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
    }
}

/// The bit field of `ops` (bit `n` for operation code `n`).
pub(crate) fn bit_field<'a>(ops: impl IntoIterator<Item = &'a Operation>) -> i32 {
    ops.into_iter()
        .fold(0i32, |bits, op| bits | (1 << *op as u8))
}

/// The field to answer: every supported operation when `requested`, else Kafka's
/// "omitted" marker.
pub(crate) fn authorized_operations(resource: ResourceType, requested: bool) -> i32 {
    if !requested {
        return OPERATIONS_OMITTED;
    }
    bit_field(supported_operations(resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_match_kafka() {
        // Kafka 4 without an authorizer: Utils.to32BitField over supportedOperations.
        let check = |r, want: i32, n: u32| {
            let got = authorized_operations(r, true);
            assert_eq!(got, want, "{r:?}");
            assert_eq!(got.count_ones(), n, "{r:?}");
        };
        check(ResourceType::Topic, 0b1101_1111_1000, 8);
        check(ResourceType::Cluster, 0b1_1111_1010_0000, 7);
        check(ResourceType::Group, 0b1101_0100_1000, 5);
        assert_eq!(
            authorized_operations(ResourceType::Topic, false),
            OPERATIONS_OMITTED
        );
    }
}
