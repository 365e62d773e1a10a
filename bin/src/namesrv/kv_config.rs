//! PUT_KV_CONFIG (100), GET_KV_CONFIG (101), DELETE_KV_CONFIG (102), GET_KVLIST_BY_NAMESPACE
//! (219): the NameServer's small string store, persisted to `kvConfigPath` on every change.
//!
//! A missing value answers QUERY_NOT_FOUND (22) with RocketMQ's remark. A change is written
//! before it is taken and answered: one that cannot be written answers SYSTEM_ERROR (1) with
//! the reason and changes nothing (RocketMQ logs the failed write and answers SUCCESS).

use petrel_core::model::KvTable;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{
    GetKvConfigResponseHeader, GetKvListByNamespaceRequestHeader, KvConfigKeyRequestHeader,
    PutKvConfigRequestHeader,
};

use super::{ok_with_body, Namesrv, Reply};

pub(super) fn put(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let h: PutKvConfigRequestHeader = request.header()?;
    Ok(answer(namesrv.change_kv(|kv| kv.put(&h.namespace, &h.key, &h.value))))
}

pub(super) fn get(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let h: KvConfigKeyRequestHeader = request.header()?;
    let value = namesrv.kv().get(&h.namespace, &h.key).map(str::to_owned);
    Ok(match value {
        Some(value) => RemotingCommand::response(response::SUCCESS, None)
            .with_header(&GetKvConfigResponseHeader { value: Some(value) }),
        None => RemotingCommand::response(
            response::QUERY_NOT_FOUND,
            format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
        ),
    })
}

pub(super) fn delete(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let h: KvConfigKeyRequestHeader = request.header()?;
    Ok(answer(namesrv.change_kv(|kv| kv.delete(&h.namespace, &h.key))))
}

/// SUCCESS once the change is on disk (or changed nothing); SYSTEM_ERROR with the reason when
/// it could not be written, the table left as it was.
fn answer(changed: Result<bool, String>) -> RemotingCommand {
    match changed {
        Ok(_) => RemotingCommand::response(response::SUCCESS, None),
        Err(why) => RemotingCommand::response(response::SYSTEM_ERROR, why),
    }
}

pub(super) fn list(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let h: GetKvListByNamespaceRequestHeader = request.header()?;
    let table = namesrv.kv().namespace(&h.namespace).cloned();
    Ok(match table {
        Some(table) => ok_with_body(to_json(&KvTable { table }, JsonStyle::Fastjson)),
        None => RemotingCommand::response(
            response::QUERY_NOT_FOUND,
            format!("No config item, Namespace: {}", h.namespace),
        ),
    })
}
