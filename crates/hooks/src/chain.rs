//! [`HookChain`]: the configured hooks in order, and the per-stage calls the broker makes.
//!
//! The chain reads every hook's [`Interest`] once, so asking "does any hook want this stage
//! for this topic, and does one need records?" is a few bit operations and pattern matches;
//! with no hook for a stage the broker skips it entirely.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rafka_core::limits::HOOKS_MAX;
use rafka_core::TopicPartition;

use crate::hook::{
    AdminOp, ErrorCode, Hook, HookResult, Interest, Outcome, PeerInfo, RecordSet, RequestContext,
    Stages, Verdict,
};

/// Why a chain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// More hooks than `limits::HOOKS_MAX`.
    #[error("{0} hooks configured; at most {HOOKS_MAX}")]
    TooMany(usize),
}

struct Entry {
    hook: Arc<dyn Hook>,
    interest: Interest,
}

/// The hooks that apply to one topic at one stage. Cheap to compute and copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    mask: u64,
    records: bool,
}

impl Plan {
    /// No hook applies: the broker does nothing.
    pub fn is_empty(&self) -> bool {
        self.mask == 0
    }

    /// Some applicable hook declared record access: the broker must decode records.
    pub fn needs_records(&self) -> bool {
        self.records
    }
}

/// The configured hooks, run in order. Shared by every connection (`Send + Sync`); it holds
/// no lock, hooks synchronise their own state.
pub struct HookChain {
    entries: Vec<Entry>,
    stages: Stages,
}

impl std::fmt::Debug for HookChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.hook.name()))
            .finish()
    }
}

impl Default for HookChain {
    fn default() -> Self {
        HookChain::empty()
    }
}

impl HookChain {
    /// A chain with no hooks: every stage is skipped.
    pub fn empty() -> HookChain {
        HookChain {
            entries: Vec::new(),
            stages: Stages::NONE,
        }
    }

    /// A chain running `hooks` in this order.
    pub fn new(hooks: Vec<Arc<dyn Hook>>) -> Result<HookChain, ChainError> {
        if hooks.len() > HOOKS_MAX {
            return Err(ChainError::TooMany(hooks.len()));
        }
        let entries: Vec<Entry> = hooks
            .into_iter()
            .map(|hook| Entry {
                interest: hook.interest(),
                hook,
            })
            .collect();
        let stages = entries
            .iter()
            .fold(Stages::NONE, |s, e| s | e.interest.stages);
        Ok(HookChain { entries, stages })
    }

    /// Number of hooks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no hooks.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The hooks' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| e.hook.name().to_string())
            .collect()
    }

    /// Whether any hook runs at `stage` (for some topic).
    pub fn wants(&self, stage: Stages) -> bool {
        self.stages.contains(stage)
    }

    /// The hooks that run at `stage` (PRODUCE, FETCH or ADMIN) for `topic`.
    pub fn plan(&self, stage: Stages, topic: &str) -> Plan {
        let mut plan = Plan::default();
        if !self.wants(stage) {
            return plan;
        }
        for (i, e) in self.entries.iter().enumerate() {
            if e.interest.stages.contains(stage) && e.interest.topics.matches(topic) {
                plan.mask |= 1 << i;
                plan.records |= e.interest.record_access;
            }
        }
        plan
    }

    fn in_plan(&self, plan: Plan) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(i, _)| plan.mask & (1 << i) != 0)
            .map(|(_, e)| e)
    }

    fn at_stage(&self, stage: Stages) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(move |e| e.interest.stages.contains(stage))
    }

    /// Runs `on_connect` of every hook that asked for it.
    pub fn on_connect(&self, peer: &PeerInfo) -> Verdict {
        run(self.at_stage(Stages::CONNECT), "on_connect", |h| {
            h.on_connect(peer)
        })
    }

    /// Runs `on_request`.
    pub fn on_request(&self, ctx: &RequestContext) -> Verdict {
        run(self.at_stage(Stages::REQUEST), "on_request", |h| {
            h.on_request(ctx)
        })
    }

    /// Runs `on_produce` of the hooks in `plan` (from [`HookChain::plan`] with PRODUCE).
    pub fn on_produce(
        &self,
        plan: Plan,
        ctx: &RequestContext,
        tp: &TopicPartition,
        records: &mut RecordSet,
    ) -> Verdict {
        run(self.in_plan(plan), "on_produce", |h| {
            h.on_produce(ctx, tp, records)
        })
    }

    /// Runs `on_fetch` of the hooks in `plan` (from [`HookChain::plan`] with FETCH).
    pub fn on_fetch(
        &self,
        plan: Plan,
        ctx: &RequestContext,
        tp: &TopicPartition,
        records: &mut RecordSet,
    ) -> Verdict {
        run(self.in_plan(plan), "on_fetch", |h| {
            h.on_fetch(ctx, tp, records)
        })
    }

    /// Runs `on_admin` of the hooks that asked for ADMIN on the operation's topic.
    pub fn on_admin(&self, ctx: &RequestContext, op: &AdminOp<'_>) -> Verdict {
        let plan = self.plan(Stages::ADMIN, op.topic());
        run(self.in_plan(plan), "on_admin", |h| h.on_admin(ctx, op))
    }

    /// Runs `on_response`. A panic is logged and ignored.
    pub fn on_response(&self, ctx: &RequestContext, outcome: &Outcome) {
        for e in self.at_stage(Stages::RESPONSE) {
            if catch_unwind(AssertUnwindSafe(|| e.hook.on_response(ctx, outcome))).is_err() {
                tracing::error!(hook = e.hook.name(), "hook panicked in on_response");
            }
        }
    }
}

/// Calls `stage` on each hook in order until one rejects. An error or a panic is a rejection
/// with UNKNOWN_SERVER_ERROR, logged here (once).
fn run<'a>(
    entries: impl Iterator<Item = &'a Entry>,
    stage_name: &'static str,
    mut stage: impl FnMut(&dyn Hook) -> HookResult,
) -> Verdict {
    for e in entries {
        let name = e.hook.name();
        match catch_unwind(AssertUnwindSafe(|| stage(e.hook.as_ref()))) {
            Ok(Ok(Verdict::Continue)) => {}
            Ok(Ok(reject)) => {
                tracing::debug!(hook = name, stage = stage_name, "hook rejected");
                return reject;
            }
            Ok(Err(err)) => {
                tracing::warn!(hook = name, stage = stage_name, error = %err, "hook failed; rejecting");
                return Verdict::reject(
                    ErrorCode::UNKNOWN_SERVER_ERROR,
                    format!("hook {name} failed: {err}"),
                );
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(hook = name, stage = stage_name, panic = %what, "hook panicked; rejecting");
                return Verdict::reject(
                    ErrorCode::UNKNOWN_SERVER_ERROR,
                    format!("hook {name} panicked"),
                );
            }
        }
    }
    Verdict::Continue
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::{HookError, Record, TopicFilter};
    use crate::pattern::TopicPatterns;
    use bytes::Bytes;
    use rafka_core::{Offset, Timestamp, TopicName};

    /// Appends its tag to every value; panics or fails on demand.
    struct Tagger {
        tag: &'static str,
        topics: TopicFilter,
        mode: Mode,
    }

    #[derive(Clone, Copy)]
    enum Mode {
        Append,
        Panic,
        Fail,
        Reject,
    }

    impl Hook for Tagger {
        fn name(&self) -> &str {
            self.tag
        }
        fn interest(&self) -> Interest {
            Interest {
                stages: Stages::PRODUCE,
                topics: self.topics.clone(),
                record_access: true,
            }
        }
        fn on_produce(
            &self,
            _ctx: &RequestContext,
            _tp: &TopicPartition,
            records: &mut RecordSet,
        ) -> HookResult {
            match self.mode {
                Mode::Panic => panic!("boom"),
                Mode::Fail => Err(HookError("no".into())),
                Mode::Reject => Ok(Verdict::reject(ErrorCode::POLICY_VIOLATION, "refused")),
                Mode::Append => {
                    for r in records.records_mut().unwrap() {
                        let mut v = r.value.clone().unwrap_or_default().to_vec();
                        v.extend_from_slice(self.tag.as_bytes());
                        r.value = Some(Bytes::from(v));
                    }
                    Ok(Verdict::Continue)
                }
            }
        }
    }

    fn tagger(tag: &'static str, mode: Mode) -> Arc<dyn Hook> {
        Arc::new(Tagger {
            tag,
            topics: TopicFilter::All,
            mode,
        })
    }

    fn ctx() -> RequestContext {
        RequestContext {
            api: crate::Api::Produce,
            api_version: 9,
            correlation_id: 1,
            client_id: "c".into(),
            peer: "127.0.0.1:1".parse().unwrap(),
            received: Timestamp(0),
            session: std::sync::Arc::new(crate::Session::plaintext(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
        }
    }

    /// Runs a chain over one record with value "v"; returns the verdict and the value.
    fn check(hooks: Vec<Arc<dyn Hook>>, topic: &str) -> (Verdict, String) {
        let chain = HookChain::new(hooks).unwrap();
        let mut set = RecordSet::decoded(
            vec![Record {
                offset: Offset(0),
                timestamp: Timestamp(0),
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: vec![],
            }],
            10,
        );
        let tp = TopicPartition::new(TopicName::new(topic).unwrap(), 0);
        let plan = chain.plan(Stages::PRODUCE, topic);
        let verdict = chain.on_produce(plan, &ctx(), &tp, &mut set);
        let value = set.records().unwrap()[0].value.clone().unwrap();
        (verdict, String::from_utf8(value.to_vec()).unwrap())
    }

    #[test]
    fn hooks_apply_in_order() {
        let (v, value) = check(
            vec![tagger("a", Mode::Append), tagger("b", Mode::Append)],
            "t",
        );
        assert_eq!(v, Verdict::Continue);
        assert_eq!(value, "vab");
    }

    #[test]
    fn panic_and_error_are_rejections_and_stop_the_chain() {
        for mode in [Mode::Panic, Mode::Fail] {
            let (v, value) = check(vec![tagger("p", mode), tagger("b", Mode::Append)], "t");
            let Verdict::Reject(r) = v else {
                panic!("not rejected")
            };
            assert_eq!(r.code, ErrorCode::UNKNOWN_SERVER_ERROR);
            assert!(r.message.contains("hook p"), "{}", r.message);
            assert_eq!(value, "v");
        }
        let (v, _) = check(vec![tagger("r", Mode::Reject)], "t");
        assert!(matches!(v, Verdict::Reject(r) if r.code == ErrorCode::POLICY_VIOLATION));
    }

    #[test]
    fn topics_and_stages_select_hooks() {
        let only_orders: Arc<dyn Hook> = Arc::new(Tagger {
            tag: "o",
            topics: TopicFilter::Matching(TopicPatterns::new(&["orders"]).unwrap()),
            mode: Mode::Append,
        });
        let chain = HookChain::new(vec![only_orders.clone()]).unwrap();
        assert!(chain.plan(Stages::PRODUCE, "other").is_empty());
        assert!(chain.plan(Stages::FETCH, "orders").is_empty());
        let p = chain.plan(Stages::PRODUCE, "orders");
        assert!(!p.is_empty() && p.needs_records());
        assert!(!chain.wants(Stages::CONNECT));
        assert_eq!(check(vec![only_orders], "other").1, "v");
        assert!(HookChain::empty().plan(Stages::PRODUCE, "x").is_empty());
        let too_many = (0..=HOOKS_MAX).map(|_| tagger("x", Mode::Append)).collect();
        assert!(HookChain::new(too_many).is_err());
    }
}
