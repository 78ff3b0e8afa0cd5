//! The reliability suite: crashes, broker faults and restarts, network faults, a full disk, load,
//! shutdown and bad input on every driver, with real worker processes. Run by the `reliability` binary; see [`run`].

mod disk_full;
mod drivers;
mod failover;
mod faults;
mod hosts;
pub mod link;
mod netns;
mod network;
pub mod private;
mod processes;
mod report;
mod restarts;
mod scenarios;
pub mod soak;

pub use drivers::Target;
pub use processes::worker_main;
pub use report::{Row, print_table};
pub use scenarios::{producer_main, run_all};

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Jobs in the crash and load scenarios.
    pub jobs: u64,
    /// Worker kills in the crash scenario.
    pub kills: u32,
    /// Connection drops in the broker-fault scenario.
    pub faults: u32,
    /// How long the network scenario cuts a worker off its broker.
    pub partition: std::time::Duration,
}

impl Size {
    /// The CI-friendly default.
    pub const DEFAULT: Size = Size {
        jobs: 2_000,
        kills: 5,
        faults: 5,
        partition: std::time::Duration::from_secs(5),
    };
    /// `--long`.
    pub const LONG: Size = Size {
        jobs: 20_000,
        kills: 25,
        faults: 25,
        partition: std::time::Duration::from_secs(30),
    };
}
