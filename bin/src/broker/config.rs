//! `broker.conf`: RocketMQ's `BrokerConfig`, `NettyServerConfig` and `MessageStoreConfig`
//! property names and defaults, for the ones Petrel acts on.

use std::path::PathBuf;

use petrel_core::broker::clients::CHANNEL_EXPIRED_DEFAULT_MS;
use petrel_core::broker::timer::TimerSettings;
use petrel_core::model::perm;
use petrel_net::transport::ServerConfig;
use petrel_storage::{FlushDiskType, StoreConfig};

use crate::config::{ConfigError, Properties};

/// Everything a broker is told.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `brokerClusterName`: DefaultCluster.
    pub cluster_name: String,
    /// `brokerName`: RocketMQ defaults to the host name; Petrel to `broker-a`.
    pub broker_name: String,
    /// `brokerId`: 0 is the master; a slave's is 1 or more. A master role sets it to 0.
    pub broker_id: i64,
    /// `brokerRole`: ASYNC_MASTER, SYNC_MASTER or SLAVE.
    pub role: BrokerRole,
    /// `haListenPort`: the port slaves connect to; `listenPort + 1` when unset, 0 for any.
    pub ha_listen_port: Option<u16>,
    /// `haMasterAddress`: a slave's master's HA address; learned from the NameServer's answer
    /// to its registration when unset.
    pub ha_master_address: Option<String>,
    /// `haSendHeartbeatInterval`, `haHousekeepingInterval`, `haTransferBatchSize`.
    pub ha_heartbeat_ms: u64,
    pub ha_housekeeping_ms: u64,
    pub ha_transfer_batch_bytes: u32,
    /// `haMaxGapNotInSync`: a SYNC_MASTER whose furthest slave is this far behind answers
    /// SLAVE_NOT_AVAILABLE rather than wait for it.
    pub ha_max_gap_bytes: u64,
    /// `slaveReadEnable`: a slave serves pulls (refused with SYSTEM_BUSY when false), and
    /// answers suggest the slave to consumers that fall behind.
    pub slave_read_enable: bool,
    /// `accessMessageInMemoryMaxRatio`: a pull further behind the end of the commit log than
    /// this percentage of `memory_bytes` is told to read from a slave (with slave reads on).
    pub in_memory_ratio: u8,
    /// The machine's physical memory, read from `/proc/meminfo` (RocketMQ's
    /// `TOTAL_PHYSICAL_MEMORY_SIZE`); fixed at 16 GiB in the simulator.
    pub memory_bytes: u64,
    /// `offsetCheckInSlave`: a slave corrects consumers' out-of-range offsets as a master does.
    pub offset_check_in_slave: bool,
    /// `useServerSideResetOffset`: an operator's reset moves the group's offsets on the broker
    /// (true, RocketMQ 5's default); false sends the moved offsets to the group's members
    /// (RESET_CONSUMER_CLIENT_OFFSET), which move and commit them, as RocketMQ 4 did.
    pub server_side_reset: bool,
    /// `namesrvAddr`: `;`-separated; the `NAMESRV_ADDR` environment variable when unset.
    pub namesrv_addrs: Vec<String>,
    /// `listenPort`: 10911.
    pub listen_port: u16,
    /// `bindAddress`: 0.0.0.0.
    pub bind_address: String,
    /// `brokerIP1`: the address clients are told to use; detected when unset.
    pub broker_ip: Option<String>,
    /// `autoCreateTopicEnable`: sends to unknown topics create them from TBW102.
    pub auto_create_topic: bool,
    /// `autoCreateSubscriptionGroup`: unknown consumer groups are admitted and created.
    pub auto_create_group: bool,
    /// `defaultTopicQueueNums`: queues of TBW102 (and so of auto-created topics).
    pub default_topic_queue_nums: i32,
    /// `brokerPermission`: 6 (read and write).
    pub broker_permission: i32,
    /// `longPollingEnable`: hold pulls that find nothing for `suspendTimeoutMillis`...
    pub long_polling: bool,
    /// `enablePropertyFilter`: consumers may subscribe with SQL92 (false, as in RocketMQ).
    pub property_filter: bool,
    /// `litePullMessageEnable`: LITE_PULL_MESSAGE is served (true, as in RocketMQ).
    pub lite_pull: bool,
    /// `storeReplyMessageEnable`: a reply is stored in the reply topic too, besides being
    /// passed to its requester (true, as in RocketMQ).
    pub store_reply: bool,
    /// `shortPollingTimeMills`: ...or for this long when long polling is off.
    pub short_polling_ms: u64,
    /// `registerNameServerPeriod`: 30 s.
    pub register_period_ms: u64,
    /// `registerBrokerTimeoutMills`.
    pub register_timeout_ms: u64,
    /// `channelExpiredTimeout`: clients silent for this long are dropped.
    pub channel_expired_ms: u64,
    /// `flushConsumerOffsetInterval`: consumer offsets are written this often.
    pub flush_offsets_interval_ms: u64,
    /// `flushDelayOffsetInterval`: the delay cursors are written this often.
    pub flush_delay_offsets_interval_ms: u64,
    /// `maxTransferCountOnMessageInMemory` and `maxTransferBytesOnMessageInMemory`.
    pub pull_messages_max: usize,
    pub pull_bytes_max: usize,
    /// `maxHeldPullRequests` (Petrel): pulls held at once; more are answered SYSTEM_BUSY.
    pub held_pulls_max: usize,
    /// `maxBatchMessages` (Petrel): messages in one SEND_BATCH_MESSAGE.
    pub batch_messages_max: usize,
    /// Controller mode (`enableControllerMode` and the rest): `None` outside it.
    pub controller: Option<ControllerModeConfig>,
    /// Transaction messages (`transactionTimeOut` and the rest).
    pub transactions: TransactionConfig,
    /// Timer messages (`timerWheelEnable` and the rest).
    pub timer: TimerBrokerConfig,
    /// The store's settings (storePathRootDir, flushDiskType, mappedFileSizeCommitLog, ...).
    pub store: StoreConfig,
    /// Transport limits (`serverChannelMaxConnections`, `frameMaxLength`, ...).
    pub server: ServerConfig,
    /// The Prometheus endpoint (`metricsExporterType`, `metricsPromExporterPort`, ...).
    pub metrics: crate::metrics::MetricsConfig,
    /// `configBlackList`: properties UPDATE_BROKER_CONFIG may not change, `;`-separated
    /// (`brokerConfigPath`, `rocketmqHome` and `configBlackList` never, as in RocketMQ).
    pub config_black_list: String,
    /// The file the broker was started from (`-c`), where UPDATE_BROKER_CONFIG writes what
    /// it changes (RocketMQ's `brokerConfigPath`); `None` keeps changes until the broker stops.
    pub config_file: Option<PathBuf>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        BrokerConfig {
            cluster_name: "DefaultCluster".to_owned(),
            broker_name: "broker-a".to_owned(),
            broker_id: 0,
            role: BrokerRole::AsyncMaster,
            ha_listen_port: None,
            ha_master_address: None,
            ha_heartbeat_ms: petrel_core::ha::HEARTBEAT_INTERVAL_DEFAULT_MS,
            ha_housekeeping_ms: petrel_core::ha::HOUSEKEEPING_INTERVAL_DEFAULT_MS,
            ha_transfer_batch_bytes: petrel_core::ha::TRANSFER_BATCH_DEFAULT_BYTES,
            ha_max_gap_bytes: 256 << 20,
            slave_read_enable: false,
            in_memory_ratio: petrel_core::broker::replica_read::IN_MEMORY_RATIO_DEFAULT,
            memory_bytes: physical_memory_bytes(),
            offset_check_in_slave: false,
            server_side_reset: true,
            namesrv_addrs: Vec::new(),
            listen_port: 10911,
            bind_address: "0.0.0.0".to_owned(),
            broker_ip: None,
            auto_create_topic: true,
            auto_create_group: true,
            default_topic_queue_nums: 8,
            broker_permission: perm::READ | perm::WRITE,
            long_polling: true,
            property_filter: false,
            lite_pull: true,
            store_reply: true,
            short_polling_ms: 1_000,
            register_period_ms: 30_000,
            register_timeout_ms: 24_000,
            channel_expired_ms: CHANNEL_EXPIRED_DEFAULT_MS,
            flush_offsets_interval_ms: 5_000,
            flush_delay_offsets_interval_ms: 10_000,
            pull_messages_max: 32,
            pull_bytes_max: 256 << 10,
            held_pulls_max: 16_384,
            batch_messages_max: 4_096,
            controller: None,
            transactions: TransactionConfig::default(),
            timer: TimerBrokerConfig::default(),
            store: StoreConfig::new(home.join("store")),
            server: ServerConfig::default(),
            metrics: crate::metrics::MetricsConfig::default(),
            config_black_list: "configBlackList;brokerConfigPath".to_owned(),
            config_file: None,
        }
    }
}

/// A broker in controller mode (RocketMQ 5's AutoSwitch HA): its role and id come from the
/// controller, not from `brokerRole` and `brokerId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerModeConfig {
    /// `controllerAddr`: the controllers, `;`-separated.
    pub controller_addrs: Vec<String>,
    /// `allAckInSyncStateSet`: a send is answered once every member of the set holds it.
    pub all_ack: bool,
    /// `minInSyncReplicas`: a master whose set is smaller refuses sends.
    pub min_in_sync: usize,
    /// `haMaxTimeSlaveNotCatchup`: a member behind for longer leaves the set.
    pub not_catchup_ms: u64,
    /// `syncFromLastFile`: an empty slave copies from its master's newest file, not its first.
    pub sync_from_last_file: bool,
    /// `asyncLearner`: this slave copies the log but never joins the set.
    pub async_learner: bool,
    /// `brokerElectionPriority`: lower is preferred among equals.
    pub election_priority: i32,
    /// `controllerHeartBeatTimeoutMills`: how long the controller waits for a heartbeat.
    pub heartbeat_timeout_ms: u64,
    /// `brokerHeartbeatInterval`: how often heartbeats go to every controller.
    pub heartbeat_interval_ms: u64,
    /// `syncBrokerMetadataPeriod`: how often the group's replica info is asked for.
    pub sync_metadata_ms: u64,
}

impl Default for ControllerModeConfig {
    fn default() -> Self {
        ControllerModeConfig {
            controller_addrs: Vec::new(),
            all_ack: false,
            min_in_sync: 1,
            not_catchup_ms: petrel_core::broker::replicas::NOT_CATCHUP_DEFAULT_MS,
            sync_from_last_file: false,
            async_learner: false,
            election_priority: i32::MAX,
            heartbeat_timeout_ms: 10_000,
            heartbeat_interval_ms: 1_000,
            sync_metadata_ms: 5_000,
        }
    }
}

impl ControllerModeConfig {
    fn apply(&mut self, props: &mut Properties) -> Result<(), ConfigError> {
        let mut addrs = self.controller_addrs.join(";");
        props.apply("controllerAddr", &mut addrs, "host:port;host:port")?;
        self.controller_addrs = split_addrs(&addrs);
        props.apply("allAckInSyncStateSet", &mut self.all_ack, "true or false")?;
        props.apply("minInSyncReplicas", &mut self.min_in_sync, "a count")?;
        props.apply("haMaxTimeSlaveNotCatchup", &mut self.not_catchup_ms, "milliseconds")?;
        props.apply("syncFromLastFile", &mut self.sync_from_last_file, "true or false")?;
        props.apply("asyncLearner", &mut self.async_learner, "true or false")?;
        props.apply("brokerElectionPriority", &mut self.election_priority, "an integer")?;
        let timeout = &mut self.heartbeat_timeout_ms;
        props.apply("controllerHeartBeatTimeoutMills", timeout, "milliseconds")?;
        let interval = &mut self.heartbeat_interval_ms;
        props.apply("brokerHeartbeatInterval", interval, "milliseconds")?;
        props.apply("syncBrokerMetadataPeriod", &mut self.sync_metadata_ms, "milliseconds")
    }
}

/// Transaction messages' settings (`BrokerConfig`'s, with RocketMQ's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionConfig {
    /// `rejectTransactionMessage`: refuse prepared sends.
    pub reject: bool,
    /// `transactionTimeOut`: a half message younger than this is not checked.
    pub timeout_ms: u64,
    /// `transactionCheckInterval`: how often the check service passes over the half queue.
    pub check_interval_ms: u64,
    /// `transactionCheckMax`: checks before a half message is discarded.
    pub check_max: i32,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            reject: false,
            timeout_ms: 6_000,
            check_interval_ms: 30_000,
            check_max: 15,
        }
    }
}

impl TransactionConfig {
    fn apply(&mut self, props: &mut Properties) -> Result<(), ConfigError> {
        props.apply("rejectTransactionMessage", &mut self.reject, "true or false")?;
        props.apply("transactionTimeOut", &mut self.timeout_ms, "milliseconds")?;
        props.apply("transactionCheckInterval", &mut self.check_interval_ms, "milliseconds")?;
        props.apply("transactionCheckMax", &mut self.check_max, "a count")
    }
}

/// Timer messages' settings (`MessageStoreConfig`'s `timer*`, with RocketMQ's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerBrokerConfig {
    /// `timerWheelEnable`, `timerPrecisionMs`, `timerRollWindowSlot`, `timerMaxDelaySec`.
    pub settings: TimerSettings,
    /// `timerFlushIntervalMs`: the timer checkpoint is written this often when it moved.
    pub flush_interval_ms: u64,
    /// `mappedFileSizeTimerLog`: bytes of one timer-log file.
    pub log_file_bytes: u64,
}

impl Default for TimerBrokerConfig {
    fn default() -> Self {
        TimerBrokerConfig {
            settings: TimerSettings::default(),
            flush_interval_ms: 1_000,
            log_file_bytes: 100 << 20,
        }
    }
}

impl TimerBrokerConfig {
    fn apply(&mut self, props: &mut Properties) -> Result<(), ConfigError> {
        let s = self.settings;
        let (mut enabled, mut precision, mut window, mut max_delay) =
            (s.enabled, s.precision_ms, s.roll_window_slots, s.max_delay_sec);
        props.apply("timerWheelEnable", &mut enabled, "true or false")?;
        props.apply("timerPrecisionMs", &mut precision, "100, 200, 500 or 1000")?;
        props.apply("timerRollWindowSlot", &mut window, "a count of slots")?;
        props.apply("timerMaxDelaySec", &mut max_delay, "seconds")?;
        let mut congest = i32::try_from(s.congest_num_each_slot).unwrap_or(i32::MAX);
        let expected = "a count of messages, 0 to 2147483647";
        props.apply("timerCongestNumEachSlot", &mut congest, expected)?;
        if congest < 0 {
            let (key, value) = ("timerCongestNumEachSlot".to_owned(), congest.to_string());
            return Err(ConfigError::Invalid { key, value, expected });
        }
        self.settings = TimerSettings::new(enabled, precision, window, max_delay);
        self.settings.congest_num_each_slot = i64::from(congest);
        let s = self.settings;
        props.record("timerPrecisionMs", s.precision_ms);
        props.record("timerRollWindowSlot", s.roll_window_slots);
        props.record("timerMaxDelaySec", s.max_delay_sec);
        props.apply("timerFlushIntervalMs", &mut self.flush_interval_ms, "milliseconds")?;
        props.apply("mappedFileSizeTimerLog", &mut self.log_file_bytes, "bytes")
    }
}

impl BrokerConfig {
    /// Applies a `broker.conf`.
    pub fn apply(&mut self, props: &mut Properties) -> Result<(), ConfigError> {
        props.apply("brokerClusterName", &mut self.cluster_name, "a name")?;
        props.apply("brokerName", &mut self.broker_name, "a name")?;
        props.apply("brokerId", &mut self.broker_id, "an integer")?;
        props.apply("brokerRole", &mut self.role, "ASYNC_MASTER, SYNC_MASTER or SLAVE")?;
        if self.role != BrokerRole::Slave && self.broker_id != 0 {
            // RocketMQ's BrokerStartup does the same: a master is brokerId 0.
            tracing::warn!(broker_id = self.broker_id, "a master's brokerId is 0; set to 0");
            self.broker_id = 0;
            props.record("brokerId", self.broker_id);
        }
        self.apply_ha(props)?;
        let mut namesrv = self.namesrv_addrs.join(";");
        props.apply("namesrvAddr", &mut namesrv, "host:port;host:port")?;
        if !namesrv.is_empty() {
            self.namesrv_addrs = split_addrs(&namesrv);
        }
        props.apply("listenPort", &mut self.listen_port, "a port number")?;
        props.apply("bindAddress", &mut self.bind_address, "an address")?;
        let mut ip = self.broker_ip.clone().unwrap_or_default();
        props.apply("brokerIP1", &mut ip, "an IP address")?;
        if !ip.is_empty() {
            self.broker_ip = Some(ip);
        }
        props.apply("autoCreateTopicEnable", &mut self.auto_create_topic, "true or false")?;
        props.apply("autoCreateSubscriptionGroup", &mut self.auto_create_group, "true or false")?;
        props.apply("defaultTopicQueueNums", &mut self.default_topic_queue_nums, "a count")?;
        props.apply("brokerPermission", &mut self.broker_permission, "2, 4 or 6")?;
        props.apply("longPollingEnable", &mut self.long_polling, "true or false")?;
        props.apply("enablePropertyFilter", &mut self.property_filter, "true or false")?;
        props.apply("litePullMessageEnable", &mut self.lite_pull, "true or false")?;
        props.apply("storeReplyMessageEnable", &mut self.store_reply, "true or false")?;
        props.apply("shortPollingTimeMills", &mut self.short_polling_ms, "milliseconds")?;
        props.apply("registerNameServerPeriod", &mut self.register_period_ms, "milliseconds")?;
        props.apply("registerBrokerTimeoutMills", &mut self.register_timeout_ms, "milliseconds")?;
        props.apply("channelExpiredTimeout", &mut self.channel_expired_ms, "milliseconds")?;
        props.apply(
            "flushConsumerOffsetInterval",
            &mut self.flush_offsets_interval_ms,
            "milliseconds",
        )?;
        props.apply(
            "flushDelayOffsetInterval",
            &mut self.flush_delay_offsets_interval_ms,
            "milliseconds",
        )?;
        props.apply("maxTransferCountOnMessageInMemory", &mut self.pull_messages_max, "a count")?;
        props.apply("maxTransferBytesOnMessageInMemory", &mut self.pull_bytes_max, "bytes")?;
        props.apply("maxHeldPullRequests", &mut self.held_pulls_max, "a count")?;
        props.apply("maxBatchMessages", &mut self.batch_messages_max, "a count")?;
        props.apply("configBlackList", &mut self.config_black_list, "names separated by ;")?;
        crate::config::apply_server(props, &mut self.server)?;
        self.metrics.apply(props)?;
        self.transactions.apply(props)?;
        self.timer.apply(props)?;
        let mut controller_mode = self.controller.is_some();
        props.apply("enableControllerMode", &mut controller_mode, "true or false")?;
        self.controller = match controller_mode {
            true => {
                let mut controller = self.controller.take().unwrap_or_default();
                controller.apply(props)?;
                Some(controller)
            }
            false => None,
        };
        self.apply_store(props)
    }

    /// Replication and reads from slaves.
    fn apply_ha(&mut self, props: &mut Properties) -> Result<(), ConfigError> {
        let mut port = self.ha_listen_port.map(|p| p.to_string()).unwrap_or_default();
        props.apply("haListenPort", &mut port, "a port number")?;
        if !port.is_empty() {
            let parsed = port.parse().map_err(|_| ConfigError::Invalid {
                key: "haListenPort".into(),
                value: port,
                expected: "a port number",
            })?;
            self.ha_listen_port = Some(parsed);
        }
        let mut master = self.ha_master_address.clone().unwrap_or_default();
        props.apply("haMasterAddress", &mut master, "host:port")?;
        if !master.is_empty() {
            self.ha_master_address = Some(master);
        }
        props.apply("haSendHeartbeatInterval", &mut self.ha_heartbeat_ms, "milliseconds")?;
        props.apply("haHousekeepingInterval", &mut self.ha_housekeeping_ms, "milliseconds")?;
        props.apply("haTransferBatchSize", &mut self.ha_transfer_batch_bytes, "bytes")?;
        props.apply("haMaxGapNotInSync", &mut self.ha_max_gap_bytes, "bytes")?;
        props.apply("slaveReadEnable", &mut self.slave_read_enable, "true or false")?;
        props.apply("accessMessageInMemoryMaxRatio", &mut self.in_memory_ratio, "a percentage")?;
        props.apply("offsetCheckInSlave", &mut self.offset_check_in_slave, "true or false")?;
        props.apply("useServerSideResetOffset", &mut self.server_side_reset, "true or false")?;
        Ok(())
    }

    fn apply_store(&mut self, props: &mut Properties) -> Result<(), ConfigError> {
        let store = &mut self.store;
        let mut root = store.root.display().to_string();
        props.apply("storePathRootDir", &mut root, "a directory")?;
        if root.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "storePathRootDir".into(),
                value: root,
                expected: "a directory (leave the property out for the default)",
            });
        }
        store.root = PathBuf::from(root);
        props.apply("flushDiskType", &mut store.flush_disk_type, "SYNC_FLUSH or ASYNC_FLUSH")?;
        props.apply("mappedFileSizeCommitLog", &mut store.commit_log_file_bytes, "bytes")?;
        let mut cq_bytes = store.cq_file_units * 20;
        props.apply("mappedFileSizeConsumeQueue", &mut cq_bytes, "bytes")?;
        store.cq_file_units = (cq_bytes / 20).max(1);
        props.record("mappedFileSizeConsumeQueue", store.cq_file_units * 20);
        props.apply("maxMessageSize", &mut store.message_bytes_max, "bytes")?;
        props.apply("syncFlushTimeout", &mut store.sync_flush_timeout_ms, "milliseconds")?;
        props.apply("flushIntervalCommitLog", &mut store.flush_interval_ms, "milliseconds")?;
        props.apply("flushCommitLogLeastPages", &mut store.flush_least_pages, "pages")?;
        props.apply("fileReservedTime", &mut store.file_reserved_hours, "hours")?;
        let hours: Vec<String> = store.delete_when.iter().map(|h| format!("{h:02}")).collect();
        let mut delete_when = hours.join(";");
        props.apply("deleteWhen", &mut delete_when, "hours like 04 or 04;16")?;
        store.delete_when =
            petrel_storage::cleanup::parse_delete_when(&delete_when).map_err(|_| {
                ConfigError::Invalid {
                    key: "deleteWhen".into(),
                    value: delete_when,
                    expected: "hours like 04 or 04;16",
                }
            })?;
        props.apply("diskMaxUsedSpaceRatio", &mut store.disk_max_used_ratio, "a percentage")?;
        let forcibly = &mut store.disk_clean_forcibly_ratio;
        props.apply("diskSpaceCleanForciblyRatio", forcibly, "a percentage")?;
        props.apply("diskSpaceWarningLevelRatio", &mut store.disk_warning_ratio, "a percentage")?;
        props.apply("messageIndexEnable", &mut store.message_index_enable, "true or false")?;
        props.apply("enabledAppendPropCRC", &mut store.append_record_crc, "true or false")?;
        props.apply("messageDelayLevel", &mut store.delay_levels, "levels like 1s 5s 10m 2h")?;
        Ok(())
    }

    /// The configuration in RocketMQ's property names with the values it holds, a
    /// `key=value` line each (GET_BROKER_CONFIG, `-p`).
    pub fn to_properties(&self) -> String {
        crate::config::effective(|props| self.clone().apply(props))
    }

    /// The properties UPDATE_BROKER_CONFIG refuses to change.
    pub fn black_list(&self) -> Vec<&str> {
        let always = ["brokerConfigPath", "rocketmqHome", "configBlackList"];
        let listed = self.config_black_list.split(';').map(str::trim).filter(|n| !n.is_empty());
        always.into_iter().chain(listed).collect()
    }

    /// `host:port` clients are told to use.
    pub fn advertised_addr(&self, ip: &str, port: u16) -> String {
        format!("{ip}:{port}")
    }

    /// The HA port: `haListenPort`, or the client port + 1 (any free port when the client
    /// port is 0, any).
    pub fn ha_port(&self) -> u16 {
        let next = if self.listen_port == 0 { 0 } else { self.listen_port.saturating_add(1) };
        self.ha_listen_port.unwrap_or(next)
    }

    /// A check of what a file cannot express by type alone.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(controller) = &self.controller {
            if controller.controller_addrs.is_empty() {
                return Err("enableControllerMode=true needs controllerAddr".to_owned());
            }
            if controller.heartbeat_interval_ms == 0 || controller.sync_metadata_ms == 0 {
                let why = "brokerHeartbeatInterval and syncBrokerMetadataPeriod must be above 0";
                return Err(why.to_owned());
            }
        }
        match self.role {
            // In controller mode the controller names the role and the id.
            BrokerRole::Slave if self.broker_id <= 0 && self.controller.is_none() => {
                return Err(format!(
                    "brokerRole=SLAVE needs a brokerId of 1 or more, not {}",
                    self.broker_id
                ));
            }
            _ => {}
        }
        if !(1..=16 << 20).contains(&self.ha_transfer_batch_bytes) {
            return Err("haTransferBatchSize must be between 1 byte and 16 MiB".to_owned());
        }
        if self.in_memory_ratio > 100 {
            return Err("accessMessageInMemoryMaxRatio is a percentage, 0 to 100".to_owned());
        }
        if !(1..=1024).contains(&self.default_topic_queue_nums) {
            return Err("defaultTopicQueueNums must be between 1 and 1024".to_owned());
        }
        self.validate_serving()?;
        self.store.validate()
    }

    /// Values that would start a broker that then refuses every client.
    fn validate_serving(&self) -> Result<(), String> {
        let (frame, message) =
            (self.server.connection.frame_bytes_max, self.store.message_bytes_max);
        if frame <= message {
            return Err(format!(
                "frameMaxLength={frame} must be above maxMessageSize={message}: a request frame \
                 carries a message and its header"
            ));
        }
        if self.broker_permission & !(perm::READ | perm::WRITE | perm::INHERIT) != 0 {
            return Err(format!(
                "brokerPermission={} is not a permission: 2 (write), 4 (read) or 6 (both)",
                self.broker_permission
            ));
        }
        Ok(())
    }
}

/// `brokerRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerRole {
    AsyncMaster,
    SyncMaster,
    Slave,
}

impl BrokerRole {
    /// The role as `brokerRole` names it.
    pub fn name(self) -> &'static str {
        match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        }
    }
}

impl std::fmt::Display for BrokerRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BrokerRole {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "ASYNC_MASTER" => Ok(BrokerRole::AsyncMaster),
            "SYNC_MASTER" => Ok(BrokerRole::SyncMaster),
            "SLAVE" => Ok(BrokerRole::Slave),
            other => Err(format!("brokerRole {other} is not ASYNC_MASTER, SYNC_MASTER or SLAVE")),
        }
    }
}

/// The machine's physical memory: `MemTotal` of `/proc/meminfo`, 16 GiB where that cannot be
/// read (and always in the simulator, so that a seed decides the same on every machine).
fn physical_memory_bytes() -> u64 {
    const FALLBACK: u64 = 16 << 30;
    if cfg!(madsim) {
        return FALLBACK;
    }
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else { return FALLBACK };
    info.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map_or(FALLBACK, |kib| kib.saturating_mul(1024))
}

/// `a:1;b:2` → `["a:1", "b:2"]`.
pub fn split_addrs(text: &str) -> Vec<String> {
    text.split(';').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

/// `flushDiskType` as RocketMQ names it.
pub fn flush_name(flush: FlushDiskType) -> &'static str {
    match flush {
        FlushDiskType::SyncFlush => "SYNC_FLUSH",
        FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(text: &str) -> Result<(), String> {
        let mut config = BrokerConfig::default();
        config.apply(&mut Properties::parse(text)).map_err(|e| e.to_string())?;
        config.validate()
    }

    /// Values that would start a broker that refuses every client are refused at start, each
    /// with the property named (issue 22).
    #[test]
    fn values_that_would_refuse_every_client_are_refused_at_start() {
        assert_eq!(validated(""), Ok(()));
        for (text, named) in [
            ("serverChannelMaxConnections=0", "serverChannelMaxConnections"),
            ("serverChannelMaxConnectionsPerSource=0", "serverChannelMaxConnectionsPerSource"),
            ("storePathRootDir=", "storePathRootDir"),
            ("serverChannelMaxIdleTimeSeconds=soon", "serverChannelMaxIdleTimeSeconds"),
            ("frameMaxLength=0", "frameMaxLength"),
            ("brokerPermission=99", "brokerPermission"),
            ("diskMaxUsedSpaceRatio=150", "diskMaxUsedSpaceRatio"),
            ("diskSpaceCleanForciblyRatio=101", "diskSpaceCleanForciblyRatio"),
            ("diskSpaceWarningLevelRatio=200", "diskSpaceWarningLevelRatio"),
            ("timerCongestNumEachSlot=-1", "timerCongestNumEachSlot"),
            ("timerCongestNumEachSlot=2147483648", "timerCongestNumEachSlot"),
            ("mappedFileSizeCommitLog=99999999999999", "mappedFileSizeCommitLog"),
        ] {
            let refused = validated(text).unwrap_err();
            assert!(refused.contains(named), "{text}: {refused}");
        }
    }
}
