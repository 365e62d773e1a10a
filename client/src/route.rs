//! Topic routes from the NameServers: which brokers serve a topic, at which addresses, with
//! which writable queues.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use petrel_core::client::MessageQueue;
use petrel_core::model::{perm, TopicRouteData, MASTER_ID};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::GetRouteInfoRequestHeader;
use petrel_net::transport::RemotingClient;

use crate::ClientError;

/// A topic's route as a producer uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicRoute {
    /// Queues producers may write, sorted (an ordered topic's in its configuration's order).
    pub write_queues: Vec<MessageQueue>,
    /// Queues consumers may read, sorted.
    pub read_queues: Vec<MessageQueue>,
    /// Broker name → master address.
    pub masters: BTreeMap<String, String>,
    /// Broker name → where consumers read: the master, or while a group has none, its slave
    /// of lowest id (as RocketMQ's `findBrokerAddressInSubscribe`).
    pub readers: BTreeMap<String, String>,
    /// Broker name → broker id → address: every broker of each group, to follow a pull
    /// answer's `suggestWhichBrokerId`.
    pub replicas: BTreeMap<String, BTreeMap<i64, String>>,
    /// The topic is ordered (`orderTopicConf` in the route): its write queues are the ones the
    /// NameServer's ORDER_TOPIC_CONFIG names, whether their broker is up or not, so that a key
    /// always maps to the same queue.
    pub ordered: bool,
    /// The cluster of the route's first broker (where a request's reply topic is).
    pub cluster: Option<String>,
}

/// Queues per broker an `orderTopicConf` may name; more is taken for this many.
const ORDER_QUEUES_MAX: i32 = 1024;

impl TopicRoute {
    /// The route of `topic` from the NameServer's answer, with at most `queues_max` queues per
    /// broker (a topic not created yet borrows TBW102's route with the client's queue count).
    pub fn from_data(topic: &str, data: &TopicRouteData, queues_max: i32) -> TopicRoute {
        let cluster = data.broker_datas.first().map(|b| b.cluster.clone());
        let mut route =
            TopicRoute { cluster: cluster.filter(|c| !c.is_empty()), ..TopicRoute::default() };
        for broker in &data.broker_datas {
            if let Some(addr) = broker.broker_addrs.get(&MASTER_ID) {
                route.masters.insert(broker.broker_name.clone(), addr.clone());
            }
            // Ids sort ascending: the master (0) if present, else the first slave.
            if let Some((_, addr)) = broker.broker_addrs.iter().min_by_key(|(id, _)| **id) {
                route.readers.insert(broker.broker_name.clone(), addr.clone());
            }
            let ids = broker.broker_addrs.iter().map(|(id, addr)| (*id, addr.clone()));
            route.replicas.insert(broker.broker_name.clone(), ids.collect());
        }
        for queue in &data.queue_datas {
            let queues = |n: i32| {
                (0..n.min(queues_max)).map(|q| MessageQueue::new(topic, &queue.broker_name, q))
            };
            let has_master = route.masters.contains_key(&queue.broker_name);
            if has_master && perm::is_writeable(queue.perm) {
                route.write_queues.extend(queues(queue.write_queue_nums));
            }
            let readable = route.readers.contains_key(&queue.broker_name);
            if readable && perm::is_readable(queue.perm) {
                route.read_queues.extend(queues(queue.read_queue_nums));
            }
        }
        route.write_queues.sort();
        route.read_queues.sort();
        if let Some(conf) = data.order_topic_conf.as_deref().filter(|c| !c.is_empty()) {
            // In the configuration's order, as Java's producers have them: a key's hash must
            // pick the same queue in every client.
            route.write_queues = ordered_queues(topic, conf, queues_max.min(ORDER_QUEUES_MAX));
            route.ordered = true;
        }
        route
    }
}

/// The write queues `orderTopicConf` names ("broker-a:4;broker-b:4", RocketMQ's
/// `topicRouteData2TopicPublishInfo`), at most `max` per broker; a malformed item is skipped.
fn ordered_queues(topic: &str, conf: &str, max: i32) -> Vec<MessageQueue> {
    let mut queues = Vec::new();
    for item in conf.split(';').filter(|i| !i.trim().is_empty()) {
        let parsed =
            item.split_once(':').and_then(|(b, n)| Some((b.trim(), n.trim().parse::<i32>().ok()?)));
        let Some((broker, count)) = parsed else {
            tracing::debug!(%topic, %item, "orderTopicConf item is not brokerName:queueNums; skipped");
            continue;
        };
        queues.extend((0..count.clamp(0, max)).map(|q| MessageQueue::new(topic, broker, q)));
    }
    queues
}

impl TopicRoute {
    /// Where to pull a queue of `broker_name` whose last answer suggested broker `suggested`:
    /// that broker while the route has it, else the group's reader (RocketMQ's
    /// `findBrokerAddressInSubscribe` with `onlyThisBroker` false).
    pub fn reader(&self, broker_name: &str, suggested: i64) -> Option<&String> {
        let replicas = self.replicas.get(broker_name);
        replicas.and_then(|ids| ids.get(&suggested)).or_else(|| self.readers.get(broker_name))
    }
}

/// Every broker of every route, slaves too (as RocketMQ's clients heartbeat to them all).
pub fn all_brokers(routes: &BTreeMap<String, TopicRoute>) -> BTreeSet<String> {
    routes
        .values()
        .flat_map(|r| r.replicas.values().flat_map(|ids| ids.values().cloned()))
        .collect()
}

/// Fetches the routes of `topics` afresh into `routes`: a group whose master left is then read
/// from its slave, a broker that joined is found. A topic whose fetch fails keeps its route.
pub async fn refresh<'a>(
    client: &RemotingClient,
    namesrvs: &[String],
    timeout: Duration,
    topics: impl Iterator<Item = &'a String>,
    routes: &std::sync::Mutex<BTreeMap<String, TopicRoute>>,
) {
    for topic in topics {
        match fetch(client, namesrvs, topic, timeout).await {
            Ok(Some(data)) => {
                let route = TopicRoute::from_data(topic, &data, i32::MAX);
                routes.lock().unwrap_or_else(|p| p.into_inner()).insert(topic.clone(), route);
            }
            Ok(None) => tracing::debug!(%topic, "no route yet"),
            Err(e) => tracing::debug!(%topic, error = %e, "route refresh failed"),
        }
    }
}

/// Asks each NameServer in turn for `topic`'s route; `Ok(None)` when they know no such topic.
pub async fn fetch(
    client: &RemotingClient,
    namesrvs: &[String],
    topic: &str,
    timeout: Duration,
) -> Result<Option<TopicRouteData>, ClientError> {
    let mut last = None;
    for addr in namesrvs {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: Some(true),
        };
        let request =
            RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(&header);
        match client.invoke(addr, request, timeout).await {
            Ok(reply) if reply.code == response::SUCCESS => {
                let data = from_json(&reply.body).map_err(|e| {
                    ClientError::Protocol(format!("route of {topic} from {addr}: {e}"))
                })?;
                return Ok(Some(data));
            }
            Ok(reply) if reply.code == response::TOPIC_NOT_EXIST => return Ok(None),
            Ok(reply) => {
                last = Some(ClientError::Broker {
                    code: reply.code,
                    remark: reply.remark.unwrap_or_default(),
                })
            }
            Err(e) => last = Some(ClientError::Transport(e.to_string())),
        }
    }
    Err(last
        .unwrap_or_else(|| ClientError::Config("no NameServer address (set NAMESRV_ADDR)".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_core::model::{BrokerData, QueueData};

    fn data(addrs: &[(i64, &str)]) -> TopicRouteData {
        let broker = BrokerData {
            broker_addrs: addrs.iter().map(|(id, a)| (*id, (*a).to_owned())).collect(),
            broker_name: "broker-a".into(),
            ..BrokerData::default()
        };
        let queues = QueueData {
            broker_name: "broker-a".into(),
            perm: perm::READ | perm::WRITE,
            read_queue_nums: 2,
            write_queue_nums: 2,
            ..QueueData::default()
        };
        TopicRouteData {
            broker_datas: vec![broker],
            queue_datas: vec![queues],
            ..Default::default()
        }
    }

    #[test]
    fn consumers_read_the_master_or_while_it_is_gone_a_slave() {
        let both = TopicRoute::from_data("T", &data(&[(0, "m:1"), (2, "s2:1"), (1, "s1:1")]), 8);
        assert_eq!(both.readers["broker-a"], "m:1");
        assert_eq!((both.write_queues.len(), both.read_queues.len()), (2, 2));
        let slaves = TopicRoute::from_data("T", &data(&[(2, "s2:1"), (1, "s1:1")]), 8);
        assert_eq!(slaves.readers["broker-a"], "s1:1", "the slave of lowest id");
        assert!(slaves.masters.is_empty() && slaves.write_queues.is_empty(), "no one to write to");
        assert_eq!(slaves.read_queues.len(), 2, "but the queues can be read");
    }

    #[test]
    fn an_ordered_topic_writes_the_queues_its_conf_names_even_with_a_broker_down() {
        let mut ordered = data(&[(1, "s1:1")]);
        ordered.order_topic_conf = Some("broker-b:2;broker-a:3;nonsense;broker-c:x".into());
        let route = TopicRoute::from_data("T", &ordered, 8);
        assert!(route.ordered);
        let names: Vec<(String, i32)> =
            route.write_queues.iter().map(|q| (q.broker_name.clone(), q.queue_id)).collect();
        let want =
            [("broker-b", 0), ("broker-b", 1), ("broker-a", 0), ("broker-a", 1), ("broker-a", 2)];
        assert_eq!(
            names,
            want.map(|(b, q)| (b.to_owned(), q)),
            "in order, no master, still written"
        );
        assert_eq!(route.read_queues.len(), 2, "consumers read what the brokers serve");
        let mut huge = data(&[(0, "m:1")]);
        huge.order_topic_conf = Some("broker-a:2147483647".into());
        assert_eq!(TopicRoute::from_data("T", &huge, i32::MAX).write_queues.len(), 1024);
        let plain = TopicRoute::from_data("T", &data(&[(0, "m:1")]), 8);
        assert!(!plain.ordered, "no orderTopicConf");
    }

    #[test]
    fn pulls_follow_the_suggested_broker_while_the_route_has_it() {
        let both = TopicRoute::from_data("T", &data(&[(0, "m:1"), (1, "s1:1")]), 8);
        assert_eq!(both.reader("broker-a", 0).unwrap(), "m:1");
        assert_eq!(both.reader("broker-a", 1).unwrap(), "s1:1", "a lagging consumer's slave");
        assert_eq!(both.reader("broker-a", 7).unwrap(), "m:1", "an absent id: the reader");
        let slave = TopicRoute::from_data("T", &data(&[(1, "s1:1")]), 8);
        assert_eq!(slave.reader("broker-a", 0).unwrap(), "s1:1", "the master is gone");
        assert_eq!(slave.reader("broker-b", 0), None);
    }
}
