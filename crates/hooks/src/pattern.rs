//! Topic-name patterns: regular expressions that must match the whole name.

use regex::RegexSet;

/// A set of topic-name patterns; a name matches when one pattern matches all of it.
#[derive(Debug, Clone)]
pub struct TopicPatterns {
    set: RegexSet,
    sources: Vec<String>,
}

impl TopicPatterns {
    /// Compiles patterns such as `orders-.*` (anchored: `orders` does not match `orders2`).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<TopicPatterns, regex::Error> {
        let sources: Vec<String> = patterns.iter().map(|p| p.as_ref().to_string()).collect();
        let set = RegexSet::new(sources.iter().map(|p| format!("^(?:{p})$")))?;
        Ok(TopicPatterns { set, sources })
    }

    /// Whether `topic` matches one of the patterns.
    pub fn matches(&self, topic: &str) -> bool {
        self.set.is_match(topic)
    }

    /// Whether there are no patterns (nothing matches).
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The patterns as written.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(patterns: &[&str], topic: &str, expect: bool) {
        let p = TopicPatterns::new(patterns).unwrap();
        assert_eq!(p.matches(topic), expect, "{patterns:?} vs {topic}");
    }

    #[test]
    fn patterns_match_whole_names() {
        check(&["orders-.*"], "orders-eu", true);
        check(&["orders"], "orders2", false);
        check(&["a|b"], "b", true);
        check(&["a", "tmp-.*"], "tmp-1", true);
        check(&[], "x", false);
        assert!(TopicPatterns::new(&["("]).is_err());
    }
}
