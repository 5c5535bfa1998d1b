//! The `rafka` binary as a spawned process: flags and config errors, signals, the client
//! commands (`rafka produce`, `consume`, `bench`, ...), the quickstart example, SIGKILL
//! crash recovery and crash torture, and load limits measured on the broker's own process.
//! One test binary, one module per topic.

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/mod.rs"]
mod support;

mod binary;
mod cli;
mod cli_security;
mod crash_torture;
mod diskless;
mod eos_pipeline;
mod load_limits;
mod open_files;
mod rdkafka_crash;
