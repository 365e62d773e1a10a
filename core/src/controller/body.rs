//! The JSON bodies of the controller's requests and answers, as RocketMQ's fastjson writes
//! them: fields in alphabetical order, absent ones left out, id-keyed maps with bare integer
//! keys (`petrel_net::codec::json` writes and reads those). Field names are RocketMQ's
//! (`remoting/protocol/body/`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{BrokerId, Group, Liveness};
use crate::ha::epoch::EpochCache;
use crate::Millis;

/// A group's sync-state set and its epoch (`SyncStateSet`): the body of REGISTER_BROKER,
/// GET_REPLICA_INFO, ALTER_SYNC_STATE_SET both ways, and NOTIFY_BROKER_ROLE_CHANGED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncStateSet {
    pub sync_state_set: BTreeSet<BrokerId>,
    pub sync_state_set_epoch: i32,
}

/// A group's brokers by id (`BrokerMemberGroup`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerMemberGroup {
    pub broker_addrs: BTreeMap<BrokerId, String>,
    pub broker_name: String,
    pub cluster: String,
}

impl BrokerMemberGroup {
    pub fn of(name: &str, group: &Group) -> BrokerMemberGroup {
        BrokerMemberGroup {
            broker_addrs: group.brokers.clone(),
            broker_name: name.to_owned(),
            cluster: group.cluster.clone(),
        }
    }
}

/// The body of an ELECT_MASTER answer: the group's members when a new master was elected,
/// left out when the old one stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ElectMasterResponseBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_member_group: Option<BrokerMemberGroup>,
    pub sync_state_set: BTreeSet<BrokerId>,
}

/// One broker as GET_SYNC_STATE_DATA reports it (`ReplicaIdentity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaIdentity {
    pub alive: bool,
    pub broker_address: String,
    pub broker_id: BrokerId,
    pub broker_name: String,
}

/// One group as GET_SYNC_STATE_DATA reports it (`BrokerReplicasInfo.ReplicasInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicasInfo {
    pub in_sync_replicas: Vec<ReplicaIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_broker_id: Option<BrokerId>,
    pub master_epoch: i32,
    pub not_in_sync_replicas: Vec<ReplicaIdentity>,
    pub sync_state_set_epoch: i32,
}

impl ReplicasInfo {
    /// The group with each broker's liveness at `now`, split by membership of the set.
    pub fn of(name: &str, group: &Group, liveness: &Liveness, now: Millis) -> ReplicasInfo {
        let (mut in_sync, mut not_in_sync) = (Vec::new(), Vec::new());
        for (&id, address) in &group.brokers {
            let replica = ReplicaIdentity {
                alive: liveness.alive(name, id, now).is_some(),
                broker_address: address.clone(),
                broker_id: id,
                broker_name: name.to_owned(),
            };
            if group.sync_state_set.contains(&id) {
                in_sync.push(replica);
            } else {
                not_in_sync.push(replica);
            }
        }
        ReplicasInfo {
            in_sync_replicas: in_sync,
            master_address: group.master.and_then(|m| group.brokers.get(&m).cloned()),
            master_broker_id: group.master,
            master_epoch: group.master_epoch,
            not_in_sync_replicas: not_in_sync,
            sync_state_set_epoch: group.sync_state_set_epoch,
        }
    }
}

/// The body of a GET_SYNC_STATE_DATA answer (`BrokerReplicasInfo`); its request body is a
/// JSON list of group names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerReplicasInfo {
    pub replicas_info_table: BTreeMap<String, ReplicasInfo>,
}

/// One epoch as GET_BROKER_EPOCH_CACHE reports it (`EpochEntry`): where its records begin and
/// end in the commit log; the newest one's end is `i64::MAX` (RocketMQ's "not ended").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EpochEntryBody {
    pub end_offset: i64,
    pub epoch: i32,
    pub start_offset: i64,
}

/// The body of a GET_BROKER_EPOCH_CACHE answer (`EpochEntryCache`): a broker's identity, its
/// epochs, and the end of its commit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EpochEntryCache {
    pub broker_id: BrokerId,
    pub broker_name: String,
    pub cluster_name: String,
    pub epoch_list: Vec<EpochEntryBody>,
    pub max_offset: i64,
}

impl EpochEntryCache {
    /// Broker `id` of `cluster`/`name` whose log, with `epochs`, ends at `max_offset`.
    pub fn of(
        cluster: &str,
        name: &str,
        id: BrokerId,
        epochs: &EpochCache,
        max_offset: i64,
    ) -> EpochEntryCache {
        let entries = epochs.entries();
        let epoch_list = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| EpochEntryBody {
                end_offset: entries.get(i + 1).map_or(i64::MAX, |next| next.start),
                epoch: entry.epoch,
                start_offset: entry.start,
            })
            .collect();
        EpochEntryCache {
            broker_id: id,
            broker_name: name.to_owned(),
            cluster_name: cluster.to_owned(),
            epoch_list,
            max_offset,
        }
    }
}
