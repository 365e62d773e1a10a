//! UPDATE_CONTROLLER_CONFIG (1009) and GET_CONTROLLER_CONFIG (1010), from an admin
//! (`mqadmin updateControllerConfig` / `getControllerConfig`), to each controller: the
//! controller's properties as text, and a change of those it can take while it runs.
//!
//! Taken at once: `enableElectUncleanMaster`, `notifyBrokerRoleChanged`,
//! `scanNotActiveBrokerInterval` (from the next scan). Refused with NO_PERMISSION, as by
//! RocketMQ's black list: `configBlackList`, `configStorePath`. Refused with INVALID_PARAMETER,
//! naming the key: the raft group's shape, the store, the tick and the snapshot interval (they
//! take effect at a restart, from the controller's file), unknown keys, bad values. A request
//! is taken whole or not at all. A change lives until the process ends: it is not written back
//! to the controller's file.

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;

use super::{Controller, ControllerConfig};
use crate::config::Properties;

/// What an admin may change while the controller runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub elect_unclean_master: bool,
    pub notify_broker_role_changed: bool,
    pub scan_not_active_broker_ms: u64,
}

impl Settings {
    pub fn of(config: &ControllerConfig) -> Settings {
        Settings {
            elect_unclean_master: config.elect_unclean_master,
            notify_broker_role_changed: config.notify_broker_role_changed,
            scan_not_active_broker_ms: config.scan_not_active_broker_ms,
        }
    }
}

/// Never changed by a request (RocketMQ's default `configBlackList`).
const BLACK_LIST: [&str; 2] = ["configBlackList", "configStorePath"];

/// Read from the controller's file at start only.
const AT_RESTART: [&str; 6] = [
    "controllerDLegerGroup",
    "controllerDLegerPeers",
    "controllerDLegerSelfId",
    "controllerStorePath",
    "tickInterval",
    "snapshotEntries",
];

/// The controller's properties, one `key=value` line each, by name.
pub(super) fn get(controller: &Controller) -> RemotingCommand {
    let (config, settings) = (&controller.config, controller.settings());
    let peers: Vec<String> = config.peers.iter().map(|(n, a)| format!("{n}-{a}")).collect();
    let properties = [
        ("configBlackList", BLACK_LIST.join(";")),
        ("controllerDLegerGroup", config.group.clone()),
        ("controllerDLegerPeers", peers.join(";")),
        ("controllerDLegerSelfId", config.self_id.clone()),
        ("controllerStorePath", config.store_path.display().to_string()),
        ("enableElectUncleanMaster", settings.elect_unclean_master.to_string()),
        ("notifyBrokerRoleChanged", settings.notify_broker_role_changed.to_string()),
        ("scanNotActiveBrokerInterval", settings.scan_not_active_broker_ms.to_string()),
        ("snapshotEntries", config.snapshot_entries.to_string()),
        ("tickInterval", config.tick_ms.to_string()),
    ];
    let text: String = properties.iter().map(|(key, value)| format!("{key}={value}\n")).collect();
    RemotingCommand::response(response::SUCCESS, None).with_body(text.into_bytes())
}

/// Takes the change the body's properties ask for, or refuses all of it.
pub(super) fn update(controller: &Controller, request: &RemotingCommand) -> RemotingCommand {
    let refuse = |code: i32, why: String| RemotingCommand::response(code, Some(why));
    let Ok(text) = std::str::from_utf8(&request.body) else {
        return refuse(response::INVALID_PARAMETER, "the body is not properties text".into());
    };
    let mut props = Properties::parse(text);
    let blocked: Vec<&str> = props.names().filter(|k| BLACK_LIST.contains(k)).collect();
    if !blocked.is_empty() {
        return refuse(
            response::NO_PERMISSION,
            format!("Can not update config in black list: {}", blocked.join(", ")),
        );
    }
    let mut settings = controller.settings();
    let applied = props
        .apply("enableElectUncleanMaster", &mut settings.elect_unclean_master, "true or false")
        .and_then(|()| {
            let notify = &mut settings.notify_broker_role_changed;
            props.apply("notifyBrokerRoleChanged", notify, "true or false")
        })
        .and_then(|()| {
            let every = &mut settings.scan_not_active_broker_ms;
            props.apply("scanNotActiveBrokerInterval", every, "milliseconds")
        });
    if let Err(error) = applied {
        return refuse(response::INVALID_PARAMETER, error.to_string());
    }
    if settings.scan_not_active_broker_ms == 0 {
        let why = "scanNotActiveBrokerInterval must be at least 1 millisecond".to_owned();
        return refuse(response::INVALID_PARAMETER, why);
    }
    if let Some(key) = props.names().next() {
        let why = match AT_RESTART.contains(&key) {
            true => format!("{key} is read at start only: change it in the controller's file"),
            false => format!("{key} is not a controller property Petrel knows"),
        };
        return refuse(response::INVALID_PARAMETER, why);
    }
    tracing::info!(?settings, "controller settings changed by an admin");
    *controller.settings.lock().unwrap_or_else(|p| p.into_inner()) = settings;
    RemotingCommand::response(response::SUCCESS, None)
}
