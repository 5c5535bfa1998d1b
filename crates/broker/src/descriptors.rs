//! File descriptors: the process's open-file limit raised to what the system allows (as
//! the JVM raises it for Kafka), and `max.connections` when it is not set — as many
//! connections as the descriptors left after the storage's files, the splice pipes and a
//! reserve allow (one each), so that a broker with many clients is held at its accept loop
//! instead of running out of descriptors for its segment files.

use rafka_core::limits::CONNECTIONS_MAX;

/// Descriptors kept for everything but connections and segment files: the listeners and
/// the admin endpoint, the runtime's, index and checkpoint files open for a moment,
/// PostgreSQL connections of a diskless broker.
pub(crate) const RESERVED_DESCRIPTORS: u64 = 512;

/// Fewest connections the default allows, however low the limit (the broker then warns).
pub(crate) const CONNECTIONS_MIN_DEFAULT: usize = 64;

/// Descriptors set aside for the process's splice pipes (`crate::splice`), which every
/// zero-copy fetch borrows one of: two each. A connection holds only its socket.
pub(crate) fn for_pipes(zero_copy_fetch: bool) -> u64 {
    if zero_copy_fetch {
        2 * crate::splice::PIPES_MAX as u64
    } else {
        0
    }
}

/// Raises the soft open-file limit to the hard one, and returns the soft limit in force
/// after it (`None`: unlimited).
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (now.current, now.maximum) {
        if soft < hard {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => return Some(hard),
                Err(e) => {
                    tracing::debug!(soft, hard, error = %e, "open-file limit not raised");
                }
            }
        }
    }
    now.current
}

/// The connections an open-file `limit` leaves room for once `storage_files` segment files,
/// [`RESERVED_DESCRIPTORS`] and the splice pipes are set aside, one descriptor each, within
/// `CONNECTIONS_MIN_DEFAULT..=CONNECTIONS_MAX`.
pub(crate) fn connections_within(
    limit: Option<u64>,
    storage_files: usize,
    zero_copy_fetch: bool,
) -> usize {
    let Some(limit) = limit else {
        return CONNECTIONS_MAX;
    };
    let left = limit
        .saturating_sub(RESERVED_DESCRIPTORS + storage_files as u64 + for_pipes(zero_copy_fetch));
    let n = usize::try_from(left).unwrap_or(usize::MAX);
    n.clamp(CONNECTIONS_MIN_DEFAULT, CONNECTIONS_MAX)
}

/// Descriptors `connections` and `storage_files` may need together, the reserve included.
pub(crate) fn needed(connections: usize, storage_files: usize, zero_copy_fetch: bool) -> u64 {
    connections as u64 + storage_files as u64 + RESERVED_DESCRIPTORS + for_pipes(zero_copy_fetch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_what_the_descriptors_leave() {
        // 20,000 descriptors, 4,096 segment files: 20,000 - 4,096 - 512, less 128 for the
        // pipes of zero-copy fetches.
        assert_eq!(connections_within(Some(20_000), 4096, true), 15_264);
        assert_eq!(connections_within(Some(20_000), 4096, false), 15_392);
        // A large limit is held to the hard bound; none at all likewise.
        assert_eq!(
            connections_within(Some(1 << 20), 4096, true),
            CONNECTIONS_MAX
        );
        assert_eq!(connections_within(None, 4096, true), CONNECTIONS_MAX);
        // Too few for the storage alone: the floor (the broker warns).
        assert_eq!(
            connections_within(Some(1024), 4096, true),
            CONNECTIONS_MIN_DEFAULT
        );
    }

    proptest::proptest! {
        /// Whatever the limit, the default fits it whenever the floor does, and stays
        /// within the bounds.
        #[test]
        fn the_default_fits_the_limit(limit in 0u64..4_000_000, files in 16usize..100_000, zero_copy: bool) {
            let n = connections_within(Some(limit), files, zero_copy);
            proptest::prop_assert!((CONNECTIONS_MIN_DEFAULT..=CONNECTIONS_MAX).contains(&n));
            if n > CONNECTIONS_MIN_DEFAULT {
                proptest::prop_assert!(needed(n, files, zero_copy) <= limit);
            }
        }
    }

    #[test]
    fn the_limit_is_raised_to_the_hard_one() {
        use rustix::process::{getrlimit, Resource};
        let raised = raise_open_file_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(raised, now.current);
        if now.maximum.is_some() {
            assert_eq!(now.current, now.maximum);
        }
    }
}
