//! Replication on RocketMQ's classic HA protocol (`docs/replication.md`): the frames, and a pure
//! core for each side of the connection.
//!
//! - [`codec`]: the slave's 8-byte offset report and the master's `offset | size | data` frame,
//!   with stream decoders that bound every length before buffering it.
//! - [`master`]: per connected slave, where its next transfer starts, how far it has the log,
//!   and when to send a heartbeat or give the connection up.
//! - [`slave`]: checks the bytes it receives record by record and hands whole, verified records
//!   to the store; reports how far it has the log.
//! - [`autoswitch`]: the AutoSwitch (controller mode) frames: the handshake, and reports and
//!   transfers that name their state and epoch.
//! - [`epoch`]: where each master epoch begins in the log (the `epochFileCheckpoint` file and
//!   the AutoSwitch handshake's entries), and the consistent point of two logs
//!   (`docs/failover.md`).
//!
//! `bin/src/broker/ha.rs` runs them: one `HaMaster` per connected slave, one `HaSlave` per
//! connection to the master.

pub mod autoswitch;
pub mod codec;
pub mod epoch;
pub mod master;
pub mod slave;

use crate::Millis;

/// RocketMQ's `haSendHeartbeatInterval`: the longest either side stays silent.
pub const HEARTBEAT_INTERVAL_DEFAULT_MS: Millis = 5_000;

/// RocketMQ's `haHousekeepingInterval`: a connection with nothing read for this long is closed.
pub const HOUSEKEEPING_INTERVAL_DEFAULT_MS: Millis = 20_000;

/// RocketMQ's `haTransferBatchSize`: the most data one frame carries.
pub const TRANSFER_BATCH_DEFAULT_BYTES: u32 = 32 * 1024;
