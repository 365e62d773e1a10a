//! RocketMQ's JSON, both ways: the quirks of fastjson, which writes every JSON body on the Java
//! side, made explicit.
//!
//! - Maps with integer keys (`brokerAddrs`, consumer offset tables) are written by fastjson with
//!   the keys *unquoted*: `{0:"10.0.0.1:10911"}`, which is not JSON. Old clients expect exactly
//!   that, so [`JsonStyle::Fastjson`] writes it; [`JsonStyle::Standard`] quotes the keys and
//!   escapes non-ASCII as `\uXXXX`, as fastjson's BrowserCompatible mode does for clients at
//!   version 401 and above or that ask for standard JSON only.
//! - [`from_json`] accepts both forms: a document that serde_json rejects is retried once with
//!   its bare object keys quoted.
//!
//! No I/O. Inputs are bounded by the frame cap before they get here.

use std::borrow::Cow;
use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

/// Which JSON a peer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// fastjson's default: integer map keys unquoted, UTF-8 as is.
    Fastjson,
    /// Standard JSON: every key quoted, non-ASCII escaped as `\uXXXX`.
    Standard,
}

/// Encodes `value` in the given style. Rust integer map keys (`BTreeMap<i64, _>`) are the ones
/// fastjson leaves unquoted; string keys are always quoted.
pub fn to_json<T: Serialize + ?Sized>(value: &T, style: JsonStyle) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let formatter = RocketFormatter { style, key: KeyState::Outside };
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing plain data into a Vec cannot fail; a failure here is a bug in a Serialize impl.
    value.serialize(&mut serializer).expect("serializing model data into memory cannot fail");
    out
}

/// Encodes `value` as fastjson's pretty form (`JSON.toJSONString(value, true)`), what mqadmin
/// prints and what RocketMQ's broker puts in some bodies: a tab per level, no space after a
/// colon, `[]` and `{}` when empty.
pub fn to_pretty_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(256);
    let formatter = FastjsonPretty(serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer).expect("serializing model data into memory cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// serde_json's pretty layout with fastjson's colon.
struct FastjsonPretty<'a>(serde_json::ser::PrettyFormatter<'a>);

impl Formatter for FastjsonPretty<'_> {
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b":")
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

/// Decodes JSON that may carry fastjson's unquoted integer keys.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(first) => match quote_bare_keys(bytes) {
            Cow::Owned(fixed) => serde_json::from_slice(&fixed),
            Cow::Borrowed(_) => Err(first),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// Not writing an object key.
    Outside,
    /// Inside a key whose opening quote is held back until we know it is a string.
    Pending,
    /// The held-back quote was written: this key is a string.
    Quoted,
    /// The key was an integer and was written bare.
    Bare,
}

struct RocketFormatter {
    style: JsonStyle,
    key: KeyState,
}

impl RocketFormatter {
    fn open_quote<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        if self.key == KeyState::Pending {
            self.key = KeyState::Quoted;
            writer.write_all(b"\"")?;
        }
        Ok(())
    }
}

/// Every integer writer marks a pending map key as bare, so a map keyed by any integer type
/// gets fastjson's unquoted keys.
macro_rules! integer_writers {
    ($($name:ident: $ty:ty),* $(,)?) => {$(
        fn $name<W: ?Sized + io::Write>(&mut self, w: &mut W, value: $ty) -> io::Result<()> {
            self.mark_bare_key();
            write!(w, "{value}")
        }
    )*};
}

impl Formatter for RocketFormatter {
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.key = KeyState::Pending;
        if first {
            Ok(())
        } else {
            w.write_all(b",")
        }
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.key = KeyState::Outside;
        Ok(())
    }

    fn begin_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        match (self.key, self.style) {
            (KeyState::Pending, JsonStyle::Fastjson) => Ok(()),
            (KeyState::Pending, JsonStyle::Standard) => {
                self.key = KeyState::Quoted;
                w.write_all(b"\"")
            }
            _ => w.write_all(b"\""),
        }
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        match self.key {
            KeyState::Bare => Ok(()),
            // An empty string key: nothing opened the quote yet.
            KeyState::Pending => w.write_all(b"\"\""),
            KeyState::Quoted | KeyState::Outside => w.write_all(b"\""),
        }
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        s: &str,
    ) -> io::Result<()> {
        self.open_quote(w)?;
        if self.style == JsonStyle::Fastjson || s.is_ascii() {
            return w.write_all(s.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in s.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        e: CharEscape,
    ) -> io::Result<()> {
        self.open_quote(w)?;
        let text: &[u8] = match e {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => {
                return write!(w, "\\u{byte:04x}");
            }
        };
        w.write_all(text)
    }

    integer_writers!(
        write_i8: i8,
        write_i16: i16,
        write_i32: i32,
        write_i64: i64,
        write_i128: i128,
        write_u8: u8,
        write_u16: u16,
        write_u32: u32,
        write_u64: u64,
        write_u128: u128,
    );
}

impl RocketFormatter {
    fn mark_bare_key(&mut self) {
        if self.key == KeyState::Pending {
            self.key = KeyState::Bare;
        }
    }
}

/// Writes `entries` as fastjson writes a map whose keys are objects (a `MessageQueue`): each key
/// is the object itself, `{{"brokerName":"b","queueId":0,"topic":"t"}:{..}}`. Not JSON, but
/// what mqadmin and the dashboard parse (TopicStatsTable, ConsumeStats).
pub fn write_object_keyed<K: Serialize, V: Serialize>(
    out: &mut Vec<u8>,
    entries: &[(K, V)],
    style: JsonStyle,
) {
    out.push(b'{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&to_json(key, style));
        out.push(b':');
        out.extend_from_slice(&to_json(value, style));
    }
    out.push(b'}');
}

/// An object read by [`read_object_keyed`]: its plain fields, and its object-keyed map's
/// entries.
pub type ObjectKeyed<K, V> = (serde_json::Map<String, serde_json::Value>, Vec<(K, V)>);

/// Reads a JSON object one of whose fields, `keyed`, is a map written by
/// [`write_object_keyed`]: that field's entries, and the other fields as values. Keys of the
/// other fields must be quoted.
pub fn read_object_keyed<K: DeserializeOwned, V: DeserializeOwned>(
    bytes: &[u8],
    keyed: &str,
) -> Result<ObjectKeyed<K, V>, serde_json::Error> {
    let mut cursor = Cursor { bytes, at: 0 };
    let (mut fields, mut entries) = (serde_json::Map::new(), Vec::new());
    cursor.expect(b'{')?;
    if !cursor.eat(b'}') {
        loop {
            let name: String = cursor.value()?;
            cursor.expect(b':')?;
            if name == keyed {
                cursor.expect(b'{')?;
                if !cursor.eat(b'}') {
                    loop {
                        let key: K = cursor.value()?;
                        cursor.expect(b':')?;
                        entries.push((key, cursor.value()?));
                        if cursor.eat(b'}') {
                            break;
                        }
                        cursor.expect(b',')?;
                    }
                }
            } else {
                fields.insert(name, cursor.value()?);
            }
            if cursor.eat(b'}') {
                break;
            }
            cursor.expect(b',')?;
        }
    }
    Ok((fields, entries))
}

/// A position in JSON text, reading one value at a time with serde_json.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    /// Consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        let next = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(next);
        next
    }

    fn expect(&mut self, byte: u8) -> Result<(), serde_json::Error> {
        match self.eat(byte) {
            true => Ok(()),
            false => Err(serde::de::Error::custom(format_args!(
                "expected '{}' at byte {}",
                byte as char, self.at
            ))),
        }
    }

    fn value<T: DeserializeOwned>(&mut self) -> Result<T, serde_json::Error> {
        self.skip_space();
        let mut stream =
            serde_json::Deserializer::from_slice(&self.bytes[self.at..]).into_iter::<T>();
        match stream.next() {
            Some(Ok(value)) => {
                self.at += stream.byte_offset();
                Ok(value)
            }
            Some(Err(error)) => Err(error),
            None => Err(serde::de::Error::custom("the text ends where a value was expected")),
        }
    }
}

/// Quotes every bare object key (`{0:"a"}` becomes `{"0":"a"}`). Returns the input unchanged
/// when it has none. Never allocates more than the input's length plus two bytes a key.
pub fn quote_bare_keys(input: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut stack: Vec<u8> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'"' {
            let end = string_end(input, i);
            if let Some(out) = &mut out {
                out.extend_from_slice(&input[i..end]);
            }
            expect_key = false;
            i = end;
            continue;
        }
        if expect_key && !b.is_ascii_whitespace() && b != b'}' {
            let end = input[i..].iter().position(|&c| c == b':').map_or(input.len(), |p| i + p);
            let key = input[i..end].trim_ascii_end();
            let out = out.get_or_insert_with(|| input[..i].to_vec());
            out.push(b'"');
            out.extend_from_slice(key);
            out.push(b'"');
            expect_key = false;
            i += key.len();
            continue;
        }
        match b {
            b'{' | b'[' => {
                stack.push(b);
                expect_key = b == b'{';
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&b'{'),
            _ => {}
        }
        if let Some(out) = &mut out {
            out.push(b);
        }
        i += 1;
    }
    match out {
        Some(fixed) => Cow::Owned(fixed),
        None => Cow::Borrowed(input),
    }
}

/// The index just past the string that opens at `start`, or the input's end if it never closes.
fn string_end(input: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < input.len() {
        match input[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    input.len()
}

#[cfg(test)]
mod tests {
    /// RocketMQ's own vector (`RemotingSerializableTest.testToJson_prettyString`), and the
    /// empty forms.
    #[test]
    fn pretty_json_is_fastjsons() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Listed {
            string_list: Vec<&'static str>,
        }
        let listed = Listed { string_list: vec!["a", "o", "e", "i", "u", "v"] };
        let expected = "{\n\t\"stringList\":[\n\t\t\"a\",\n\t\t\"o\",\n\t\t\"e\",\n\t\t\"i\",\n\t\t\"u\",\n\t\t\"v\"\n\t]\n}";
        assert_eq!(to_pretty_json(&listed), expected);
        let empty = Listed { string_list: Vec::new() };
        assert_eq!(to_pretty_json(&empty), "{\n\t\"stringList\":[]\n}");
    }

    use std::collections::BTreeMap;

    use super::*;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Broker {
        broker_addrs: BTreeMap<i64, String>,
        broker_name: String,
    }

    fn sample() -> Broker {
        let addrs = BTreeMap::from([(0, "10.0.0.1:10911".to_owned()), (1, "b:1".to_owned())]);
        Broker { broker_addrs: addrs, broker_name: "broker-ä".to_owned() }
    }

    #[test]
    fn fastjson_leaves_integer_keys_bare() {
        let text = to_json(&sample(), JsonStyle::Fastjson);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"brokerAddrs":{0:"10.0.0.1:10911",1:"b:1"},"brokerName":"broker-ä"}"#
        );
    }

    #[test]
    fn standard_quotes_keys_and_escapes_non_ascii() {
        let text = to_json(&sample(), JsonStyle::Standard);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"brokerAddrs":{"0":"10.0.0.1:10911","1":"b:1"},"brokerName":"broker-\u00e4"}"#
        );
    }

    #[test]
    fn both_styles_parse_back() {
        for style in [JsonStyle::Fastjson, JsonStyle::Standard] {
            let back: Broker = from_json(&to_json(&sample(), style)).unwrap();
            assert_eq!(back, sample());
        }
    }

    #[test]
    fn every_integer_key_type_is_bare() {
        let small = BTreeMap::from([(5u8, 1), (7u8, 2)]);
        assert_eq!(String::from_utf8(to_json(&small, JsonStyle::Fastjson)).unwrap(), "{5:1,7:2}");
        let wide = BTreeMap::from([(-3i128, "x")]);
        assert_eq!(String::from_utf8(to_json(&wide, JsonStyle::Fastjson)).unwrap(), r#"{-3:"x"}"#);
        assert_eq!(
            String::from_utf8(to_json(&small, JsonStyle::Standard)).unwrap(),
            r#"{"5":1,"7":2}"#
        );
    }

    #[test]
    fn empty_and_escaped_string_keys_stay_quoted() {
        let map = BTreeMap::from([(String::new(), 1), ("a\"b".to_owned(), 2)]);
        let text = to_json(&map, JsonStyle::Fastjson);
        assert_eq!(String::from_utf8(text).unwrap(), r#"{"":1,"a\"b":2}"#);
    }

    #[test]
    fn bare_keys_are_quoted_outside_strings_only() {
        let input = br#"{"offsetTable":{"t@g":{0:12, 1 :3}},"s":"{0:x}","l":[{2:"y"}]}"#;
        let fixed = quote_bare_keys(input);
        assert_eq!(
            std::str::from_utf8(&fixed).unwrap(),
            r#"{"offsetTable":{"t@g":{"0":12, "1" :3}},"s":"{0:x}","l":[{"2":"y"}]}"#
        );
        let valid = br#"{"a":{"b":[1,2]}}"#;
        assert!(matches!(quote_bare_keys(valid), Cow::Borrowed(_)));
    }
}
