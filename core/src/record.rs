//! The commit-log record: RocketMQ's message layout on disk and in pull responses.
//!
//! One source of truth for the byte layout described in `docs/storage-format.md` §2-§4: the
//! encoder the store appends with, and the checked reader that recovery, dispatch and the client
//! decode with. Pure: bytes in, bytes or a view out. Every length read from the bytes is checked
//! against the bytes before it is used, so any input yields a `Scanned`, never a panic.

// Address values only: `core::net` has no sockets, which the tidy test keeps out of `core/`.
use core::net::{IpAddr, SocketAddr};

/// `MESSAGE_MAGIC_CODE` of RocketMQ: a record with a 1-byte topic length.
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// `MESSAGE_MAGIC_CODE` V2: a record with a 2-byte topic length, used for topics over 127 bytes.
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
/// `BLANK_MAGIC_CODE`: the filler that ends a commit-log file the next record did not fit in.
pub const MAGIC_BLANK: u32 = 0xCBD4_3194;
/// A blank filler is `int32 size | int32 magic`; a record is only placed if this much room
/// remains after it (`END_FILE_MIN_BLANK_LENGTH`).
pub const BLANK_BYTES_MIN: usize = 8;
/// Topics longer than this get a V2 record (`autoMessageVersionOnTopicLen`).
pub const TOPIC_V1_BYTES_MAX: usize = 127;
/// The properties length is a Java `short`.
pub const PROPERTIES_BYTES_MAX: usize = i16::MAX as usize;

/// The bits of a record's SYSFLAG (`MessageSysFlag`): every place that reads or sets one names
/// it from here.
pub mod sys_flag {
    /// The body is compressed.
    pub const COMPRESSED: i32 = 0x1;
    /// TAGS holds several tags.
    pub const MULTI_TAGS: i32 = 0x2;
    /// The two transaction bits.
    pub const TRANSACTION_MASK: i32 = 0xC;
    /// A transaction's half message: stored, not yet for consumers.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    /// A committed transaction's message.
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    /// A rolled-back transaction's message.
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    /// The born host is IPv6 (a 20-byte host field).
    pub const BORNHOST_V6: i32 = 0x10;
    /// The store host is IPv6.
    pub const STOREHOST_V6: i32 = 0x20;
    /// Both host bits, which the store sets from the addresses themselves.
    pub const HOSTS_V6: i32 = BORNHOST_V6 | STOREHOST_V6;

    /// Whether a record with these flags gets a consume-queue unit (and a queue offset):
    /// transactional half and rolled-back messages do not.
    pub fn is_dispatched(flags: i32) -> bool {
        let transaction = flags & TRANSACTION_MASK;
        transaction != TRANSACTION_PREPARED && transaction != TRANSACTION_ROLLBACK
    }
}

/// Separates a property's name from its value.
pub const NAME_VALUE_SEPARATOR: u8 = 1;
/// Ends each property.
pub const PROPERTY_SEPARATOR: u8 = 2;
/// The property that carries the whole-record CRC (`enabledAppendPropCRC`).
pub const PROPERTY_CRC32: &[u8] = b"__CRC32#";
/// `__CRC32#`, the separator, ten digits and the property separator.
pub const CRC32_RESERVED_BYTES: usize = PROPERTY_CRC32.len() + 1 + 10 + 1;
const _: () = assert!(CRC32_RESERVED_BYTES == 20, "RocketMQ's CRC32_RESERVED_LEN");

/// Every fixed field of a V1 record with IPv4 hosts, plus the three length prefixes.
pub const FIXED_BYTES_V1: usize = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 1 + 2;
const _: () = assert!(FIXED_BYTES_V1 == 91, "reference §3: 91 + body + topic + properties");

/// Field offsets that do not depend on the host families.
pub mod offset {
    pub const TOTAL_SIZE: usize = 0;
    pub const MAGIC: usize = 4;
    pub const BODY_CRC: usize = 8;
    pub const QUEUE_ID: usize = 12;
    pub const FLAG: usize = 16;
    pub const QUEUE_OFFSET: usize = 20;
    pub const PHYSICAL_OFFSET: usize = 28;
    pub const SYS_FLAG: usize = 36;
    pub const BORN_TIMESTAMP: usize = 40;
    pub const BORN_HOST: usize = 48;
}

/// What a producer's message becomes in the log, before the store assigns its place.
#[derive(Debug, Clone, Copy)]
pub struct RecordInput<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub flag: i32,
    /// Sysflag without the host-family bits, which the encoder sets from the addresses.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    /// Encoded properties, `name 0x01 value 0x02 ...`, without the CRC property.
    pub properties: &'a [u8],
}

/// Where the store put a record: assigned under the append lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPlace {
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub store_timestamp: i64,
}

/// A message that cannot be encoded as a RocketMQ record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Topics are at most 32767 bytes even with a V2 record.
    #[error("topic is {0} bytes; the longest a record can hold is 32767")]
    TopicTooLong(usize),
    /// The properties length is a Java short.
    #[error("properties are {0} bytes; the most a record can hold is 32767")]
    PropertiesTooLong(usize),
    /// An empty topic cannot be stored.
    #[error("topic is empty")]
    TopicEmpty,
    /// Recovery reads a zero byte in the properties as the mark of a torn write.
    #[error("properties contain a NUL character, which cannot be stored")]
    PropertiesNul,
}

fn properties_bytes(properties: &[u8], append_crc: bool) -> usize {
    if !append_crc {
        return properties.len();
    }
    let separator = usize::from(properties.last().is_some_and(|b| *b != PROPERTY_SEPARATOR));
    properties.len() + separator + CRC32_RESERVED_BYTES
}

/// The record length RocketMQ computes (`calMsgLength`) from its parts.
pub fn record_len(
    topic_len_bytes: usize,
    sys_flag: i32,
    body: usize,
    topic: usize,
    properties: usize,
) -> usize {
    let born = if sys_flag & sys_flag::BORNHOST_V6 == 0 { 8 } else { 20 };
    let store = if sys_flag & sys_flag::STOREHOST_V6 == 0 { 8 } else { 20 };
    FIXED_BYTES_V1 - 1 + topic_len_bytes + (born - 8) + (store - 8) + body + topic + properties
}

/// The length `encode_record` will write for `input`.
pub fn encoded_len(input: &RecordInput<'_>, append_crc: bool) -> Result<usize, RecordError> {
    let topic = input.topic.len();
    if topic == 0 {
        return Err(RecordError::TopicEmpty);
    }
    if topic > i16::MAX as usize {
        return Err(RecordError::TopicTooLong(topic));
    }
    if input.properties.contains(&0) {
        return Err(RecordError::PropertiesNul);
    }
    let properties = properties_bytes(input.properties, append_crc);
    if properties > PROPERTIES_BYTES_MAX {
        return Err(RecordError::PropertiesTooLong(properties));
    }
    let topic_len_bytes = if topic > TOPIC_V1_BYTES_MAX { 2 } else { 1 };
    Ok(record_len(topic_len_bytes, host_flags(input), input.body.len(), topic, properties))
}

fn host_flags(input: &RecordInput<'_>) -> i32 {
    let mut flags = input.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
    if input.born_host.is_ipv6() {
        flags |= sys_flag::BORNHOST_V6;
    }
    if input.store_host.is_ipv6() {
        flags |= sys_flag::STOREHOST_V6;
    }
    flags
}

fn put_host(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&i32::from(addr.port()).to_be_bytes());
}

/// RocketMQ's `UtilAll.crc32`: CRC-32 (IEEE) with the sign bit cleared.
pub fn crc32_positive(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) & 0x7FFF_FFFF
}

/// Appends the record for `input` at `place` to `out`, returning its length. With `append_crc`
/// the properties end with `__CRC32#` and the CRC of everything before it.
pub fn encode_record(
    input: &RecordInput<'_>,
    place: RecordPlace,
    append_crc: bool,
    out: &mut Vec<u8>,
) -> Result<usize, RecordError> {
    let total = encoded_len(input, append_crc)?;
    let start = out.len();
    out.reserve(total);
    let v2 = input.topic.len() > TOPIC_V1_BYTES_MAX;
    let size = i32::try_from(total).map_err(|_| RecordError::PropertiesTooLong(total))?;
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
    out.extend_from_slice(&crc32_positive(input.body).to_be_bytes());
    out.extend_from_slice(&input.queue_id.to_be_bytes());
    out.extend_from_slice(&input.flag.to_be_bytes());
    out.extend_from_slice(&place.queue_offset.to_be_bytes());
    out.extend_from_slice(&place.physical_offset.to_be_bytes());
    out.extend_from_slice(&host_flags(input).to_be_bytes());
    out.extend_from_slice(&input.born_timestamp.to_be_bytes());
    put_host(out, &input.born_host);
    out.extend_from_slice(&place.store_timestamp.to_be_bytes());
    put_host(out, &input.store_host);
    out.extend_from_slice(&input.reconsume_times.to_be_bytes());
    out.extend_from_slice(&input.prepared_transaction_offset.to_be_bytes());
    out.extend_from_slice(&(input.body.len() as i32).to_be_bytes());
    out.extend_from_slice(input.body);
    if v2 {
        out.extend_from_slice(&(input.topic.len() as i16).to_be_bytes());
    } else {
        out.push(input.topic.len() as u8);
    }
    out.extend_from_slice(input.topic.as_bytes());
    let properties = properties_bytes(input.properties, append_crc);
    out.extend_from_slice(&(properties as i16).to_be_bytes());
    out.extend_from_slice(input.properties);
    if append_crc {
        if input.properties.last().is_some_and(|b| *b != PROPERTY_SEPARATOR) {
            out.push(PROPERTY_SEPARATOR);
        }
        let crc = crc32_positive(&out[start..]);
        out.extend_from_slice(PROPERTY_CRC32);
        out.push(NAME_VALUE_SEPARATOR);
        out.extend_from_slice(&crc_digits(crc));
        out.push(PROPERTY_SEPARATOR);
    }
    debug_assert_eq!(out.len() - start, total, "encoded length matches encoded_len");
    Ok(total)
}

/// RocketMQ writes the CRC as ten decimal digits, least significant first.
fn crc_digits(mut crc: u32) -> [u8; 10] {
    let mut digits = [b'0'; 10];
    for digit in &mut digits {
        *digit = b'0' + (crc % 10) as u8;
        crc /= 10;
    }
    digits
}

fn parse_crc_digits(digits: &[u8]) -> Option<u32> {
    if digits.len() != 10 {
        return None;
    }
    let mut crc: u64 = 0;
    for digit in digits.iter().rev() {
        if !digit.is_ascii_digit() {
            return None;
        }
        crc = crc * 10 + u64::from(digit - b'0');
    }
    u32::try_from(crc).ok()
}

/// A record read back, borrowing the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The whole record, `total_size` bytes.
    pub bytes: &'a [u8],
    pub body_crc: u32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    pub topic: &'a [u8],
    pub properties: &'a [u8],
}

impl<'a> Record<'a> {
    /// The value of property `name`, if present.
    pub fn property(&self, name: &[u8]) -> Option<&'a [u8]> {
        property(self.properties, name)
    }

    /// The topic as text; topics are validated ASCII when stored.
    pub fn topic_str(&self) -> &'a str {
        std::str::from_utf8(self.topic).unwrap_or("")
    }

    /// Whether the record's UNIQ_KEY or one of its KEYS is `key` (what QUERY_MESSAGE finds).
    pub fn has_key(&self, key: &str) -> bool {
        let key = key.as_bytes();
        self.property(b"UNIQ_KEY") == Some(key)
            || self
                .property(b"KEYS")
                .is_some_and(|keys| keys.split(|b| *b == b' ').any(|k| k == key))
    }
}

/// The records laid end to end in `bytes` (a pull's or a query's answer), each scanned with its
/// CRCs checked; at the first that is not a whole record, its byte position, and nothing after.
pub fn scan_records(bytes: &[u8]) -> impl Iterator<Item = Result<Record<'_>, usize>> {
    let mut at = Some(0);
    std::iter::from_fn(move || {
        let from = at.filter(|from| *from < bytes.len())?;
        match scan_record(&bytes[from..], Checks { physical_offset: None, crc: true }) {
            Scanned::Record(record) => {
                at = Some(from + record.bytes.len());
                Some(Ok(record))
            }
            _ => {
                at = None;
                Some(Err(from))
            }
        }
    })
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Fewer bytes than the record claims, or than a header needs.
    Truncated,
    /// Neither a record nor a blank magic; all-zero bytes land here.
    Magic(u32),
    /// `total_size` disagrees with the lengths inside the record.
    Length,
    /// The record says it lives at another physical offset.
    PhysicalOffset,
    /// A topic of zero length, or a zero byte in the topic or properties: the signature of a
    /// torn write, whose lost sectors read back as zeros.
    Zeros,
    /// The body's CRC does not match.
    BodyCrc,
    /// The whole-record CRC property does not match, or is malformed.
    RecordCrc,
    /// A blank filler that does not reach exactly to the end of the file.
    Blank,
}

/// The outcome of reading at one position of a commit-log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned<'a> {
    Record(Record<'a>),
    /// The filler at the end of a file; the next record starts in the next file.
    Blank,
    Invalid(Invalid),
}

/// How strictly to check. Recovery checks everything; a client decoding a pull response skips
/// the position check because it does not know the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// The physical offset the record must claim, if known.
    pub physical_offset: Option<i64>,
    /// Verify the body CRC and the record CRC property (`checkCRCOnRecover`).
    pub crc: bool,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }
    fn host(&mut self, v6: bool) -> Option<SocketAddr> {
        let ip: IpAddr =
            if v6 { IpAddr::from(self.array::<16>()?) } else { IpAddr::from(self.array::<4>()?) };
        let port = self.i32()?;
        Some(SocketAddr::new(ip, port as u16))
    }
}

/// Reads the record or blank filler at the start of `bytes`, which run to the end of the file
/// (a blank must fill them exactly).
pub fn scan_record<'a>(bytes: &'a [u8], checks: Checks) -> Scanned<'a> {
    match scan_inner(bytes, checks) {
        Ok(scanned) => scanned,
        Err(invalid) => Scanned::Invalid(invalid),
    }
}

fn scan_inner<'a>(bytes: &'a [u8], checks: Checks) -> Result<Scanned<'a>, Invalid> {
    let mut reader = Reader { bytes, at: 0 };
    let total = reader.i32().ok_or(Invalid::Truncated)?;
    let magic = reader.i32().ok_or(Invalid::Truncated)? as u32;
    if magic == MAGIC_BLANK {
        return if usize::try_from(total).ok() == Some(bytes.len()) && total >= 8 {
            Ok(Scanned::Blank)
        } else {
            Err(Invalid::Blank)
        };
    }
    let topic_len_bytes = match magic {
        MAGIC_V1 => 1,
        MAGIC_V2 => 2,
        other => return Err(Invalid::Magic(other)),
    };
    let total = usize::try_from(total).map_err(|_| Invalid::Length)?;
    let record = bytes.get(..total).ok_or(Invalid::Truncated)?;
    let mut reader = Reader { bytes: record, at: 8 };
    let fields = read_fields(&mut reader, topic_len_bytes).ok_or(Invalid::Length)?;
    if reader.at != total {
        return Err(Invalid::Length);
    }
    let record = Record { bytes: record, ..fields };
    if checks.physical_offset.is_some_and(|at| at != record.physical_offset) {
        return Err(Invalid::PhysicalOffset);
    }
    if record.topic.is_empty() || record.topic.contains(&0) || record.properties.contains(&0) {
        return Err(Invalid::Zeros);
    }
    if checks.crc {
        check_crcs(&record)?;
    }
    Ok(Scanned::Record(record))
}

fn read_fields<'a>(reader: &mut Reader<'a>, topic_len_bytes: usize) -> Option<Record<'a>> {
    let body_crc = reader.i32()? as u32;
    let queue_id = reader.i32()?;
    let flag = reader.i32()?;
    let queue_offset = reader.i64()?;
    let physical_offset = reader.i64()?;
    let sys_flag = reader.i32()?;
    let born_timestamp = reader.i64()?;
    let born_host = reader.host(sys_flag & sys_flag::BORNHOST_V6 != 0)?;
    let store_timestamp = reader.i64()?;
    let store_host = reader.host(sys_flag & sys_flag::STOREHOST_V6 != 0)?;
    let reconsume_times = reader.i32()?;
    let prepared_transaction_offset = reader.i64()?;
    let body_len = usize::try_from(reader.i32()?).ok()?;
    let body = reader.take(body_len)?;
    let topic_len = if topic_len_bytes == 1 {
        usize::from(reader.take(1)?[0])
    } else {
        usize::try_from(reader.i16()?).ok()?
    };
    let topic = reader.take(topic_len)?;
    let properties_len = usize::try_from(reader.i16()?).ok()?;
    let properties = reader.take(properties_len)?;
    Some(Record {
        bytes: &[],
        body_crc,
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties,
    })
}

fn check_crcs(record: &Record<'_>) -> Result<(), Invalid> {
    if crc32_positive(record.body) != record.body_crc {
        return Err(Invalid::BodyCrc);
    }
    let Some(tail) = record.bytes.len().checked_sub(CRC32_RESERVED_BYTES) else {
        return Ok(());
    };
    match crc_property_at(&record.bytes[tail..]) {
        CrcProperty::Absent => Ok(()),
        CrcProperty::Damaged => Err(Invalid::RecordCrc),
        CrcProperty::Present(expected) if crc32_positive(&record.bytes[..tail]) == expected => {
            Ok(())
        }
        CrcProperty::Present(_) => Err(Invalid::RecordCrc),
    }
}

enum CrcProperty {
    /// The record was written without the CRC property (RocketMQ's default).
    Absent,
    /// The last 20 bytes are the CRC property, carrying this CRC.
    Present(u32),
    /// The last 20 bytes are the CRC property with a damaged frame or digits.
    Damaged,
}

/// Recognises the CRC property by position: the last 20 bytes of the record. A property found
/// by parsing could be hidden by one flipped separator, so the frame (`__CRC32#`, 0x01, 0x02) is
/// compared bit by bit: exact means present, one bit off means damaged, more means absent. The
/// frame is not covered by the CRC itself; this is what protects it.
fn crc_property_at(tail: &[u8]) -> CrcProperty {
    let frame = PROPERTY_CRC32
        .iter()
        .zip(tail)
        .chain([(&NAME_VALUE_SEPARATOR, &tail[8]), (&PROPERTY_SEPARATOR, &tail[19])]);
    let flipped: u32 = frame.map(|(want, have)| (want ^ have).count_ones()).sum();
    match flipped {
        0 => parse_crc_digits(&tail[9..19]).map_or(CrcProperty::Damaged, CrcProperty::Present),
        1 => CrcProperty::Damaged,
        _ => CrcProperty::Absent,
    }
}

/// RocketMQ's `TOPIC_MAX_LENGTH`.
pub const TOPIC_BYTES_MAX: usize = 127;

/// RocketMQ's topic rule: 1 to 127 of `[%|a-zA-Z0-9_-]`. The store relies on it too: a topic
/// names a directory under `consumequeue/`.
pub fn is_valid_topic(topic: &[u8]) -> bool {
    (1..=TOPIC_BYTES_MAX).contains(&topic.len())
        && topic.iter().all(|b| b.is_ascii_alphanumeric() || b"%|_-".contains(b))
}

/// Iterates `(name, value)` over encoded properties; a trailing fragment without a separator is
/// a property too, as RocketMQ's parser reads it.
pub fn properties(encoded: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    encoded.split(|b| *b == PROPERTY_SEPARATOR).filter(|p| !p.is_empty()).filter_map(|pair| {
        let split = pair.iter().position(|b| *b == NAME_VALUE_SEPARATOR)?;
        Some((&pair[..split], &pair[split + 1..]))
    })
}

/// The value of property `name` in `encoded`.
pub fn property<'a>(encoded: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    properties(encoded).find(|(key, _)| *key == name).map(|(_, value)| value)
}

/// Properties encoded from `(name, value)` pairs, in order.
pub fn encode_properties(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        put_property(&mut out, name, value);
    }
    out
}

/// `encoded` with every `(name, value)` of `set` in place of what it had under that name and
/// every name of `drop` removed.
pub fn replaced(encoded: &[u8], set: &[(&str, &str)], drop: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + 64);
    for (name, value) in properties(encoded) {
        let named = |n: &&str| n.as_bytes() == name;
        if !set.iter().any(|(n, _)| named(n)) && !drop.iter().any(named) {
            put_property(&mut out, name, value);
        }
    }
    for (name, value) in set {
        put_property(&mut out, name, value);
    }
    out
}

/// Appends `name 0x01 value 0x02` to `out`.
pub fn put_property(out: &mut Vec<u8>, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
    out.extend_from_slice(name.as_ref());
    out.push(NAME_VALUE_SEPARATOR);
    out.extend_from_slice(value.as_ref());
    out.push(PROPERTY_SEPARATOR);
}

/// Java's `String.hashCode` over UTF-16 code units, which RocketMQ uses for tag codes and index
/// keys.
pub fn java_hash(text: &str) -> i32 {
    java_hash_continue(0, text)
}

/// Java's hash of a concatenation, one piece at a time: `java_hash(a + b)` is
/// `java_hash_continue(java_hash(a), b)`, with no string built.
pub fn java_hash_continue(hash: i32, text: &str) -> i32 {
    text.encode_utf16().fold(hash, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// Java's hash of bytes that should be UTF-8; invalid sequences hash as U+FFFD, as Java decodes.
pub fn java_hash_bytes(bytes: &[u8]) -> i32 {
    match std::str::from_utf8(bytes) {
        Ok(text) => java_hash(text),
        Err(_) => java_hash(&String::from_utf8_lossy(bytes)),
    }
}

/// The consume-queue tag code of a TAGS value (`tagsString2tagsCode`): its Java hash.
pub fn tags_code(tags: &[u8]) -> i64 {
    if tags.is_empty() {
        0
    } else {
        i64::from(java_hash_bytes(tags))
    }
}

/// The offset message id: uppercase hex of store IP, port and physical offset
/// (`MessageDecoder.createMessageId`).
pub fn offset_msg_id(store_host: SocketAddr, physical_offset: i64) -> String {
    let mut raw = Vec::with_capacity(28);
    put_host(&mut raw, &store_host);
    raw.extend_from_slice(&physical_offset.to_be_bytes());
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut id = String::with_capacity(raw.len() * 2);
    for byte in raw {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0xF)]));
    }
    id
}

/// Decodes an offset message id into store host and physical offset.
pub fn parse_offset_msg_id(id: &str) -> Option<(SocketAddr, i64)> {
    let raw = decode_hex(id)?;
    let (ip, rest): (IpAddr, &[u8]) = match raw.len() {
        16 => (IpAddr::from(<[u8; 4]>::try_from(&raw[..4]).ok()?), &raw[4..]),
        28 => (IpAddr::from(<[u8; 16]>::try_from(&raw[..16]).ok()?), &raw[16..]),
        _ => return None,
    };
    let port = i32::from_be_bytes(rest[..4].try_into().ok()?);
    let offset = i64::from_be_bytes(rest[4..12].try_into().ok()?);
    Some((SocketAddr::new(ip, port as u16), offset))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(topic: &'a str, body: &'a [u8], properties: &'a [u8]) -> RecordInput<'a> {
        RecordInput {
            topic,
            queue_id: 3,
            flag: 0,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "127.0.0.1:50000".parse().unwrap(),
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            properties,
        }
    }

    const PLACE: RecordPlace =
        RecordPlace { queue_offset: 7, physical_offset: 0, store_timestamp: 1_700_000_000_123 };

    fn checks() -> Checks {
        Checks { physical_offset: Some(0), crc: true }
    }

    #[test]
    fn java_hash_matches_java() {
        // Values from Java's "TagA".hashCode() etc.
        assert_eq!(java_hash("TagA"), 2_598_919);
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("TopicTest#k1"), 2_746_024);
        assert_eq!(java_hash("\u{1F600}"), 1_772_899);
        assert_eq!(java_hash_continue(java_hash("TopicTest#"), "k1"), java_hash("TopicTest#k1"));
    }

    #[test]
    fn round_trip_with_and_without_crc() {
        let props = b"TAGS\x01TagA\x02KEYS\x01k1\x02";
        for crc in [false, true] {
            let mut out = Vec::new();
            let len = encode_record(&input("TopicTest", b"Hello", props), PLACE, crc, &mut out);
            assert_eq!(len, Ok(out.len()));
            let Scanned::Record(record) = scan_record(&out, checks()) else {
                panic!("valid record rejected");
            };
            assert_eq!(record.topic, b"TopicTest");
            assert_eq!(record.body, b"Hello");
            assert_eq!(record.queue_offset, 7);
            assert_eq!(record.property(b"TAGS"), Some(&b"TagA"[..]));
            assert_eq!(record.property(b"KEYS"), Some(&b"k1"[..]));
            assert_eq!(record.property(PROPERTY_CRC32).is_some(), crc);
        }
    }

    #[test]
    fn reference_length_and_header() {
        let props = b"TAGS\x01TagA\x02KEYS\x01k1\x02";
        let mut out = Vec::new();
        encode_record(&input("TopicTest", b"Hello", props), PLACE, false, &mut out).unwrap();
        assert_eq!(out.len(), 91 + 5 + 9 + props.len());
        assert_eq!(&out[4..8], &[0xDA, 0xA3, 0x20, 0xA7]);
        assert_eq!(u32::from_be_bytes(out[8..12].try_into().unwrap()), 0xF7D1_8982 & 0x7FFF_FFFF);
    }

    #[test]
    fn long_topic_uses_v2() {
        let topic = "T".repeat(200);
        let mut out = Vec::new();
        encode_record(&input(&topic, b"x", b""), PLACE, true, &mut out).unwrap();
        assert_eq!(u32::from_be_bytes(out[4..8].try_into().unwrap()), MAGIC_V2);
        assert!(matches!(scan_record(&out, checks()), Scanned::Record(r) if r.topic.len() == 200));
    }

    #[test]
    fn every_torn_prefix_is_rejected() {
        let mut out = Vec::new();
        let props = b"TAGS\x01TagA\x02";
        encode_record(&input("TopicTest", &[7u8; 600], props), PLACE, true, &mut out).unwrap();
        for keep in 0..out.len() {
            let mut torn = out.clone();
            torn[keep..].fill(0);
            assert!(
                matches!(scan_record(&torn, checks()), Scanned::Invalid(_)),
                "a record torn after {keep} bytes passed"
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_rejected_with_record_crc() {
        let mut out = Vec::new();
        encode_record(&input("TopicTest", b"Hello", b"KEYS\x01a\x02"), PLACE, true, &mut out)
            .unwrap();
        for bit in 0..out.len() * 8 {
            let mut flipped = out.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            if let Scanned::Record(record) = scan_record(&flipped, checks()) {
                panic!("bit {bit} flipped and the record still read: {record:?}");
            }
        }
    }

    #[test]
    fn blank_must_reach_the_end() {
        let mut blank = vec![0u8; 64];
        blank[..4].copy_from_slice(&64i32.to_be_bytes());
        blank[4..8].copy_from_slice(&MAGIC_BLANK.to_be_bytes());
        assert_eq!(scan_record(&blank, checks()), Scanned::Blank);
        assert_eq!(scan_record(&blank[..32], checks()), Scanned::Invalid(Invalid::Blank));
        assert_eq!(scan_record(&[0u8; 64], checks()), Scanned::Invalid(Invalid::Magic(0)));
    }

    #[test]
    fn msg_id_round_trips() {
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let id = offset_msg_id(host, 0x1234);
        assert_eq!(id, "7F00000100002A9F0000000000001234");
        assert_eq!(parse_offset_msg_id(&id), Some((host, 0x1234)));
        assert_eq!(parse_offset_msg_id("zz"), None);
    }
}
