//! Request codes, response codes and language codes of the remoting protocol, with RocketMQ's
//! numbers (`RequestCode`, `ResponseCode`, `LanguageCode`).

/// Request codes. Only the ones Petrel serves or sends are named.
pub mod request {
    pub const SEND_MESSAGE: i32 = 10;
    pub const PULL_MESSAGE: i32 = 11;
    pub const QUERY_MESSAGE: i32 = 12;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    pub const UPDATE_BROKER_CONFIG: i32 = 25;
    pub const GET_BROKER_CONFIG: i32 = 26;
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_MIN_OFFSET: i32 = 31;
    pub const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    pub const HEART_BEAT: i32 = 34;
    pub const UNREGISTER_CLIENT: i32 = 35;
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    pub const END_TRANSACTION: i32 = 37;
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    pub const LOCK_BATCH_MQ: i32 = 41;
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    pub const GET_ALL_CONSUMER_OFFSET: i32 = 43;
    pub const GET_ALL_DELAY_OFFSET: i32 = 45;
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    pub const GET_TIMER_CHECK_POINT: i32 = 60;
    pub const GET_TIMER_METRICS: i32 = 61;
    pub const POP_MESSAGE: i32 = 200050;
    pub const ACK_MESSAGE: i32 = 200051;
    pub const PEEK_MESSAGE: i32 = 200052;
    pub const CHANGE_MESSAGE_INVISIBLETIME: i32 = 200053;
    pub const NOTIFICATION: i32 = 200054;
    pub const POLLING_INFO: i32 = 200055;
    pub const BATCH_ACK_MESSAGE: i32 = 200151;
    pub const PUT_KV_CONFIG: i32 = 100;
    pub const GET_KV_CONFIG: i32 = 101;
    pub const DELETE_KV_CONFIG: i32 = 102;
    pub const REGISTER_BROKER: i32 = 103;
    pub const UNREGISTER_BROKER: i32 = 104;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;
    pub const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
    pub const GET_TOPIC_STATS_INFO: i32 = 202;
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    pub const GET_PRODUCER_CONNECTION_LIST: i32 = 204;
    pub const DELETE_SUBSCRIPTIONGROUP: i32 = 207;
    pub const GET_CONSUME_STATS: i32 = 208;
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    pub const WIPE_WRITE_PERM_OF_BROKER: i32 = 205;
    pub const DELETE_TOPIC_IN_BROKER: i32 = 215;
    pub const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
    pub const GET_KVLIST_BY_NAMESPACE: i32 = 219;
    pub const RESET_CONSUMER_CLIENT_OFFSET: i32 = 220;
    pub const INVOKE_BROKER_TO_RESET_OFFSET: i32 = 222;
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    pub const QUERY_TOPIC_CONSUME_BY_WHO: i32 = 300;
    pub const GET_SYSTEM_TOPIC_LIST_FROM_NS: i32 = 304;
    pub const GET_SYSTEM_TOPIC_LIST_FROM_BROKER: i32 = 305;
    pub const GET_CONSUMER_RUNNING_INFO: i32 = 307;
    pub const CONSUME_MESSAGE_DIRECTLY: i32 = 309;
    pub const SEND_MESSAGE_V2: i32 = 310;
    pub const CLONE_GROUP_OFFSET: i32 = 314;
    pub const VIEW_BROKER_STATS_DATA: i32 = 315;
    pub const UPDATE_NAMESRV_CONFIG: i32 = 318;
    pub const GET_NAMESRV_CONFIG: i32 = 319;
    pub const SEND_BATCH_MESSAGE: i32 = 320;
    pub const QUERY_CONSUME_QUEUE: i32 = 321;
    /// A responder's reply to a request (`MSG_TYPE=reply`), under SEND_MESSAGE's header.
    pub const SEND_REPLY_MESSAGE: i32 = 324;
    /// SEND_REPLY_MESSAGE under SEND_MESSAGE_V2's header.
    pub const SEND_REPLY_MESSAGE_V2: i32 = 325;
    /// The broker passes a reply to the client that sent the request.
    pub const PUSH_REPLY_MESSAGE_TO_CLIENT: i32 = 326;
    pub const GET_TOPIC_CONFIG: i32 = 351;
    /// A pull from Java's `DefaultLitePullConsumer` (PullSysFlag bit 0x10); served as PULL_MESSAGE.
    pub const LITE_PULL_MESSAGE: i32 = 361;
    pub const QUERY_DATA_VERSION: i32 = 322;
    pub const ADD_WRITE_PERM_OF_BROKER: i32 = 327;
    pub const DELETE_EXPIRED_COMMITLOG: i32 = 329;
    pub const BROKER_HEARTBEAT: i32 = 904;
    pub const CONTROLLER_ALTER_SYNC_STATE_SET: i32 = 1001;
    pub const CONTROLLER_ELECT_MASTER: i32 = 1002;
    pub const CONTROLLER_REGISTER_BROKER: i32 = 1003;
    pub const CONTROLLER_GET_REPLICA_INFO: i32 = 1004;
    pub const CONTROLLER_GET_METADATA_INFO: i32 = 1005;
    pub const CONTROLLER_GET_SYNC_STATE_DATA: i32 = 1006;
    pub const GET_BROKER_EPOCH_CACHE: i32 = 1007;
    pub const NOTIFY_BROKER_ROLE_CHANGED: i32 = 1008;
    pub const UPDATE_CONTROLLER_CONFIG: i32 = 1009;
    pub const GET_CONTROLLER_CONFIG: i32 = 1010;
    pub const CLEAN_BROKER_DATA: i32 = 1011;
    pub const CONTROLLER_GET_NEXT_BROKER_ID: i32 = 1012;
    pub const CONTROLLER_APPLY_BROKER_ID: i32 = 1013;
    /// Petrel's own: a raft message between controllers, oneway, the body raft-rs's protobuf
    /// encoding (RocketMQ's controllers speak DLedger instead, which Petrel does not).
    pub const PETREL_RAFT_MESSAGE: i32 = 60_001;
}

/// Response codes: kept in `petrel_core::codes`, where the broker's cores name their refusals.
pub use petrel_core::codes::response;

/// The language a peer says it is written in (`LanguageCode`). Its name travels in JSON headers
/// and its byte in binary headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LanguageCode {
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
    NodeJs,
}

const LANGUAGES: [(LanguageCode, &str, u8); 14] = [
    (LanguageCode::Java, "JAVA", 0),
    (LanguageCode::Cpp, "CPP", 1),
    (LanguageCode::Dotnet, "DOTNET", 2),
    (LanguageCode::Python, "PYTHON", 3),
    (LanguageCode::Delphi, "DELPHI", 4),
    (LanguageCode::Erlang, "ERLANG", 5),
    (LanguageCode::Ruby, "RUBY", 6),
    (LanguageCode::Other, "OTHER", 7),
    (LanguageCode::Http, "HTTP", 8),
    (LanguageCode::Go, "GO", 9),
    (LanguageCode::Php, "PHP", 10),
    (LanguageCode::Oms, "OMS", 11),
    (LanguageCode::Rust, "RUST", 12),
    (LanguageCode::NodeJs, "NODE_JS", 13),
];

impl LanguageCode {
    /// The enum name RocketMQ writes in JSON headers.
    pub fn name(self) -> &'static str {
        LANGUAGES[self as usize].1
    }

    /// The byte RocketMQ writes in binary headers.
    pub fn code(self) -> u8 {
        LANGUAGES[self as usize].2
    }

    /// Parses a JSON header's language; an unknown name is `Other`, never an error, so a
    /// newer client is still served.
    pub fn from_name(name: &str) -> LanguageCode {
        LANGUAGES.iter().find(|l| l.1 == name).map_or(LanguageCode::Other, |l| l.0)
    }

    /// Parses a binary header's language byte; unknown is `Other`.
    pub fn from_code(code: u8) -> LanguageCode {
        LANGUAGES.iter().find(|l| l.2 == code).map_or(LanguageCode::Other, |l| l.0)
    }
}

/// A name for a request code, for logs and remarks.
pub fn request_name(code: i32) -> &'static str {
    use request::*;
    match code {
        SEND_MESSAGE => "SEND_MESSAGE",
        PULL_MESSAGE => "PULL_MESSAGE",
        LITE_PULL_MESSAGE => "LITE_PULL_MESSAGE",
        SEND_REPLY_MESSAGE => "SEND_REPLY_MESSAGE",
        SEND_REPLY_MESSAGE_V2 => "SEND_REPLY_MESSAGE_V2",
        PUSH_REPLY_MESSAGE_TO_CLIENT => "PUSH_REPLY_MESSAGE_TO_CLIENT",
        QUERY_MESSAGE => "QUERY_MESSAGE",
        HEART_BEAT => "HEART_BEAT",
        PUT_KV_CONFIG => "PUT_KV_CONFIG",
        GET_KV_CONFIG => "GET_KV_CONFIG",
        DELETE_KV_CONFIG => "DELETE_KV_CONFIG",
        REGISTER_BROKER => "REGISTER_BROKER",
        UNREGISTER_BROKER => "UNREGISTER_BROKER",
        GET_ROUTEINFO_BY_TOPIC => "GET_ROUTEINFO_BY_TOPIC",
        GET_BROKER_CLUSTER_INFO => "GET_BROKER_CLUSTER_INFO",
        GET_ALL_TOPIC_LIST_FROM_NAMESERVER => "GET_ALL_TOPIC_LIST_FROM_NAMESERVER",
        DELETE_TOPIC_IN_NAMESRV => "DELETE_TOPIC_IN_NAMESRV",
        GET_KVLIST_BY_NAMESPACE => "GET_KVLIST_BY_NAMESPACE",
        RESET_CONSUMER_CLIENT_OFFSET => "RESET_CONSUMER_CLIENT_OFFSET",
        INVOKE_BROKER_TO_RESET_OFFSET => "INVOKE_BROKER_TO_RESET_OFFSET",
        GET_TOPICS_BY_CLUSTER => "GET_TOPICS_BY_CLUSTER",
        GET_ALL_TOPIC_CONFIG => "GET_ALL_TOPIC_CONFIG",
        GET_ALL_CONSUMER_OFFSET => "GET_ALL_CONSUMER_OFFSET",
        GET_ALL_DELAY_OFFSET => "GET_ALL_DELAY_OFFSET",
        CHECK_CLIENT_CONFIG => "CHECK_CLIENT_CONFIG",
        GET_TIMER_CHECK_POINT => "GET_TIMER_CHECK_POINT",
        GET_TIMER_METRICS => "GET_TIMER_METRICS",
        POP_MESSAGE => "POP_MESSAGE",
        ACK_MESSAGE => "ACK_MESSAGE",
        PEEK_MESSAGE => "PEEK_MESSAGE",
        CHANGE_MESSAGE_INVISIBLETIME => "CHANGE_MESSAGE_INVISIBLETIME",
        NOTIFICATION => "NOTIFICATION",
        POLLING_INFO => "POLLING_INFO",
        BATCH_ACK_MESSAGE => "BATCH_ACK_MESSAGE",
        LOCK_BATCH_MQ => "LOCK_BATCH_MQ",
        UNLOCK_BATCH_MQ => "UNLOCK_BATCH_MQ",
        GET_ALL_SUBSCRIPTIONGROUP_CONFIG => "GET_ALL_SUBSCRIPTIONGROUP_CONFIG",
        UPDATE_BROKER_CONFIG => "UPDATE_BROKER_CONFIG",
        GET_BROKER_CONFIG => "GET_BROKER_CONFIG",
        GET_TOPIC_STATS_INFO => "GET_TOPIC_STATS_INFO",
        GET_TOPIC_CONFIG => "GET_TOPIC_CONFIG",
        GET_CONSUMER_CONNECTION_LIST => "GET_CONSUMER_CONNECTION_LIST",
        GET_PRODUCER_CONNECTION_LIST => "GET_PRODUCER_CONNECTION_LIST",
        DELETE_SUBSCRIPTIONGROUP => "DELETE_SUBSCRIPTIONGROUP",
        GET_CONSUME_STATS => "GET_CONSUME_STATS",
        QUERY_TOPIC_CONSUME_BY_WHO => "QUERY_TOPIC_CONSUME_BY_WHO",
        GET_SYSTEM_TOPIC_LIST_FROM_NS => "GET_SYSTEM_TOPIC_LIST_FROM_NS",
        GET_SYSTEM_TOPIC_LIST_FROM_BROKER => "GET_SYSTEM_TOPIC_LIST_FROM_BROKER",
        GET_CONSUMER_RUNNING_INFO => "GET_CONSUMER_RUNNING_INFO",
        CONSUME_MESSAGE_DIRECTLY => "CONSUME_MESSAGE_DIRECTLY",
        UPDATE_NAMESRV_CONFIG => "UPDATE_NAMESRV_CONFIG",
        GET_NAMESRV_CONFIG => "GET_NAMESRV_CONFIG",
        CLONE_GROUP_OFFSET => "CLONE_GROUP_OFFSET",
        VIEW_BROKER_STATS_DATA => "VIEW_BROKER_STATS_DATA",
        SEND_MESSAGE_V2 => "SEND_MESSAGE_V2",
        SEND_BATCH_MESSAGE => "SEND_BATCH_MESSAGE",
        QUERY_CONSUME_QUEUE => "QUERY_CONSUME_QUEUE",
        QUERY_DATA_VERSION => "QUERY_DATA_VERSION",
        BROKER_HEARTBEAT => "BROKER_HEARTBEAT",
        DELETE_EXPIRED_COMMITLOG => "DELETE_EXPIRED_COMMITLOG",
        CONTROLLER_ALTER_SYNC_STATE_SET => "CONTROLLER_ALTER_SYNC_STATE_SET",
        CONTROLLER_ELECT_MASTER => "CONTROLLER_ELECT_MASTER",
        CONTROLLER_REGISTER_BROKER => "CONTROLLER_REGISTER_BROKER",
        CONTROLLER_GET_REPLICA_INFO => "CONTROLLER_GET_REPLICA_INFO",
        CONTROLLER_GET_METADATA_INFO => "CONTROLLER_GET_METADATA_INFO",
        CONTROLLER_GET_SYNC_STATE_DATA => "CONTROLLER_GET_SYNC_STATE_DATA",
        GET_BROKER_EPOCH_CACHE => "GET_BROKER_EPOCH_CACHE",
        NOTIFY_BROKER_ROLE_CHANGED => "NOTIFY_BROKER_ROLE_CHANGED",
        UPDATE_CONTROLLER_CONFIG => "UPDATE_CONTROLLER_CONFIG",
        GET_CONTROLLER_CONFIG => "GET_CONTROLLER_CONFIG",
        CLEAN_BROKER_DATA => "CLEAN_BROKER_DATA",
        CONTROLLER_GET_NEXT_BROKER_ID => "CONTROLLER_GET_NEXT_BROKER_ID",
        CONTROLLER_APPLY_BROKER_ID => "CONTROLLER_APPLY_BROKER_ID",
        PETREL_RAFT_MESSAGE => "PETREL_RAFT_MESSAGE",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_table_is_indexed_by_variant() {
        for (i, (lang, name, code)) in LANGUAGES.iter().enumerate() {
            assert_eq!(*lang as usize, i);
            assert_eq!(lang.name(), *name);
            assert_eq!(LanguageCode::from_code(*code), *lang);
            assert_eq!(LanguageCode::from_name(name), *lang);
        }
        assert_eq!(LanguageCode::from_name("COBOL"), LanguageCode::Other);
    }
}
