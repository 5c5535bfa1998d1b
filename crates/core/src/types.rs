//! Newtypes for the positions and names Kafka's protocol talks about.

use std::fmt;
use std::sync::Arc;

use crate::limits::TOPIC_NAME_LEN_MAX;

/// Logical position of a record in a partition. The wire type is INT64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl Offset {
    /// The offset `n` records after this one.
    pub fn plus(self, n: i64) -> Offset {
        Offset(self.0 + n)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Index of a partition within its topic. The wire type is INT32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Partition(pub i32);

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch, as Kafka stores record timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since.as_millis() as i64)
    }
}

/// Why a string is not a legal topic name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// Empty string.
    #[error("topic name is empty")]
    Empty,
    /// Longer than Kafka's 249 characters.
    #[error("topic name is {0} characters, more than the {TOPIC_NAME_LEN_MAX} allowed")]
    TooLong(usize),
    /// `.` and `..` are reserved.
    #[error("topic name cannot be '.' or '..'")]
    Dots,
    /// A character outside `[a-zA-Z0-9._-]`.
    #[error("topic name contains {0:?}: only ASCII letters, digits, '.', '_' and '-' are allowed")]
    BadChar(char),
}

/// A topic name that follows Kafka's rules: 1–249 characters of `[a-zA-Z0-9._-]`,
/// neither `.` nor `..`. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `name` against Kafka's rules.
    pub fn new(name: &str) -> Result<TopicName, TopicNameError> {
        if name.is_empty() {
            return Err(TopicNameError::Empty);
        }
        if name.len() > TOPIC_NAME_LEN_MAX {
            return Err(TopicNameError::TooLong(name.chars().count()));
        }
        if name == "." || name == ".." {
            return Err(TopicNameError::Dots);
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(TopicNameError::BadChar(c));
        }
        Ok(TopicName(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by `TopicName` are looked up by `&str` without validating or allocating a
/// name (the derived order and equality are the string's, as `Borrow` requires).
impl std::borrow::Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A partition of a topic: the unit of ordering and storage.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic.
    pub topic: TopicName,
    /// The partition index.
    pub partition: Partition,
}

impl TopicPartition {
    /// Builds a topic partition.
    pub fn new(topic: TopicName, partition: i32) -> TopicPartition {
        TopicPartition {
            topic,
            partition: Partition(partition),
        }
    }

    /// Parses a directory name of the form `<topic>-<partition>` (Kafka's layout).
    pub fn from_dir_name(dir: &str) -> Option<TopicPartition> {
        let (topic, partition) = dir.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        if partition < 0 {
            return None;
        }
        Some(TopicPartition::new(TopicName::new(topic).ok()?, partition))
    }

    /// The directory name `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: bool) {
        assert_eq!(TopicName::new(name).is_ok(), ok, "{name:?}");
    }

    #[test]
    fn topic_name_rules() {
        check("orders", true);
        check("a.b_c-D9", true);
        check(&"x".repeat(249), true);
        check(&"x".repeat(250), false);
        check("", false);
        check(".", false);
        check("..", false);
        check("...", true);
        check("a b", false);
        check("a/b", false);
        check("ü", false);
    }

    #[test]
    fn maps_of_names_are_looked_up_by_str() {
        let names = ["orders", "a.b", "orders-1", "b"];
        let tree: std::collections::BTreeMap<TopicName, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (TopicName::new(n).unwrap(), i))
            .collect();
        let hashed: std::collections::HashMap<TopicName, usize> =
            tree.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (i, n) in names.iter().enumerate() {
            assert_eq!((tree.get(*n), hashed.get(*n)), (Some(&i), Some(&i)));
        }
        for missing in ["order", "orders-", "", "a b"] {
            assert_eq!((tree.get(missing), hashed.get(missing)), (None, None));
        }
    }

    #[test]
    fn dir_name_round_trip() {
        let tp = TopicPartition::new(TopicName::new("my-topic").unwrap(), 12);
        assert_eq!(tp.dir_name(), "my-topic-12");
        assert_eq!(TopicPartition::from_dir_name("my-topic-12"), Some(tp));
        assert_eq!(TopicPartition::from_dir_name("nodash"), None);
        assert_eq!(TopicPartition::from_dir_name("t-x"), None);
        assert_eq!(
            TopicPartition::from_dir_name("t--1")
                .unwrap()
                .topic
                .as_str(),
            "t-"
        );
    }
}
