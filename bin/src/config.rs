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

/// Properties as read from a file, in the order of their names, and the names asked for so
/// far (to suggest one for a misspelt name).
#[derive(Debug, Clone, Default)]
pub struct Properties(BTreeMap<String, String>, BTreeSet<&'static str>);

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
        Properties(map, BTreeSet::new())
    }

    pub fn load(path: &Path) -> Result<Properties, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Ok(Properties::parse(&text))
    }

    /// Sets `target` from property `key` when present.
    pub fn apply<T: FromStr>(
        &mut self,
        key: &'static str,
        target: &mut T,
        expected: &'static str,
    ) -> Result<(), ConfigError> {
        self.1.insert(key);
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
}
