//! petrel-storage: the broker's store in RocketMQ's on-disk formats.
//!
//! Empty until the store lands (issue 3); the crate exists now so the workspace's dependency
//! graph (`storage` on `core`, the services on `storage`) is fixed from the start.
