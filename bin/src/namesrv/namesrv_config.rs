//! GET_NAMESRV_CONFIG (319): the configuration the NameServer runs with, as Java properties
//! text in RocketMQ's names (mqadmin getNamesrvConfig), as UPDATE_NAMESRV_CONFIG last left it.
//!
//! UPDATE_NAMESRV_CONFIG (318): properties set on the running NameServer (mqadmin
//! updateNamesrvConfig). As RocketMQ: a name in `configBlackList` (configBlackList,
//! configStorePath and kvConfigPath unless configured otherwise) is refused with
//! NO_PERMISSION. Where Petrel differs: a name it does not read, a value that does not parse
//! and a configuration a start would refuse are refused with INVALID_PARAMETER; the change is
//! written into the file the NameServer was started from, keeping its other lines (RocketMQ
//! writes every setting to `configStorePath`, a file it does not read at start); only
//! [`LIVE`] take effect at once, the rest at the next start, as the remark says.

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{Namesrv, NamesrvConfig};
use crate::config::{update as apply_update, update_remark, write_into_file};

/// The properties the running NameServer takes at once.
const LIVE: [&str; 4] = [
    "orderMessageEnable",
    "returnOrderTopicConfigToBroker",
    "enableAllTopicList",
    "enableTopicList",
];

pub(super) fn get(namesrv: &Namesrv) -> RemotingCommand {
    RemotingCommand::response(response::SUCCESS, None)
        .with_body(namesrv.live().0.to_properties().into_bytes())
}

/// Updates are made one at a time under `namesrv.updating`; the live configuration, which
/// every route request reads, is locked only to be read and swapped, not while the file is
/// written.
pub(super) fn update(
    namesrv: &Namesrv,
    conn: &Connection,
    request: &RemotingCommand,
) -> RemotingCommand {
    let _one_at_a_time = namesrv.updating.lock().unwrap_or_else(|p| p.into_inner());
    let current = namesrv.live().0.clone();
    let black_list = current.black_list();
    let updated =
        match apply_update(&current, &request.body[..], &black_list, NamesrvConfig::apply, |_| {
            Ok(())
        }) {
            Ok(updated) => updated,
            Err(refusal) => return RemotingCommand::response(refusal.code, Some(refusal.remark)),
        };
    if updated.given.is_empty() {
        return RemotingCommand::response(response::SUCCESS, None);
    }
    let file = current.config_file.clone();
    if let Some(path) = &file {
        if let Err(e) = write_into_file(path, &updated.given) {
            let why = format!("cannot write {}: {e}; nothing was changed", path.display());
            return RemotingCommand::response(response::SYSTEM_ERROR, Some(why));
        }
    }
    tracing::info!(caller = %conn.peer(), changes = ?updated.given, "NameServer configuration updated");
    let mut live = namesrv.live();
    live.0 = updated.config;
    live.1 += 1;
    drop(live);
    let remark = update_remark(&updated.given, &LIVE, file.as_deref());
    RemotingCommand::response(response::SUCCESS, Some(remark))
}
