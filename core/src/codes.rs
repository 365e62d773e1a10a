//! RocketMQ's response codes (`ResponseCode`, `RemotingSysResponseCode`): the cores name
//! their refusals with them, and the remoting codec (`petrel_net::codec::codes`) re-exports
//! them for the shells.

/// Response codes (`ResponseCode` and `RemotingSysResponseCode`).
pub mod response {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const SYSTEM_BUSY: i32 = 2;
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    pub const TRANSACTION_FAILED: i32 = 4;
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const VERSION_NOT_SUPPORTED: i32 = 15;
    pub const NO_PERMISSION: i32 = 16;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const TOPIC_EXIST_ALREADY: i32 = 18;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const QUERY_NOT_FOUND: i32 = 22;
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    pub const SUBSCRIPTION_NOT_EXIST: i32 = 24;
    pub const SUBSCRIPTION_NOT_LATEST: i32 = 25;
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
    /// A pull filtered by its group's registered SQL92 expression, and there is none.
    pub const FILTER_DATA_NOT_EXIST: i32 = 27;
    /// ...or it is older than the subscription version the pull names.
    pub const FILTER_DATA_NOT_LATEST: i32 = 28;
    pub const INVALID_PARAMETER: i32 = 29;
    /// GET_CONSUMER_CONNECTION_LIST for a group with no live member.
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
    /// A consumer the broker asked on an admin's behalf did not answer in time.
    pub const CONSUME_MSG_TIMEOUT: i32 = 207;
    /// ACK_MESSAGE or CHANGE_MESSAGE_INVISIBLETIME naming an offset outside its queue.
    pub const NO_MESSAGE: i32 = 208;
    /// POP_MESSAGE found nothing and may not be held: too many held already.
    pub const POLLING_FULL: i32 = 209;
    /// POP_MESSAGE found nothing within its poll time.
    pub const POLLING_TIMEOUT: i32 = 210;
    /// END_TRANSACTION from a producer past its message's check-immunity time.
    pub const ILLEGAL_OPERATION: i32 = 604;
}

/// The name RocketMQ gives `code`, for logs and golden files.
pub fn response_name(code: i32) -> &'static str {
    use response::*;
    match code {
        SUCCESS => "SUCCESS",
        SYSTEM_ERROR => "SYSTEM_ERROR",
        SYSTEM_BUSY => "SYSTEM_BUSY",
        REQUEST_CODE_NOT_SUPPORTED => "REQUEST_CODE_NOT_SUPPORTED",
        TRANSACTION_FAILED => "TRANSACTION_FAILED",
        FLUSH_DISK_TIMEOUT => "FLUSH_DISK_TIMEOUT",
        SLAVE_NOT_AVAILABLE => "SLAVE_NOT_AVAILABLE",
        FLUSH_SLAVE_TIMEOUT => "FLUSH_SLAVE_TIMEOUT",
        MESSAGE_ILLEGAL => "MESSAGE_ILLEGAL",
        SERVICE_NOT_AVAILABLE => "SERVICE_NOT_AVAILABLE",
        VERSION_NOT_SUPPORTED => "VERSION_NOT_SUPPORTED",
        NO_PERMISSION => "NO_PERMISSION",
        TOPIC_NOT_EXIST => "TOPIC_NOT_EXIST",
        TOPIC_EXIST_ALREADY => "TOPIC_EXIST_ALREADY",
        PULL_NOT_FOUND => "PULL_NOT_FOUND",
        PULL_RETRY_IMMEDIATELY => "PULL_RETRY_IMMEDIATELY",
        PULL_OFFSET_MOVED => "PULL_OFFSET_MOVED",
        QUERY_NOT_FOUND => "QUERY_NOT_FOUND",
        SUBSCRIPTION_PARSE_FAILED => "SUBSCRIPTION_PARSE_FAILED",
        SUBSCRIPTION_NOT_EXIST => "SUBSCRIPTION_NOT_EXIST",
        SUBSCRIPTION_NOT_LATEST => "SUBSCRIPTION_NOT_LATEST",
        SUBSCRIPTION_GROUP_NOT_EXIST => "SUBSCRIPTION_GROUP_NOT_EXIST",
        FILTER_DATA_NOT_EXIST => "FILTER_DATA_NOT_EXIST",
        FILTER_DATA_NOT_LATEST => "FILTER_DATA_NOT_LATEST",
        INVALID_PARAMETER => "INVALID_PARAMETER",
        CONSUMER_NOT_ONLINE => "CONSUMER_NOT_ONLINE",
        CONSUME_MSG_TIMEOUT => "CONSUME_MSG_TIMEOUT",
        NO_MESSAGE => "NO_MESSAGE",
        POLLING_FULL => "POLLING_FULL",
        POLLING_TIMEOUT => "POLLING_TIMEOUT",
        ILLEGAL_OPERATION => "ILLEGAL_OPERATION",
        _ => "UNKNOWN",
    }
}
