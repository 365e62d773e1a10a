//! Typed headers of the requests Petrel serves and sends, grouped by who serves them. Field
//! names are RocketMQ's Java field names; `required` marks its `@CFNotNull` fields.

pub mod broker;
pub mod controller;
pub mod namesrv;
