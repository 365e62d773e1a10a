//! Configuration files in RocketMQ's form: Java properties (`key=value`, `#` comments) with
//! RocketMQ's property names, so an operator's existing `namesrv.conf` works unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;

/// A configuration problem, told so the operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config property {key}={value} is not valid: expected {expected}")]
    Invalid { key: String, value: String, expected: &'static str },
}

/// Properties as read from a file, in the order of their names; the names asked for so far
/// (to suggest one for a misspelt name); and each asked name with the value it then held, in
/// the order asked (what `-p` prints).
#[derive(Debug, Clone, Default)]
pub struct Properties(
    BTreeMap<String, String>,
    BTreeSet<&'static str>,
    Vec<(&'static str, String)>,
);

impl Properties {
    /// Parses Java properties text: `key=value` or `key: value` or `key value`, `#` and `!`
    /// comments, surrounding whitespace trimmed. Line continuations are not supported.
    pub fn parse(text: &str) -> Properties {
        let mut map = BTreeMap::new();
        for (key, value) in text.lines().filter_map(property_line) {
            map.insert(key.to_owned(), value.to_owned());
        }
        Properties(map, BTreeSet::new(), Vec::new())
    }

    /// The properties not consumed yet, by name.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Sets `key` as a file line would, overriding the file (command-line options).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_owned(), value.into());
    }

    /// Records the value `key` ended with when its setting was adjusted after `apply` (a
    /// master's brokerId set to 0, a size rounded), for `render_effective`.
    pub fn record(&mut self, key: &'static str, value: impl std::fmt::Display) {
        match self.2.iter_mut().rev().find(|(k, _)| *k == key) {
            Some((_, shown)) => *shown = value.to_string(),
            None => self.2.push((key, value.to_string())),
        }
    }

    /// Whether `key` was given a value (not empty) and not consumed yet.
    pub fn has_value(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|value| !value.is_empty())
    }

    /// `key=value` lines, one per name asked for, each with the value its setting ended with:
    /// the effective configuration in RocketMQ's names.
    pub fn render_effective(&self) -> String {
        let mut seen = BTreeSet::new();
        let mut out = String::new();
        for (key, value) in &self.2 {
            if seen.insert(*key) {
                out.push_str(key);
                out.push('=');
                out.push_str(value);
                out.push('\n');
            }
        }
        out
    }

    pub fn load(path: &Path) -> Result<Properties, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Ok(Properties::parse(&text))
    }

    /// Sets `target` from property `key` when present.
    pub fn apply<T: FromStr + std::fmt::Display>(
        &mut self,
        key: &'static str,
        target: &mut T,
        expected: &'static str,
    ) -> Result<(), ConfigError> {
        self.1.insert(key);
        if let Some(value) = self.0.remove(key) {
            *target = value.parse().map_err(|_| ConfigError::Invalid {
                key: key.to_owned(),
                value: value.clone(),
                expected,
            })?;
        }
        self.2.push((key, target.to_string()));
        Ok(())
    }

    /// The names of the properties no `apply` consumed yet.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Properties no `apply` consumed: logged, as RocketMQ ignores unknown names too, with
    /// the known name it is likely a misspelling of.
    pub fn warn_unused(&self, what: &str) {
        for key in self.0.keys() {
            match self.nearest(key) {
                Some(known) => tracing::warn!(
                    property = %key,
                    "{what}: unknown property ignored; did you mean {known}?"
                ),
                None => {
                    tracing::warn!(property = %key, "{what}: unknown or unsupported property ignored")
                }
            }
        }
    }

    /// The name asked for that `key` is closest to, when it is within two edits of it (or
    /// differs only in case).
    pub fn nearest(&self, key: &str) -> Option<&'static str> {
        let distance = |known: &str| edit_distance(&key.to_lowercase(), &known.to_lowercase());
        self.1
            .iter()
            .map(|known| (distance(known), *known))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| k)
    }
}

/// A running configuration in its property names, a `key=value` line each with the value it
/// holds, sorted by key as RocketMQ sorts them (GET_BROKER_CONFIG, GET_NAMESRV_CONFIG):
/// `apply` applies no property to a copy of the configuration, which records every name it
/// reads with the value it keeps.
pub fn effective(apply: impl FnOnce(&mut Properties) -> Result<(), ConfigError>) -> String {
    let mut props = Properties::default();
    match apply(&mut props) {
        Ok(()) => {
            let text = props.render_effective();
            let sorted: BTreeMap<&str, &str> =
                text.lines().filter_map(|line| line.split_once('=')).collect();
            sorted.into_iter().map(|(key, value)| format!("{key}={value}\n")).collect()
        }
        Err(e) => format!("# the configuration does not read back: {e}\n"),
    }
}

/// The transport's properties, the NameServer's and the broker's alike. Seconds of 0 turn a
/// timeout off, as RocketMQ's idle check does.
pub fn apply_server(
    props: &mut Properties,
    server: &mut petrel_net::transport::ServerConfig,
) -> Result<(), ConfigError> {
    props.apply("serverChannelMaxConnections", &mut server.connections_max, "a count")?;
    props.apply(
        "serverChannelMaxConnectionsPerSource",
        &mut server.connections_per_source_max,
        "a count",
    )?;
    props.apply("frameMaxLength", &mut server.connection.frame_bytes_max, "bytes")?;
    let seconds = |timeout: Option<std::time::Duration>| timeout.map_or(0, |t| t.as_secs());
    let mut idle = seconds(server.connection.idle_timeout);
    props.apply("serverChannelMaxIdleTimeSeconds", &mut idle, "seconds")?;
    server.connection.idle_timeout = (idle > 0).then(|| std::time::Duration::from_secs(idle));
    let mut frame = seconds(server.connection.frame_read_timeout);
    props.apply("serverChannelFrameReadTimeoutSeconds", &mut frame, "seconds")?;
    server.connection.frame_read_timeout =
        (frame > 0).then(|| std::time::Duration::from_secs(frame));
    let counts = [
        ("serverChannelMaxConnections", server.connections_max),
        ("serverChannelMaxConnectionsPerSource", server.connections_per_source_max),
    ];
    match counts.into_iter().find(|(_, count)| *count == 0) {
        Some((key, _)) => Err(ConfigError::Invalid {
            key: key.into(),
            value: "0".into(),
            expected: "at least 1: with 0 every client is refused",
        }),
        None => Ok(()),
    }
}

/// A properties line's name and value: `key=value`, `key: value` or `key value`, trimmed;
/// `None` for a blank line or a `#` or `!` comment.
fn property_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
        return None;
    }
    let split = line.find(['=', ':']).or_else(|| line.find(char::is_whitespace));
    Some(match split {
        Some(at) => (line[..at].trim(), line[at + 1..].trim()),
        None => (line, ""),
    })
}

/// A running configuration changed by UPDATE_BROKER_CONFIG or UPDATE_NAMESRV_CONFIG.
#[derive(Debug)]
pub struct Updated<C> {
    /// The configuration with the update applied, checked as a start checks it.
    pub config: C,
    /// The properties as the request gave them, by name (what the config file is given).
    pub given: Vec<(String, String)>,
}

/// Applies an update's Java properties text to a copy of `current`, as RocketMQ's
/// `Configuration.update` does, and checks the result. A name in `black_list` is refused with
/// NO_PERMISSION and RocketMQ's remark. A name the configuration does not read, a value that
/// does not parse, and a configuration a start would refuse are refused with
/// INVALID_PARAMETER and what is wrong: RocketMQ ignores the first and takes the others,
/// leaving the operator to find out at the next start.
pub fn update<C: Clone>(
    current: &C,
    body: &[u8],
    black_list: &[&str],
    apply: impl FnOnce(&mut C, &mut Properties) -> Result<(), ConfigError>,
    validate: impl FnOnce(&C) -> Result<(), String>,
) -> Result<Updated<C>, petrel_core::broker::Refusal> {
    use petrel_core::broker::Refusal;
    use petrel_core::codes::response::{INVALID_PARAMETER, NO_PERMISSION};
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::new(INVALID_PARAMETER, "the properties are not UTF-8 text"))?;
    let mut props = Properties::parse(text);
    let given = props.pairs();
    if let Some((key, _)) = given.iter().find(|(key, _)| black_list.contains(&key.as_str())) {
        let why =
            format!("Can not update config in black list. ({key} cannot be changed remotely)");
        return Err(Refusal::new(NO_PERMISSION, why));
    }
    let mut config = current.clone();
    apply(&mut config, &mut props).map_err(|e| Refusal::new(INVALID_PARAMETER, e.to_string()))?;
    if let Some(unknown) = props.names().next() {
        let hint = props.nearest(unknown).map(|known| format!("; did you mean {known}?"));
        let why = format!("no property {unknown} is read here{}", hint.unwrap_or_default());
        return Err(Refusal::new(INVALID_PARAMETER, why));
    }
    validate(&config).map_err(|e| {
        Refusal::new(INVALID_PARAMETER, format!("the configuration is refused: {e}"))
    })?;
    Ok(Updated { config, given })
}

/// Writes `given` into the properties file at `path` (made if missing), atomically: the first
/// line of each name takes the new value, its later lines go, names not there are added at
/// the end, and comments and other lines stay as they are. (RocketMQ rewrites the file with
/// every setting instead, dropping the operator's comments.) A symbolic link is followed, and
/// the file keeps its permissions.
pub fn write_into_file(path: &Path, given: &[(String, String)]) -> std::io::Result<()> {
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let path = resolved.as_path();
    let permissions = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let old = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        read => read?,
    };
    let mut written = BTreeSet::new();
    let mut text = String::with_capacity(old.len() + 64);
    for line in old.lines() {
        let set = property_line(line)
            .and_then(|(key, _)| given.iter().find(|(k, _)| k == key))
            .map(|(key, value)| (key, value, written.insert(key.as_str())));
        match set {
            Some((key, value, true)) => text.push_str(&format!("{key}={value}\n")),
            Some((_, _, false)) => {}
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    for (key, value) in given.iter().filter(|(key, _)| !written.contains(key.as_str())) {
        text.push_str(&format!("{key}={value}\n"));
    }
    crate::fsutil::write_atomically(path, text.as_bytes())?;
    match permissions {
        Some(permissions) => std::fs::set_permissions(path, permissions),
        None => Ok(()),
    }
}

/// What an update is answered with (its remark): which properties took effect and which wait
/// for the next start, and where they were written.
pub fn update_remark(given: &[(String, String)], live: &[&str], file: Option<&Path>) -> String {
    let (now, later): (Vec<&str>, Vec<&str>) =
        given.iter().map(|(key, _)| key.as_str()).partition(|key| live.contains(key));
    let mut parts = Vec::new();
    if !now.is_empty() {
        parts.push(format!("in effect now: {}", now.join(", ")));
    }
    if !later.is_empty() {
        parts.push(format!("in effect at the next start: {}", later.join(", ")));
    }
    parts.push(match file {
        Some(path) => format!("written to {}", path.display()),
        None => "not written: the server was started without a config file (-c), so the \
                 change lasts until it stops"
            .to_owned(),
    });
    parts.join("; ")
}

/// Levenshtein distance: the fewest inserted, deleted or replaced characters from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let replace = previous[j] + usize::from(ca != *cb);
            current.push(replace.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_properties() {
        let mut props = Properties::parse(
            "# c\n listenPort = 9877\n!x\nkvConfigPath:/tmp/kv.json\nflag true\n",
        );
        let mut port = 0u16;
        props.apply("listenPort", &mut port, "a port").unwrap();
        assert_eq!(port, 9877);
        let mut flag = false;
        props.apply("flag", &mut flag, "true or false").unwrap();
        assert!(flag);
        let mut path = String::new();
        props.apply("kvConfigPath", &mut path, "a path").unwrap();
        assert_eq!(path, "/tmp/kv.json");
        let err = Properties::parse("listenPort=abc")
            .apply("listenPort", &mut port, "a port")
            .unwrap_err();
        assert!(err.to_string().contains("listenPort=abc"));
    }

    #[test]
    fn a_misspelt_name_is_matched_to_the_known_one() {
        let mut props = Properties::parse("flushDiskTyp=SYNC_FLUSH\nLISTENPORT=1\nzzz=1\n");
        let mut kind = String::new();
        props.apply("flushDiskType", &mut kind, "a type").unwrap();
        let mut port = 0u16;
        props.apply("listenPort", &mut port, "a port").unwrap();
        assert_eq!(kind, "", "a misspelt name sets nothing");
        assert_eq!(props.nearest("flushDiskTyp"), Some("flushDiskType"));
        assert_eq!(props.nearest("LISTENPORT"), Some("listenPort"));
        assert_eq!(props.nearest("zzz"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[derive(Debug, Clone, Default, PartialEq)]
    struct Settings {
        port: u16,
        open: bool,
    }

    fn apply(settings: &mut Settings, props: &mut Properties) -> Result<(), ConfigError> {
        props.apply("listenPort", &mut settings.port, "a port")?;
        props.apply("open", &mut settings.open, "true or false")
    }

    fn refused(body: &str) -> (i32, String) {
        let no_zero = |s: &Settings| if s.port == 0 { Err("port 0".into()) } else { Ok(()) };
        let current = Settings { port: 1, open: false };
        let refusal = update(&current, body.as_bytes(), &["secret"], apply, no_zero).unwrap_err();
        (refusal.code, refusal.remark)
    }

    #[test]
    fn an_update_changes_a_copy_and_refuses_what_a_start_would() {
        let current = Settings { port: 1, open: false };
        let updated = update(&current, b"open=true\n", &["secret"], apply, |_| Ok(())).unwrap();
        assert_eq!(updated.config, Settings { port: 1, open: true });
        assert_eq!(updated.given, vec![("open".to_owned(), "true".to_owned())]);
        assert!(!current.open, "the running configuration is not touched");
        let (code, remark) = refused("secret=1");
        assert_eq!(code, 16);
        assert!(remark.starts_with("Can not update config in black list."), "{remark}");
        let (code, remark) = refused("listenPrt=2");
        assert_eq!(code, 29);
        assert!(remark.contains("did you mean listenPort?"), "{remark}");
        let (code, remark) = refused("listenPort=x");
        assert_eq!((code, remark.contains("listenPort=x")), (29, true));
        let (code, remark) = refused("listenPort=0");
        assert_eq!((code, remark.contains("port 0")), (29, true));
    }

    #[test]
    fn an_update_is_written_into_the_file_keeping_its_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.conf");
        std::fs::write(&path, "# ours\nlistenPort = 1\nopen=false\nlistenPort=3\n").unwrap();
        let given =
            [("listenPort", "2"), ("brokerName", "b")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        // Through a link to it, and private to its owner: both stay so.
        let link = dir.path().join("link.conf");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::symlink(&path, &link).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            write_into_file(&link, &given).unwrap();
            assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        #[cfg(not(unix))]
        write_into_file(&path, &given).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "# ours\nlistenPort=2\nopen=false\nbrokerName=b\n");
        let fresh = dir.path().join("new.conf");
        write_into_file(&fresh, &given[..1]).unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "listenPort=2\n");
        let remark = update_remark(&given, &["brokerName"], None);
        assert!(
            remark.starts_with(
                "in effect now: brokerName; in effect at the next start: listenPort; not written"
            ),
            "{remark}"
        );
    }
}
