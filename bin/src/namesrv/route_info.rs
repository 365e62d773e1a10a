//! GET_ROUTEINFO_BY_TOPIC (105): the brokers and queues of a topic.
//!
//! Request: `GetRouteInfoRequestHeader` (topic, acceptStandardJsonOnly). Response: a
//! `TopicRouteData` body, or TOPIC_NOT_EXIST (17) with RocketMQ's remark. The body's JSON follows
//! the client: fastjson's unquoted integer keys for versions below 401 (V4_9_4), standard JSON
//! from 401 on or when the client asks for it.

use petrel_core::kv::NAMESPACE_ORDER_TOPIC_CONFIG;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::GetRouteInfoRequestHeader;

use super::{ok_with_body, Namesrv, Reply};

/// The first RocketMQ version (V4_9_4) whose clients get standard JSON routes.
pub const VERSION_STANDARD_JSON_MIN: i32 = 401;

pub(super) fn handle(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let header: GetRouteInfoRequestHeader = request.header()?;
    let Some(mut route) = namesrv.table().topic_route(&header.topic) else {
        return Ok(RemotingCommand::response(
            response::TOPIC_NOT_EXIST,
            format!(
                "No topic route info in name server for the topic: {}\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.",
                header.topic
            ),
        ));
    };
    if namesrv.live().0.order_message_enable {
        route.order_topic_conf =
            namesrv.kv().get(NAMESPACE_ORDER_TOPIC_CONFIG, &header.topic).map(str::to_owned);
    }
    let standard = request.version >= VERSION_STANDARD_JSON_MIN
        || header.accept_standard_json_only == Some(true);
    let style = if standard { JsonStyle::Standard } else { JsonStyle::Fastjson };
    Ok(ok_with_body(to_json(&route, style)))
}
