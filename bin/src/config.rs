//! Configuration files in RocketMQ's form: Java properties (`key=value`, `#` comments) with
//! RocketMQ's property names, so an operator's existing `namesrv.conf` works unchanged.

use std::collections::BTreeMap;
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

/// Properties as read from a file, in the order of their names.
#[derive(Debug, Clone, Default)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Parses Java properties text: `key=value` or `key: value` or `key value`, `#` and `!`
    /// comments, surrounding whitespace trimmed. Line continuations are not supported.
    pub fn parse(text: &str) -> Properties {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let split = line.find(['=', ':']).or_else(|| line.find(char::is_whitespace));
            let (key, value) = match split {
                Some(at) => (line[..at].trim(), line[at + 1..].trim()),
                None => (line, ""),
            };
            map.insert(key.to_owned(), value.to_owned());
        }
        Properties(map)
    }

    pub fn load(path: &Path) -> Result<Properties, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Ok(Properties::parse(&text))
    }

    /// Sets `target` from property `key` when present.
    pub fn apply<T: FromStr>(
        &mut self,
        key: &str,
        target: &mut T,
        expected: &'static str,
    ) -> Result<(), ConfigError> {
        let Some(value) = self.0.remove(key) else { return Ok(()) };
        *target = value.parse().map_err(|_| ConfigError::Invalid {
            key: key.to_owned(),
            value: value.clone(),
            expected,
        })?;
        Ok(())
    }

    /// The names of the properties no `apply` consumed yet.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Properties no `apply` consumed: logged, as RocketMQ ignores unknown names too.
    pub fn warn_unused(&self, what: &str) {
        for key in self.0.keys() {
            tracing::warn!(property = %key, "{what}: unknown or unsupported property ignored");
        }
    }
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
}
