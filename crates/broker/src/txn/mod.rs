//! Transactions (KIP-98 and later): the records of `__transaction_state` ([`records`]).
//!
//! Nothing in the broker uses this module yet, so outside tests its items are allowed to
//! be unused.
#![cfg_attr(not(test), allow(dead_code))]

pub mod records;
