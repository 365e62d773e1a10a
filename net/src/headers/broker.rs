//! Headers of the broker's requests (RocketMQ `protocol/header`). The inherited `ns`, `nsd`,
//! `bname`, `oway` and `lo` fields of RocketMQ's base classes are left out: Petrel has no
//! namespaces or logical queues yet, and ignores them as RocketMQ's V2 decoder does.

use crate::command_header;

command_header! {
    /// SEND_MESSAGE (10). The body is the message payload.
    pub struct SendMessageRequestHeader {
        required producer_group: String = "producerGroup",
        required topic: String = "topic",
        required default_topic: String = "defaultTopic",
        required default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        required queue_id: i32 = "queueId",
        required sys_flag: i32 = "sysFlag",
        required born_timestamp: i64 = "bornTimestamp",
        required flag: i32 = "flag",
        optional properties: String = "properties",
        optional reconsume_times: i32 = "reconsumeTimes",
        optional unit_mode: bool = "unitMode",
        optional batch: bool = "batch",
        optional max_reconsume_times: i32 = "maxReconsumeTimes",
        optional broker_name: String = "bname",
    }
}

command_header! {
    /// PUSH_REPLY_MESSAGE_TO_CLIENT (326): a reply the broker passes to the client that sent
    /// the request (`ReplyMessageRequestHeader`): SEND_MESSAGE's fields as the responder sent
    /// them, and where and when the broker took the reply. The body is the reply's body.
    pub struct ReplyMessageRequestHeader {
        required producer_group: String = "producerGroup",
        required topic: String = "topic",
        required default_topic: String = "defaultTopic",
        required default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        required queue_id: i32 = "queueId",
        required sys_flag: i32 = "sysFlag",
        required born_timestamp: i64 = "bornTimestamp",
        required flag: i32 = "flag",
        optional properties: String = "properties",
        optional reconsume_times: i32 = "reconsumeTimes",
        optional unit_mode: bool = "unitMode",
        required born_host: String = "bornHost",
        required store_host: String = "storeHost",
        required store_timestamp: i64 = "storeTimestamp",
    }
}

command_header! {
    /// SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320): SEND_MESSAGE's fields under one-letter
    /// names, which is what the Java client sends by default.
    pub struct SendMessageRequestHeaderV2 {
        required a: String = "a",
        required b: String = "b",
        required c: String = "c",
        required d: i32 = "d",
        required e: i32 = "e",
        required f: i32 = "f",
        required g: i64 = "g",
        required h: i32 = "h",
        optional i: String = "i",
        optional j: i32 = "j",
        optional k: bool = "k",
        optional l: i32 = "l",
        optional m: bool = "m",
        optional n: String = "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> Self {
        SendMessageRequestHeader {
            producer_group: v2.a,
            topic: v2.b,
            default_topic: v2.c,
            default_topic_queue_nums: v2.d,
            queue_id: v2.e,
            sys_flag: v2.f,
            born_timestamp: v2.g,
            flag: v2.h,
            properties: v2.i,
            reconsume_times: v2.j,
            unit_mode: v2.k,
            max_reconsume_times: v2.l,
            batch: v2.m,
            broker_name: v2.n,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v1: SendMessageRequestHeader) -> Self {
        SendMessageRequestHeaderV2 {
            a: v1.producer_group,
            b: v1.topic,
            c: v1.default_topic,
            d: v1.default_topic_queue_nums,
            e: v1.queue_id,
            f: v1.sys_flag,
            g: v1.born_timestamp,
            h: v1.flag,
            i: v1.properties,
            j: v1.reconsume_times,
            k: v1.unit_mode,
            l: v1.max_reconsume_times,
            m: v1.batch,
            n: v1.broker_name,
        }
    }
}

command_header! {
    /// The answer to a send.
    pub struct SendMessageResponseHeader {
        required msg_id: String = "msgId",
        required queue_id: i32 = "queueId",
        required queue_offset: i64 = "queueOffset",
        optional transaction_id: String = "transactionId",
        optional batch_uniq_id: String = "batchUniqId",
    }
}

/// The bits of a pull's `sysFlag` (RocketMQ's `PullSysFlag`).
pub mod pull_sys_flag {
    /// The pull carries the group's offset to commit.
    pub const COMMIT_OFFSET: i32 = 0x1;
    /// The broker may hold the pull while nothing is new.
    pub const SUSPEND: i32 = 0x2;
    /// The pull carries its subscription.
    pub const SUBSCRIPTION: i32 = 0x4;
    /// The subscription is a class filter.
    pub const CLASS_FILTER: i32 = 0x8;
    /// A lite pull consumer's pull (sent as LITE_PULL_MESSAGE).
    pub const LITE: i32 = 0x10;
}

command_header! {
    /// PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361); `sys_flag` holds [`pull_sys_flag`] bits.
    pub struct PullMessageRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required queue_offset: i64 = "queueOffset",
        required max_msg_nums: i32 = "maxMsgNums",
        required sys_flag: i32 = "sysFlag",
        required commit_offset: i64 = "commitOffset",
        required suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        optional subscription: String = "subscription",
        required sub_version: i64 = "subVersion",
        optional expression_type: String = "expressionType",
        optional max_msg_bytes: i32 = "maxMsgBytes",
    }
}

command_header! {
    /// The answer to PULL_MESSAGE; the body holds the commit-log records.
    pub struct PullMessageResponseHeader {
        required suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        required next_begin_offset: i64 = "nextBeginOffset",
        required min_offset: i64 = "minOffset",
        required max_offset: i64 = "maxOffset",
        optional offset_delta: i64 = "offsetDelta",
        optional topic_sys_flag: i32 = "topicSysFlag",
        optional group_sys_flag: i32 = "groupSysFlag",
        optional forbidden_type: i32 = "forbiddenType",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        optional set_zero_if_not_found: bool = "setZeroIfNotFound",
    }
}

command_header! {
    /// UPDATE_CONSUMER_OFFSET (15).
    pub struct UpdateConsumerOffsetRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required commit_offset: i64 = "commitOffset",
    }
}

command_header! {
    /// GET_MIN_OFFSET (31) and GET_EARLIEST_MSG_STORETIME (32).
    pub struct TopicQueueRequestHeader {
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
    }
}

command_header! {
    /// GET_MAX_OFFSET (30). `committed` defaults to true in RocketMQ.
    pub struct GetMaxOffsetRequestHeader {
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        optional committed: bool = "committed",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29). `boundaryType` is "LOWER" (default) or "UPPER".
    pub struct SearchOffsetRequestHeader {
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required timestamp: i64 = "timestamp",
        optional boundary_type: String = "boundaryType",
    }
}

command_header! {
    /// The answer to QUERY_CONSUMER_OFFSET, GET_MAX/MIN_OFFSET and SEARCH_OFFSET_BY_TIMESTAMP.
    pub struct OffsetResponseHeader {
        required offset: i64 = "offset",
    }
}

command_header! {
    /// The answer to GET_EARLIEST_MSG_STORETIME.
    pub struct TimestampResponseHeader {
        required timestamp: i64 = "timestamp",
    }
}

command_header! {
    /// QUERY_MESSAGE (12): messages of `topic` with `key`, stored within the time range.
    pub struct QueryMessageRequestHeader {
        required topic: String = "topic",
        required key: String = "key",
        required max_num: i32 = "maxNum",
        required begin_timestamp: i64 = "beginTimestamp",
        required end_timestamp: i64 = "endTimestamp",
    }
}

command_header! {
    /// The answer to QUERY_MESSAGE.
    pub struct QueryMessageResponseHeader {
        required index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        required index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

command_header! {
    /// VIEW_MESSAGE_BY_ID (33): the record at a commit-log offset.
    pub struct ViewMessageRequestHeader {
        optional topic: String = "topic",
        required offset: i64 = "offset",
    }
}

command_header! {
    /// UPDATE_AND_CREATE_TOPIC (17). `topicFilterType` is SINGLE_TAG or MULTI_TAG.
    pub struct CreateTopicRequestHeader {
        required topic: String = "topic",
        required default_topic: String = "defaultTopic",
        required read_queue_nums: i32 = "readQueueNums",
        required write_queue_nums: i32 = "writeQueueNums",
        required perm: i32 = "perm",
        required topic_filter_type: String = "topicFilterType",
        optional topic_sys_flag: i32 = "topicSysFlag",
        optional order: bool = "order",
        optional attributes: String = "attributes",
        optional force: bool = "force",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_BROKER (215).
    pub struct DeleteTopicRequestHeader {
        required topic: String = "topic",
    }
}

command_header! {
    /// CONSUMER_SEND_MSG_BACK (36): a consumer gives a message back for a later retry.
    pub struct ConsumerSendMsgBackRequestHeader {
        required offset: i64 = "offset",
        required group: String = "group",
        required delay_level: i32 = "delayLevel",
        optional origin_msg_id: String = "originMsgId",
        optional origin_topic: String = "originTopic",
        optional unit_mode: bool = "unitMode",
        optional max_reconsume_times: i32 = "maxReconsumeTimes",
    }
}

command_header! {
    /// UNREGISTER_CLIENT (35).
    pub struct UnregisterClientRequestHeader {
        required client_id: String = "clientID",
        optional producer_group: String = "producerGroup",
        optional consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38) and NOTIFY_CONSUMER_IDS_CHANGED (40, broker to client).
    pub struct ConsumerGroupRequestHeader {
        required consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// END_TRANSACTION (37). `commitOrRollback`: 0 unknown, 8 commit, 12 rollback.
    pub struct EndTransactionRequestHeader {
        optional topic: String = "topic",
        required producer_group: String = "producerGroup",
        required tran_state_table_offset: i64 = "tranStateTableOffset",
        required commit_log_offset: i64 = "commitLogOffset",
        required commit_or_rollback: i32 = "commitOrRollback",
        optional from_transaction_check: bool = "fromTransactionCheck",
        required msg_id: String = "msgId",
        optional transaction_id: String = "transactionId",
    }
}

command_header! {
    /// CHECK_TRANSACTION_STATE (39, broker to producer, oneway); the body is the half message.
    pub struct CheckTransactionStateRequestHeader {
        optional topic: String = "topic",
        required tran_state_table_offset: i64 = "tranStateTableOffset",
        required commit_log_offset: i64 = "commitLogOffset",
        optional msg_id: String = "msgId",
        optional transaction_id: String = "transactionId",
        optional offset_msg_id: String = "offsetMsgId",
    }
}

command_header! {
    /// POP_MESSAGE (200050). `queueId` -1: every queue; `initMode` 0 from the first message,
    /// 1 from the last; `bornTime` is the client's send time (ms).
    pub struct PopMessageRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required max_msg_nums: i32 = "maxMsgNums",
        required invisible_time: i64 = "invisibleTime",
        required poll_time: i64 = "pollTime",
        optional born_time: i64 = "bornTime",
        required init_mode: i32 = "initMode",
        optional exp_type: String = "expType",
        optional exp: String = "exp",
        optional order: bool = "order",
        optional attempt_id: String = "attemptId",
    }
}

command_header! {
    /// The answer to POP_MESSAGE (and to PEEK_MESSAGE, with only `restNum`).
    pub struct PopMessageResponseHeader {
        required pop_time: i64 = "popTime",
        required invisible_time: i64 = "invisibleTime",
        required revive_qid: i32 = "reviveQid",
        required rest_num: i64 = "restNum",
        optional start_offset_info: String = "startOffsetInfo",
        optional msg_offset_info: String = "msgOffsetInfo",
        optional order_count_info: String = "orderCountInfo",
    }
}

command_header! {
    /// ACK_MESSAGE (200051): `topic` is where the message is (a pop retry topic when it came
    /// from one), `extraInfo` its handle.
    pub struct AckMessageRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required extra_info: String = "extraInfo",
        required offset: i64 = "offset",
    }
}

command_header! {
    /// CHANGE_MESSAGE_INVISIBLETIME (200053): ACK_MESSAGE's fields and the new invisible time,
    /// counted from now.
    pub struct ChangeInvisibleTimeRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required extra_info: String = "extraInfo",
        required offset: i64 = "offset",
        required invisible_time: i64 = "invisibleTime",
    }
}

command_header! {
    /// The answer to CHANGE_MESSAGE_INVISIBLETIME: the message's new handle is
    /// `offset popTime invisibleTime reviveQid retry brokerName queueId offset`.
    pub struct ChangeInvisibleTimeResponseHeader {
        required pop_time: i64 = "popTime",
        required invisible_time: i64 = "invisibleTime",
        required revive_qid: i32 = "reviveQid",
    }
}

command_header! {
    /// PEEK_MESSAGE (200052): messages a pop would hand out, handed out to no one.
    pub struct PeekMessageRequestHeader {
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required max_msg_nums: i32 = "maxMsgNums",
        required consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// NOTIFICATION (200054): whether a pop would find something, held up to `pollTime`.
    pub struct NotificationRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required poll_time: i64 = "pollTime",
        optional born_time: i64 = "bornTime",
        optional order: bool = "order",
        optional attempt_id: String = "attemptId",
    }
}

command_header! {
    /// The answer to NOTIFICATION.
    pub struct NotificationResponseHeader {
        required has_msg: bool = "hasMsg",
        required polling_full: bool = "pollingFull",
    }
}

command_header! {
    /// POLLING_INFO (200055): how many pops of the group are held for the queue (-1: every
    /// queue).
    pub struct PollingInfoRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
    }
}

command_header! {
    /// The answer to POLLING_INFO.
    pub struct PollingInfoResponseHeader {
        required polling_num: i32 = "pollingNum",
    }
}

command_header! {
    /// GET_TOPIC_STATS_INFO (202), QUERY_TOPIC_CONSUME_BY_WHO (300) and GET_TOPIC_CONFIG (351).
    pub struct TopicRequestHeader {
        required topic: String = "topic",
    }
}

command_header! {
    /// GET_CONSUMER_RUNNING_INFO (307): an admin asks the broker, which asks the member
    /// `client_id` of `consumer_group` over its own connection.
    pub struct GetConsumerRunningInfoRequestHeader {
        required consumer_group: String = "consumerGroup",
        required client_id: String = "clientId",
        optional jstack_enable: bool = "jstackEnable",
    }
}

command_header! {
    /// CONSUME_MESSAGE_DIRECTLY (309): an admin asks the broker holding a message (by its
    /// offset message id) to have the member `client_id` of `consumer_group` consume it now;
    /// the broker adds its name and the topic's and group's flags and passes it on with the
    /// record as the body (mqadmin queryMsgById -g -d, the dashboard's resend).
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        required consumer_group: String = "consumerGroup",
        optional client_id: String = "clientId",
        optional msg_id: String = "msgId",
        optional broker_name: String = "brokerName",
        optional topic: String = "topic",
        optional topic_sys_flag: i32 = "topicSysFlag",
        optional group_sys_flag: i32 = "groupSysFlag",
    }
}

command_header! {
    /// QUERY_CONSUME_QUEUE (321): `count` units of a consume queue from `index`, and with a
    /// group, its subscription of the topic.
    pub struct QueryConsumeQueueRequestHeader {
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required index: i64 = "index",
        required count: i32 = "count",
        optional consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// GET_PRODUCER_CONNECTION_LIST (204).
    pub struct ProducerGroupRequestHeader {
        required producer_group: String = "producerGroup",
    }
}

command_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207). `cleanOffset`: also forget the group's committed offsets.
    pub struct DeleteSubscriptionGroupRequestHeader {
        required group_name: String = "groupName",
        optional clean_offset: bool = "cleanOffset",
    }
}

command_header! {
    /// GET_CONSUME_STATS (208): one topic of the group, or (no topic) every topic it has
    /// offsets for. `topicList` (several topics, each followed by `;`) is RocketMQ 5.3's.
    pub struct GetConsumeStatsRequestHeader {
        required consumer_group: String = "consumerGroup",
        optional topic: String = "topic",
        optional topic_list: String = "topicList",
    }
}

command_header! {
    /// The answer to GET_BROKER_CONFIG: the broker's DataVersion as JSON.
    pub struct GetBrokerConfigResponseHeader {
        optional version: String = "version",
    }
}

command_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222): `group`'s offsets of `topic` moved to where
    /// `timestamp` falls in each queue (the queue's end for a negative one), or, for one
    /// `queueId` (-1: every queue), to `offset`. `isForce` is RocketMQ 4's (move forward too).
    pub struct ResetOffsetRequestHeader {
        required group: String = "group",
        required topic: String = "topic",
        optional queue_id: i32 = "queueId",
        optional offset: i64 = "offset",
        required timestamp: i64 = "timestamp",
        required is_force: bool = "isForce",
    }
}

command_header! {
    /// VIEW_BROKER_STATS_DATA (315): one of the broker's stats items (`TOPIC_PUT_NUMS` by
    /// topic, `GROUP_GET_NUMS` by `topic@group`, ...).
    pub struct ViewBrokerStatsDataRequestHeader {
        required stats_name: String = "statsName",
        required stats_key: String = "statsKey",
    }
}

command_header! {
    /// CLONE_GROUP_OFFSET (314): `destGroup` takes `srcGroup`'s committed offsets of `topic`
    /// (every topic `srcGroup` committed for, without one).
    pub struct CloneGroupOffsetRequestHeader {
        required src_group: String = "srcGroup",
        required dest_group: String = "destGroup",
        optional topic: String = "topic",
        optional offline: bool = "offline",
    }
}
