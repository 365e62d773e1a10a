//! `petrel console`: a web page for operators, served by the binary with its page built in.
//! The page calls a small JSON API, and each call runs a `petrel admin` command in process
//! (the same code, so the page and the command line never disagree): the cluster and its
//! brokers' rates and configuration (read and set), topics (create, status), consumer groups
//! and their lag per queue (reset), messages by key, time and id with each group's track
//! (sent, sent again, handed to a member).

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Args, Parser};
use petrel::http::{read_request, respond, Request};
use tokio::net::{TcpListener, TcpStream};

use super::admin::{execute, AdminLine};
use super::{announce, ShutdownSignal};

/// The page, with its script and styles: no assets to find at run time.
const PAGE: &str = include_str!("page.html");

#[derive(Args, Debug)]
pub struct ConsoleArgs {
    /// NameServer address(es), `host:port;host:port` (default: $NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrvAddr")]
    namesrv: Option<String>,
    /// The port to serve the page on (0: one the kernel picks).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The address to serve it on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
}

pub async fn run(args: ConsoleArgs) -> Result<(), String> {
    let namesrv = args
        .namesrv
        .or_else(|| std::env::var("NAMESRV_ADDR").ok())
        .filter(|n| !n.trim().is_empty())
        .ok_or("no NameServer: give -n host:port or set NAMESRV_ADDR")?;
    let listener = TcpListener::bind((args.bind.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.bind, args.port))?;
    let local: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    announce(&format!("Console: http://{local}/   NameServer: {namesrv}"));
    let shutdown = ShutdownSignal::install()?;
    let namesrv = Arc::new(namesrv);
    let serving = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let namesrv = namesrv.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(stream, &namesrv).await {
                            tracing::debug!(error = %e, "console request failed");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "the console cannot accept"),
            }
        }
    };
    tokio::select! {
        biased;
        () = shutdown.wait() => Ok(()),
        () = serving => Ok(()),
    }
}

async fn serve(stream: TcpStream, namesrv: &str) -> std::io::Result<()> {
    let Some((mut stream, request)) = read_request(stream).await? else { return Ok(()) };
    if request.method == "GET" && request.path == "/" {
        return respond(&mut stream, "200 OK", "text/html; charset=utf-8", PAGE.as_bytes()).await;
    }
    let (status, body) = match api(&request, namesrv).await {
        Ok(json) => ("200 OK", json),
        Err((status, message)) => (status, serde_json::json!({ "error": message })),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    respond(&mut stream, status, "application/json", &body).await
}

/// What an API call answers: the admin command's JSON, or an HTTP status and why.
type Answer = Result<serde_json::Value, Refused>;

/// The header the page sends with every API call. A page of another site cannot send it
/// without the browser asking this server first (CORS), which it never allows: so a link or
/// form elsewhere cannot reset offsets or start a heavy query through an operator's browser.
const API_HEADER: &str = "X-Petrel-Console";

/// The most messages a query by time lists.
const MESSAGES_BY_TIME_MAX: usize = 1000;

async fn api(request: &Request, namesrv: &str) -> Answer {
    if request.path.starts_with("/api/") && request.header(API_HEADER) != Some("1") {
        let why = format!("the API answers the console's own page only ({API_HEADER}: 1)");
        return Err(("403 Forbidden", why));
    }
    if (request.method.as_str(), request.path.as_str()) == ("GET", "/api/about") {
        return Ok(serde_json::json!({ "namesrv": namesrv }));
    }
    admin(&command_line(request, namesrv).await?, namesrv).await
}

/// An API call refused: the HTTP status and why.
type Refused = (&'static str, String);

/// The request's field `name`, trimmed; a 400 when it is missing or blank.
fn field(request: &Request, name: &str) -> Result<String, Refused> {
    match request.fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(value) => Ok(value.to_owned()),
        None => Err(("400 Bad Request", format!("the field {name} is missing"))),
    }
}

/// The `petrel admin` line a call of the cluster, topic and consumer pages runs; the message
/// page's calls are [`message_line`]'s.
async fn command_line(request: &Request, namesrv: &str) -> Result<Vec<String>, Refused> {
    let field = |name: &str| field(request, name);
    Ok(match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/api/cluster") => words(&["clusterList"]),
        ("GET", "/api/broker-config") => words(&["getBrokerConfig", "-b", &field("addr")?]),
        ("POST", "/api/broker-config") => {
            let (addr, key, value) = (field("addr")?, field("key")?, field("value")?);
            words(&["updateBrokerConfig", "-b", &addr, "-k", &key, "-v", &value])
        }
        ("GET", "/api/namesrv-config") => words(&["getNamesrvConfig"]),
        ("POST", "/api/namesrv-config") => {
            let (key, value) = (field("key")?, field("value")?);
            words(&["updateNamesrvConfig", "-k", &key, "-v", &value])
        }
        ("POST", "/api/write-perm") => {
            let command = match field("writeable")?.as_str() {
                "true" => "addWritePerm",
                "false" => "wipeWritePerm",
                other => {
                    let why = format!("writeable is true or false, not {other}");
                    return Err(("400 Bad Request", why));
                }
            };
            words(&[command, "-b", &field("broker")?])
        }
        ("GET", "/api/topics") => words(&["topicList"]),
        ("GET", "/api/topic") => words(&["topicStatus", "-t", &field("name")?]),
        ("GET", "/api/route") => words(&["topicRoute", "-t", &field("name")?]),
        ("POST", "/api/topic") => {
            let queues = field("queues").unwrap_or_else(|_| "8".into());
            let cluster = first_cluster(namesrv).await?;
            let (name, queues) = (field("name")?, queues);
            words(&["updateTopic", "-c", &cluster, "-t", &name, "-r", &queues, "-w", &queues])
        }
        ("GET", "/api/groups") => words(&["consumerProgress"]),
        ("GET", "/api/group") => words(&["consumerProgress", "-g", &field("name")?]),
        ("POST", "/api/reset") => {
            let (group, topic, time) = (field("group")?, field("topic")?, field("time")?);
            words(&["resetOffsetByTime", "-g", &group, "-t", &topic, "-s", &time])
        }
        _ => return message_line(request, namesrv).await,
    })
}

/// The `petrel admin` line a call of the message page runs.
async fn message_line(request: &Request, namesrv: &str) -> Result<Vec<String>, Refused> {
    let field = |name: &str| field(request, name);
    Ok(match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/api/messages") => {
            words(&["queryMsgByKey", "-t", &field("topic")?, "-k", &field("key")?])
        }
        ("GET", "/api/messages-by-time") => {
            let (topic, begin, end) = (field("topic")?, field("begin")?, field("end")?);
            // At most a page's worth: a day of a busy topic would not fit in memory.
            let max = MESSAGES_BY_TIME_MAX.to_string();
            words(&[
                "printMsg", "-t", &topic, "-b", &begin, "-e", &end, "-d", "false", "--max", &max,
            ])
        }
        ("POST", "/api/send") => {
            let (topic, body) = (field("topic")?, field("body")?);
            let mut line = words(&["sendMessage", "-t", &topic, "-p", &body]);
            for (flag, name) in [("-c", "tags"), ("-k", "keys")] {
                if let Ok(value) = field(name) {
                    line.extend([flag.to_owned(), value]);
                }
            }
            line
        }
        ("POST", "/api/resend") => {
            // `id` is the offset message id, as for consume-again.
            words(&["queryMsgById", "-i", &field("id")?, "-t", &field("topic")?, "-s", "true"])
        }
        ("GET", "/api/message") => {
            words(&["queryMsgByUniqueKey", "-t", &field("topic")?, "-i", &field("id")?])
        }
        ("POST", "/api/consume-again") => {
            // `id` is the offset message id: it names the broker holding the message.
            let (topic, id, group) = (field("topic")?, field("id")?, field("group")?);
            let client = match field("client") {
                Ok(client) => client,
                Err(_) => first_member(namesrv, &group).await?,
            };
            words(&["queryMsgById", "-i", &id, "-t", &topic, "-g", &group, "-d", &client])
        }
        ("GET", _) => return Err(("404 Not Found", format!("no {}", request.path))),
        _ => {
            return Err(("405 Method Not Allowed", format!("{} {}", request.method, request.path)))
        }
    })
}

fn words(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

/// Runs `petrel admin <line> -n namesrv --json` in process.
async fn admin(line: &[String], namesrv: &str) -> Answer {
    let mut args = line.to_vec();
    args.extend(["-n".to_owned(), namesrv.to_owned(), "--json".to_owned()]);
    let parsed = AdminLine::try_parse_from(&args)
        .map_err(|e| ("400 Bad Request", e.to_string().lines().next().unwrap_or("").to_owned()))?;
    match execute(parsed.command).await {
        Ok(output) => Ok(output.into_json()),
        Err(e) => Err(("502 Bad Gateway", e)),
    }
}

/// The member a message is handed to when the page names none: the group's first.
async fn first_member(namesrv: &str, group: &str) -> Result<String, Refused> {
    let members = admin(&words(&["consumerConnection", "-g", group]), namesrv).await?;
    members["connectionSet"]
        .as_array()
        .and_then(|set| set.first())
        .and_then(|member| member["clientId"].as_str())
        .map(str::to_owned)
        .ok_or(("502 Bad Gateway", format!("no member of {group} is online")))
}

/// The cluster a topic created from the page goes to: the first the NameServer lists.
async fn first_cluster(namesrv: &str) -> Result<String, Refused> {
    let clusters = admin(&words(&["clusterList"]), namesrv).await?;
    clusters
        .as_array()
        .and_then(|brokers| brokers.first())
        .and_then(|broker| broker["cluster"].as_str())
        .map(str::to_owned)
        .ok_or(("502 Bad Gateway", "the NameServer knows no cluster".to_owned()))
}
