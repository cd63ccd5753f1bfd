//! The one integration-test binary (one link step). Each module covers one feature.

mod harness;

// The binary's command-line modules, compiled here too: their unit tests run in this one
// test binary, and `generated` renders man pages and completions from `cli`'s definition.
#[allow(dead_code, unreachable_pub)]
#[path = "../src/cli.rs"]
mod cli;
#[allow(dead_code, unreachable_pub)]
#[path = "../src/flock.rs"]
mod flock;

mod bed;
mod code_shape;
mod etcd;
mod etcd_production;
mod exclusion;
mod exit_status;
mod faults;
mod flock_compat;
mod generated;
mod hostile_input;
mod interop;
mod jobs;
mod load;
mod nested;
mod nfs_bed;
mod parsers;
mod pki;
mod postgres;
mod read_write;
mod real_nfs;
mod redis;
mod replaced_lock;
mod semaphores;
mod shared_fs;
mod soft;
mod soft_rw;
mod status;
mod supervision;
mod terminal;
mod version;
