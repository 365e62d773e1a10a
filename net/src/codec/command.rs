//! `RemotingCommand`: one request or response of the remoting protocol, and its two header
//! encodings (JSON and RocketMQ's binary "ROCKETMQ" form). See `docs/protocol.md`.
//!
//! JSON headers are written with fields in alphabetical order and `remark` only when present,
//! as fastjson writes them; they are read in any order with any unknown field ignored, and
//! `extFields` values may be strings, numbers or booleans (JavaScript clients send numbers).

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::codes::LanguageCode;
pub use super::fields::ExtFields;
use super::fields::{write_display, Unsorted};
use super::header::{CommandHeader, HeaderError};
use super::FrameError;

/// RocketMQ's protocol version Petrel announces: `V5_3_3`.
pub const VERSION_CURRENT: i32 = 479;

/// `flag` bit set on responses.
pub const FLAG_RESPONSE: i32 = 0x1;
/// `flag` bit set on oneway requests, which get no response.
pub const FLAG_ONEWAY: i32 = 0x2;

/// How a header is encoded; the top byte of the frame's second word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerializeType {
    Json = 0,
    RocketMq = 1,
}

impl SerializeType {
    pub fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    pub body: Bytes,
    /// More body after `body`, as separate buffers: a pull response's records are slices of
    /// the store's mapped files, written to the socket with one vectored write and never
    /// copied into a frame buffer. Empty for everything decoded from the wire.
    pub body_parts: Vec<Bytes>,
    /// The encoding the header arrived in, or will leave in.
    pub serialize_type: SerializeType,
}

impl From<petrel_core::broker::Refusal> for RemotingCommand {
    /// The answer to a refused request: its code and remark.
    fn from(refusal: petrel_core::broker::Refusal) -> RemotingCommand {
        RemotingCommand::response(refusal.code, Some(refusal.remark))
    }
}

impl RemotingCommand {
    /// A request with the given code and no fields.
    pub fn request(code: i32) -> Self {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: VERSION_CURRENT,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            body_parts: Vec::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// A response with the given code and remark. The transport sets `opaque` to the request's.
    pub fn response(code: i32, remark: impl Into<Option<String>>) -> Self {
        RemotingCommand {
            flag: FLAG_RESPONSE,
            remark: remark.into(),
            // Responses say JAVA: older clients' language enums do not know RUST.
            language: LanguageCode::Java,
            ..RemotingCommand::request(code)
        }
    }

    /// Sets the header fields from a typed header.
    pub fn with_header<H: CommandHeader>(mut self, header: &H) -> Self {
        // Most headers fit: their fields are written without the buffers growing.
        self.ext_fields.reserve(8, 160);
        header.write_fields(&mut self.ext_fields);
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to these buffers, written in order without being joined.
    pub fn with_body_parts(mut self, parts: Vec<Bytes>) -> Self {
        self.body = Bytes::new();
        self.body_parts = parts;
        self
    }

    /// The whole body's length: `body` and every part.
    pub fn body_len(&self) -> usize {
        self.body.len() + self.body_parts.iter().map(Bytes::len).sum::<usize>()
    }

    /// The whole body in one buffer (copies when it is made of parts).
    pub fn body_bytes(&self) -> Bytes {
        if self.body_parts.is_empty() {
            return self.body.clone();
        }
        let mut all = BytesMut::with_capacity(self.body_len());
        all.put_slice(&self.body);
        for part in &self.body_parts {
            all.put_slice(part);
        }
        all.freeze()
    }

    /// Parses the typed header from this command's fields.
    pub fn header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::read_fields(&self.ext_fields)
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// Encodes the frame's length words and header into `dst`, in this command's serialize
    /// type; the body follows separately so that a large body can be written without being
    /// copied. The header is written in place: nothing is allocated but `dst`'s growth. On an
    /// error `dst` is left as it was.
    pub fn encode_head(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        let start = dst.len();
        // The two length words, filled in once the header's length is known.
        dst.put_u64(0);
        let written = match self.serialize_type {
            SerializeType::Json => {
                self.write_json_header(dst);
                Ok(())
            }
            SerializeType::RocketMq => self.write_binary_header(dst),
        };
        let header_len = dst.len() - start - super::FRAME_PREFIX_BYTES;
        let total = written.and_then(|()| {
            if header_len > super::HEADER_BYTES_MAX {
                return Err(FrameError::HeaderTooLong { len: header_len });
            }
            let total = 4 + header_len + self.body_len();
            i32::try_from(total).map_err(|_| FrameError::TooLong { len: total })
        });
        match total {
            Ok(total) => {
                let words = ((self.serialize_type as u32) << 24) | header_len as u32;
                dst[start..start + 4].copy_from_slice(&total.to_be_bytes());
                dst[start + 4..start + 8].copy_from_slice(&words.to_be_bytes());
                Ok(())
            }
            Err(e) => {
                dst.truncate(start);
                Err(e)
            }
        }
    }

    /// The whole frame in one buffer (tests and small commands).
    pub fn encode_frame(&self) -> Result<Bytes, FrameError> {
        let mut dst = BytesMut::new();
        self.encode_head(&mut dst)?;
        dst.put_slice(&self.body);
        for part in &self.body_parts {
            dst.put_slice(part);
        }
        Ok(dst.freeze())
    }

    fn write_json_header(&self, dst: &mut BytesMut) {
        let header = JsonHeaderOut {
            code: self.code,
            ext_fields: (!self.ext_fields.is_empty()).then_some(&self.ext_fields),
            flag: self.flag,
            language: self.language.name(),
            opaque: self.opaque,
            remark: self.remark.as_deref(),
            serialize_type_current_rpc: self.serialize_type.name(),
            version: self.version,
        };
        serde_json::to_writer((&mut *dst).writer(), &header)
            .expect("a header of strings and integers always serializes");
    }

    fn write_binary_header(&self, out: &mut BytesMut) -> Result<(), FrameError> {
        let code = i16::try_from(self.code).map_err(|_| FrameError::CodeNotBinary(self.code))?;
        let version = i16::try_from(self.version).unwrap_or(i16::MAX);
        out.put_i16(code);
        out.put_u8(self.language.code());
        out.put_i16(version);
        out.put_i32(self.opaque);
        out.put_i32(self.flag);
        let remark = self.remark.as_deref().unwrap_or("");
        out.put_i32(remark.len() as i32);
        out.put_slice(remark.as_bytes());
        let ext_len: usize = self.ext_fields.iter().map(|(k, v)| 2 + k.len() + 4 + v.len()).sum();
        out.put_i32(ext_len as i32);
        for (key, value) in self.ext_fields.iter() {
            let key_len = u16::try_from(key.len())
                .map_err(|_| FrameError::HeaderTooLong { len: key.len() })?;
            out.put_u16(key_len);
            out.put_slice(key.as_bytes());
            out.put_i32(value.len() as i32);
            out.put_slice(value.as_bytes());
        }
        Ok(())
    }

    /// Decodes a header of the given type; `body` is the rest of the frame.
    pub fn decode(
        serialize_type: SerializeType,
        header: &[u8],
        body: Bytes,
    ) -> Result<Self, FrameError> {
        let mut command = match serialize_type {
            SerializeType::Json => decode_json_header(header)?,
            SerializeType::RocketMq => decode_binary_header(header)?,
        };
        command.body = body;
        Ok(command)
    }
}

#[derive(Serialize)]
struct JsonHeaderOut<'a> {
    code: i32,
    #[serde(rename = "extFields", skip_serializing_if = "Option::is_none")]
    ext_fields: Option<&'a ExtFields>,
    flag: i32,
    language: &'static str,
    opaque: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: Option<&'a str>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type_current_rpc: &'static str,
    version: i32,
}

#[derive(Deserialize)]
struct JsonHeaderIn<'a> {
    code: i32,
    #[serde(rename = "extFields", default, deserialize_with = "ext_fields_in")]
    ext_fields: ExtFields,
    #[serde(default)]
    flag: i32,
    #[serde(default, borrow)]
    language: Option<Cow<'a, str>>,
    #[serde(default)]
    opaque: i32,
    #[serde(default)]
    remark: Option<String>,
    #[serde(default)]
    version: i32,
}

/// `extFields` straight into [`ExtFields`]: every value as its text (a number or a boolean as
/// JSON writes it, anything nested as its JSON), nulls left out, names and values appended to
/// one buffer.
fn ext_fields_in<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<ExtFields, D::Error> {
    struct Fields;
    impl<'de> serde::de::Visitor<'de> for Fields {
        type Value = ExtFields;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of header fields")
        }
        fn visit_unit<E>(self) -> Result<ExtFields, E> {
            Ok(ExtFields::new())
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            mut map: M,
        ) -> Result<ExtFields, M::Error> {
            let mut fields = ExtFields::unsorted(map.size_hint().unwrap_or(16), 512);
            while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                let start = fields.text().len();
                fields.text().push_str(&key);
                let value = fields.text().len();
                if map.next_value_seed(FieldText(&mut fields))? {
                    fields.push(start, value);
                } else {
                    fields.text().truncate(start);
                }
            }
            Ok(fields.finish())
        }
    }
    deserializer.deserialize_any(Fields)
}

/// One `extFields` value, appended to the fields' text as a string; `false` for a null, which
/// leaves the field out.
struct FieldText<'a>(&'a mut Unsorted);

impl<'de> serde::de::DeserializeSeed<'de> for FieldText<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldText<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a header field's value")
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, text: &str) -> Result<bool, E> {
        self.0.text().push_str(text);
        Ok(true)
    }
    fn visit_bool<E>(self, value: bool) -> Result<bool, E> {
        write_display(self.0.text(), value);
        Ok(true)
    }
    fn visit_i64<E>(self, value: i64) -> Result<bool, E> {
        write_display(self.0.text(), value);
        Ok(true)
    }
    fn visit_u64<E>(self, value: u64) -> Result<bool, E> {
        write_display(self.0.text(), value);
        Ok(true)
    }
    fn visit_f64<E>(self, value: f64) -> Result<bool, E> {
        write_display(self.0.text(), serde_json::Value::from(value));
        Ok(true)
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<bool, M::Error> {
        let nested =
            serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        write_display(self.0.text(), nested);
        Ok(true)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        let nested =
            serde_json::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        write_display(self.0.text(), nested);
        Ok(true)
    }
}

/// A key borrowed from the header's bytes when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let parsed: JsonHeaderIn =
        serde_json::from_slice(header).map_err(|e| FrameError::Json(e.to_string()))?;
    let ext_fields = parsed.ext_fields;
    Ok(RemotingCommand {
        code: parsed.code,
        language: parsed.language.as_deref().map_or(LanguageCode::Other, LanguageCode::from_name),
        version: parsed.version,
        opaque: parsed.opaque,
        flag: parsed.flag,
        remark: parsed.remark,
        ext_fields,
        body: Bytes::new(),
        body_parts: Vec::new(),
        serialize_type: SerializeType::Json,
    })
}

/// A cursor over a binary header that checks every length against what is left before reading.
struct BinaryReader<'a> {
    rest: &'a [u8],
}

impl<'a> BinaryReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if n > self.rest.len() {
            return Err(FrameError::BinaryHeader { needed: n, left: self.rest.len() });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        self.array().map(i32::from_be_bytes)
    }

    fn len_i32(&mut self) -> Result<usize, FrameError> {
        let len = self.i32()?;
        usize::try_from(len).map_err(|_| FrameError::BinaryHeader { needed: 0, left: 0 })
    }

    fn text(&mut self, len: usize) -> Result<&'a str, FrameError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| FrameError::Utf8)
    }
}

fn decode_binary_header(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let mut r = BinaryReader { rest: header };
    let code = i16::from_be_bytes(r.array()?);
    let language = LanguageCode::from_code(r.array::<1>()?[0]);
    let version = i16::from_be_bytes(r.array()?);
    let opaque = r.i32()?;
    let flag = r.i32()?;
    let remark_len = r.len_i32()?;
    let remark = if remark_len == 0 { None } else { Some(r.text(remark_len)?.to_owned()) };
    let ext_len = r.len_i32()?;
    let mut ext = BinaryReader { rest: r.take(ext_len)? };
    let mut ext_fields = ExtFields::unsorted(16, ext_len);
    while !ext.rest.is_empty() {
        let key_len = u16::from_be_bytes(ext.array()?) as usize;
        let key = ext.text(key_len)?;
        let value_len = ext.len_i32()?;
        let value = ext.text(value_len)?;
        let start = ext_fields.text().len();
        ext_fields.text().push_str(key);
        ext_fields.text().push_str(value);
        ext_fields.push(start, start + key.len());
    }
    let ext_fields = ext_fields.finish();
    Ok(RemotingCommand {
        code: i32::from(code),
        language,
        version: i32::from(version),
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        body_parts: Vec::new(),
        serialize_type: SerializeType::RocketMq,
    })
}
