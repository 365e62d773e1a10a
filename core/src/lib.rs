//! petrel-core: the pure logic of Petrel.
//!
//! Everything here decides and nothing here acts: no clock, no socket, no file, no global
//! randomness. Time arrives as a `now: Millis` argument, and what must happen leaves as an action
//! the caller drains. The `tidy` test in `tests/` keeps it that way.
//!
//! The drive loop every core shares (here the NameServer's route table):
//!
//! ```
//! use petrel_core::route::{RouteTable, RouteTableConfig, RouteAction};
//! let mut table = RouteTable::new(RouteTableConfig::default());
//! let now = 1_000;
//! table.tick(now);
//! while let Some(action) = table.poll_action() {
//!     match action {
//!         RouteAction::CloseConnection(_conn) => { /* the shell closes the socket */ }
//!         RouteAction::BrokerRemoved { .. } => { /* the shell logs it */ }
//!     }
//! }
//! let _next_wake: Option<u64> = table.poll_timeout();
//! table.check_invariants();
//! ```

pub mod admin;
pub mod broker;
pub mod client;
pub mod codes;
pub mod compression;
pub mod confirm;
pub mod controller;
pub mod ha;
pub mod kv;
pub mod metrics;
pub mod model;
pub mod record;
pub mod route;
pub mod running_info;
pub mod time;

/// Milliseconds since the Unix epoch, as RocketMQ stamps everything. Cores are handed it; they
/// never read a clock.
pub type Millis = u64;
