#!/usr/bin/env python3
"""Reference reader/writer for Apache RocketMQ 5's on-disk store format.

This file is written from the RocketMQ reference alone (the Java sources of
apache/rocketmq: MessageExtEncoder, CommitLog, ConsumeQueue, ConsumeQueueExt,
StoreCheckpoint, MessageDecoder, MessageExtBrokerInner, MessageSysFlag,
UtilAll, and /work/shared/reference/ROCKETMQ.md sections 3-4), without looking
at Petrel's implementation. It exists for compatibility tests: Petrel must be
able to read what this script writes, and this script must be able to read
what Petrel writes. Python 3.11, standard library only.

Subcommands
-----------
write DIR MANIFEST
    Read the JSON manifest
        {"messages": [{"topic": str, "queueId": int, "body": str,
                       "tags": str|null, "keys": str|null,
                       "bornTimestamp": int, "storeTimestamp": int}, ...],
         "abort": bool,
         "timer": {"writeTimeMs": int, "lastReadTimeMs": int}}
    and write a store directory DIR the way a RocketMQ 5 broker with default
    settings does: commitlog/ (1 GiB sparse files), consumequeue/{topic}/{qid}/
    (6 000 000-byte sparse files of 20-byte units), checkpoint (4096 bytes),
    config/ (empty), lock (empty) and, when "abort" is true, an empty abort
    file. A message may carry "properties" (more name/value pairs). With
    "timer", every message of rmq_sys_wheel_timer (its TIMER_OUT_MS property
    the slot) gets a unit in timerlog/ (100 MiB sparse files, written at
    writeTimeMs) linked into its slot of timerwheel (2 x 604800 slots of 32
    bytes), and config/timercheck records the read time, a flushed position of 0
    (RocketMQ takes it before the flush that follows) and the queue offset after
    the units (TimerMessageStore.doEnqueue and prepareTimerCheckPoint,
    TimerWheel.putSlot, TimerLog, TimerCheckpoint).

read DIR
    Read a store directory in RocketMQ's format (file sizes are derived from
    the files themselves), verify it thoroughly and print one JSON object
        {"queues": {"TOPIC/QUEUEID": [{"queueOffset", "physicalOffset", "size",
                                       "body", "tags", "keys",
                                       "storeTimestamp", "properties"}, ...]},
         "checkpoint": {"physicMsgTimestamp", "logicsMsgTimestamp",
                        "indexMsgTimestamp"},
         "abort": bool}
    Any inconsistency makes it exit with status 1 and the reason on stderr.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from dataclasses import dataclass, field

# --------------------------------------------------------------------------
# Format constants (RocketMQ defaults)
# --------------------------------------------------------------------------

MAGIC_V1 = 0xDAA320A7            # MessageDecoder.MESSAGE_MAGIC_CODE
MAGIC_V2 = 0xDAA320AB            # MessageDecoder.MESSAGE_MAGIC_CODE_V2
BLANK_MAGIC = 0xCBD43194         # CommitLog.BLANK_MAGIC_CODE
END_FILE_MIN_BLANK_LENGTH = 8    # int32 size + int32 blank magic

COMMITLOG_FILE_SIZE = 1024 * 1024 * 1024   # mappedFileSizeCommitLog
CQ_UNIT_SIZE = 20                           # ConsumeQueue.CQ_STORE_UNIT_SIZE
CQ_FILE_SIZE = 300_000 * CQ_UNIT_SIZE       # mappedFileSizeConsumeQueue
CHECKPOINT_SIZE = 4096                      # one OS page
MAX_BODY_SIZE = 4 * 1024 * 1024             # maxMessageSize
MAX_PROPERTIES_LENGTH = 0x7FFF              # Short.MAX_VALUE

NAME_VALUE_SEPARATOR = "\x01"
PROPERTY_SEPARATOR = "\x02"
PROP_TAGS = "TAGS"
PROP_KEYS = "KEYS"
PROP_UNIQ_KEY = "UNIQ_KEY"
PROP_WAIT = "WAIT"
PROP_DELAY = "DELAY"
PROP_CRC32 = "__CRC32#"
CRC32_RESERVED_LEN = len(PROP_CRC32) + 1 + 10 + 1   # 20 bytes

# sysFlag bits (MessageSysFlag)
FLAG_COMPRESSED = 0x1
FLAG_TXN_MASK = 0xC
FLAG_TXN_PREPARED = 0x4
FLAG_TXN_ROLLBACK = 0xC
FLAG_BORNHOST_V6 = 0x10
FLAG_STOREHOST_V6 = 0x20
COMPRESSION_TYPE_MASK = 0x700

# ConsumeQueue filler unit written by fillPreBlank.
FILLER_UNIT = (0, 0x7FFFFFFF, 0)
# ConsumeQueueExt.MAX_ADDR: tagsCode values at or below it are ext addresses.
CQ_EXT_MAX_ADDR = -(2 ** 31) - 1

SCHEDULE_TOPIC = "SCHEDULE_TOPIC_XXXX"
DEFAULT_DELAY_LEVELS = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"

# Hosts used by the writer: 127.0.0.1:50000 (born) and 127.0.0.1:10911 (store).
BORN_HOST = bytes([127, 0, 0, 1]) + struct.pack(">i", 50000)
STORE_HOST = bytes([127, 0, 0, 1]) + struct.pack(">i", 10911)

# Fixed-width part of a record: everything before the host fields, and the
# fields between and after them up to the body length.
#   totalSize magic bodyCRC queueId flag queueOffset physicalOffset sysFlag bornTimestamp
HEAD = struct.Struct(">iIiiiqqiq")
STORE_TS = struct.Struct(">q")
#   reconsumeTimes preparedTransactionOffset bodyLen
TAIL = struct.Struct(">iqi")
CQ_UNIT = struct.Struct(">qiq")


class StoreError(Exception):
    """The store directory is not valid RocketMQ data (or the manifest is bad)."""


# --------------------------------------------------------------------------
# Java compatibility helpers
# --------------------------------------------------------------------------

def to_int32(value: int) -> int:
    """Wrap an integer to Java's signed 32-bit range."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def java_string_hash(text: str) -> int:
    """Java String.hashCode(): 31*h + c over UTF-16 code units, as int32."""
    data = text.encode("utf-16-be", errors="surrogatepass")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return to_int32(h)


def java_string_length(text: str) -> int:
    """Java String.length(): number of UTF-16 code units."""
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


def tags_code(tags: str | None) -> int:
    """MessageExtBrokerInner.tagsString2tagsCode: hashCode of TAGS, 0 if none."""
    if not tags:
        return 0
    return java_string_hash(tags)


def rocketmq_crc32(data: bytes) -> int:
    """UtilAll.crc32: CRC-32 masked to a non-negative int."""
    return zlib.crc32(data) & 0x7FFFFFFF


def java_hashmap_order(keys: list[str], capacity: int = 128) -> list[str]:
    """Iteration order of a java.util.HashMap with the given table size.

    The broker rebuilds the properties map with new HashMap<>(128)
    (MessageDecoder.string2messageProperties) and serialises it by iterating
    it (messageProperties2String). Buckets are (h ^ (h >>> 16)) & (cap - 1);
    keys sharing a bucket keep insertion order.
    """
    def bucket(key: str) -> int:
        h = java_string_hash(key) & 0xFFFFFFFF
        return (h ^ (h >> 16)) & (capacity - 1)

    return [k for _, _, k in sorted((bucket(k), i, k) for i, k in enumerate(keys))]


def encode_properties(props: dict[str, str]) -> bytes:
    """name 0x01 value 0x02 for each property, in Java HashMap order."""
    text = "".join(
        name + NAME_VALUE_SEPARATOR + props[name] + PROPERTY_SEPARATOR
        for name in java_hashmap_order(list(props))
    )
    return text.encode("utf-8")


def decode_properties(raw: bytes) -> dict[str, str]:
    """Parse properties the way MessageDecoder.string2messageProperties does."""
    text = raw.decode("utf-8", errors="replace")
    props: dict[str, str] = {}
    index = 0
    while index < len(text):
        end = text.find(PROPERTY_SEPARATOR, index)
        if end < 0:
            end = len(text)
        if end - index >= 3:
            sep = text.find(NAME_VALUE_SEPARATOR, index)
            if index < sep < end - 1:
                props[text[index:sep]] = text[sep + 1:end]
        index = end + 1
    return props


def delay_level_table(levels: str = DEFAULT_DELAY_LEVELS) -> dict[int, int]:
    """DefaultMessageStore.parseDelayLevel: level -> delay in milliseconds."""
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    return {i + 1: int(v[:-1]) * units[v[-1]] for i, v in enumerate(levels.split(" "))}


def file_name(offset: int) -> str:
    """Mapped files are named by their 20-digit zero-padded start offset."""
    return "%020d" % offset


# --------------------------------------------------------------------------
# Record layout
# --------------------------------------------------------------------------

def topic_length_size(magic: int) -> int:
    """V1 stores the topic length in 1 byte, V2 in 2 bytes."""
    return 2 if magic == MAGIC_V2 else 1


def record_length(magic: int, sys_flag: int, body_len: int, topic_len: int, props_len: int) -> int:
    """MessageExtEncoder.calMsgLength."""
    born = 20 if sys_flag & FLAG_BORNHOST_V6 else 8
    store = 20 if sys_flag & FLAG_STOREHOST_V6 else 8
    return (4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + born + 8 + store + 4 + 8
            + 4 + max(body_len, 0)
            + topic_length_size(magic) + topic_len
            + 2 + max(props_len, 0))


@dataclass
class Record:
    """One decoded commit-log message."""
    total_size: int
    magic: int
    body_crc: int
    queue_id: int
    flag: int
    queue_offset: int
    physical_offset: int
    sys_flag: int
    born_timestamp: int
    store_timestamp: int
    reconsume_times: int
    prepared_txn_offset: int
    body: bytes
    topic: str
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def has_no_queue_unit(self) -> bool:
        """Prepared and rollback transaction messages are not dispatched."""
        return (self.sys_flag & FLAG_TXN_MASK) in (FLAG_TXN_PREPARED, FLAG_TXN_ROLLBACK)


def encode_record(topic: str, queue_id: int, queue_offset: int, physical_offset: int,
                  body: bytes, props: dict[str, str],
                  born_ts: int, store_ts: int) -> bytes:
    """Serialise one message as MessageExtEncoder.encode + doAppend do."""
    magic = MAGIC_V2 if java_string_length(topic) > 127 else MAGIC_V1
    topic_bytes = topic.encode("utf-8")
    if len(topic_bytes) > (0x7FFF if magic == MAGIC_V2 else 0x7F):
        raise StoreError(f"topic {topic!r} is too long ({len(topic_bytes)} bytes in UTF-8)")
    props_bytes = encode_properties(props)
    if len(props_bytes) > MAX_PROPERTIES_LENGTH:
        raise StoreError(f"properties of a {topic!r} message exceed {MAX_PROPERTIES_LENGTH} bytes")
    if len(body) > MAX_BODY_SIZE:
        raise StoreError(f"body of a {topic!r} message exceeds {MAX_BODY_SIZE} bytes")
    sys_flag = 0
    total = record_length(magic, sys_flag, len(body), len(topic_bytes), len(props_bytes))
    topic_len = struct.pack(">h" if magic == MAGIC_V2 else ">b", len(topic_bytes))
    return b"".join([
        HEAD.pack(total, magic, rocketmq_crc32(body), queue_id, 0, queue_offset,
                  physical_offset, sys_flag, born_ts),
        BORN_HOST,
        STORE_TS.pack(store_ts),
        STORE_HOST,
        TAIL.pack(0, 0, len(body)),
        body,
        topic_len, topic_bytes,
        struct.pack(">h", len(props_bytes)), props_bytes,
    ])


class _Cursor:
    """Sequential big-endian reader over one record's bytes."""

    def __init__(self, data: bytes, where: int):
        self.data = data
        self.pos = 0
        self.where = where

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise StoreError(f"record at offset {self.where}: field runs past its totalSize "
                             f"({len(self.data)})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        values = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return values[0] if len(values) == 1 else values


def decode_record(data: bytes, where: int) -> Record:
    """Decode and verify one record (checkMessageAndReturnSize, checkCRC on).

    `data` is exactly totalSize bytes starting at commit-log offset `where`.
    """
    cur = _Cursor(data, where)
    (total, magic, body_crc, queue_id, flag, queue_offset, physical_offset,
     sys_flag, born_ts) = cur.unpack(HEAD.format)
    if magic not in (MAGIC_V1, MAGIC_V2):
        raise StoreError(f"record at offset {where}: bad magic 0x{magic:08X}")
    cur.take(20 if sys_flag & FLAG_BORNHOST_V6 else 8)
    store_ts = cur.unpack(">q")
    cur.take(20 if sys_flag & FLAG_STOREHOST_V6 else 8)
    reconsume, prepared, body_len = cur.unpack(TAIL.format)
    body = cur.take(max(body_len, 0))
    topic_len = cur.unpack(">h" if magic == MAGIC_V2 else ">b")
    if topic_len < 0:
        raise StoreError(f"record at offset {where}: negative topic length {topic_len}")
    topic = cur.take(topic_len).decode("utf-8", errors="replace")
    props_len = cur.unpack(">h")
    if props_len < 0:
        raise StoreError(f"record at offset {where}: negative properties length {props_len}")
    props_raw = cur.take(props_len)

    computed = record_length(magic, sys_flag, body_len, topic_len, props_len)
    if total != computed or computed != len(data):
        raise StoreError(f"record at offset {where}: totalSize {total} but fields add up "
                         f"to {computed}")
    if rocketmq_crc32(body) != body_crc:
        raise StoreError(f"record at offset {where}: body CRC mismatch (stored {body_crc}, "
                         f"computed {rocketmq_crc32(body)})")
    props = decode_properties(props_raw)
    if PROP_CRC32 in props:
        verify_property_crc(data, props_raw, where)
    return Record(total, magic, body_crc, queue_id, flag, queue_offset, physical_offset,
                  sys_flag, born_ts, store_ts, reconsume, prepared, body, topic, props)


def verify_property_crc(data: bytes, props_raw: bytes, where: int) -> None:
    """Check the __CRC32# trailer as forceVerifyPropCRC would.

    The last 20 bytes are "__CRC32#" 0x01, ten ASCII digits of
    crc32(record[0:totalSize-20]) least significant digit first, and 0x02
    (MessageDecoder.createCrc32).
    """
    trailer = data[-CRC32_RESERVED_LEN:]
    prefix = PROP_CRC32.encode() + b"\x01"
    if (len(props_raw) < CRC32_RESERVED_LEN or not trailer.startswith(prefix)
            or trailer[-1:] != b"\x02"):
        raise StoreError(f"record at offset {where}: {PROP_CRC32} property is not the "
                         f"{CRC32_RESERVED_LEN}-byte trailer of the record")
    digits = trailer[len(prefix):-1]
    if not all(0x30 <= d <= 0x39 for d in digits):
        raise StoreError(f"record at offset {where}: {PROP_CRC32} value {digits!r} is not digits")
    stored = int(digits[::-1].decode("ascii"))
    actual = rocketmq_crc32(data[:-CRC32_RESERVED_LEN])
    if stored != actual:
        raise StoreError(f"record at offset {where}: {PROP_CRC32} mismatch (stored {stored}, "
                         f"computed {actual})")


def decode_body(record: Record, where: int) -> str:
    """Body as text; zlib-compressed bodies are inflated first."""
    body = record.body
    if record.sys_flag & FLAG_COMPRESSED:
        ctype = (record.sys_flag & COMPRESSION_TYPE_MASK) >> 8
        if ctype not in (0, 3):  # 0 (legacy) and 3 mean zlib
            raise StoreError(f"record at offset {where}: compression type {ctype} "
                             "(LZ4/ZSTD) cannot be decoded with the standard library")
        try:
            body = zlib.decompress(body)
        except zlib.error as exc:
            raise StoreError(f"record at offset {where}: bad zlib body: {exc}") from exc
    return body.decode("utf-8", errors="surrogateescape")


# --------------------------------------------------------------------------
# write
# --------------------------------------------------------------------------

class MappedFileWriter:
    """Writes a queue of fixed-size, sparse, offset-named files."""

    def __init__(self, directory: str, file_size: int):
        self.directory = directory
        self.file_size = file_size
        self.created: set[int] = set()
        os.makedirs(directory, exist_ok=True)

    def write(self, offset: int, data: bytes) -> None:
        """Write data at a global offset; it must not cross a file boundary."""
        start = offset - offset % self.file_size
        if offset + len(data) > start + self.file_size:
            raise StoreError(f"write of {len(data)} bytes at {offset} crosses a file boundary")
        path = os.path.join(self.directory, file_name(start))
        if start not in self.created:
            with open(path, "wb") as f:
                f.truncate(self.file_size)   # sparse: only written bytes use disk
            self.created.add(start)
        with open(path, "r+b") as f:
            f.seek(offset - start)
            f.write(data)


def uniq_key(index: int) -> str:
    """A client-style message id: ip, pid, class-loader hash, time, counter.

    Deterministic (derived from the message's index) so the output is
    reproducible; 16 bytes, 32 uppercase hex characters.
    """
    raw = (bytes([127, 0, 0, 1]) + struct.pack(">H", 0x5045) + struct.pack(">I", 0x54524C00)
           + struct.pack(">I", index >> 16) + struct.pack(">H", index & 0xFFFF))
    return raw.hex().upper()


def message_properties(msg: dict, index: int) -> dict[str, str]:
    """TAGS, KEYS (when non-empty), UNIQ_KEY, WAIT=true and the message's own "properties"."""
    props: dict[str, str] = {}
    if msg.get("tags"):
        props[PROP_TAGS] = msg["tags"]
    if msg.get("keys"):
        props[PROP_KEYS] = msg["keys"]
    props[PROP_UNIQ_KEY] = uniq_key(index)
    props[PROP_WAIT] = "true"
    props.update(msg.get("properties") or {})
    return props


TIMER_TOPIC = "rmq_sys_wheel_timer"         # TimerMessageStore.TIMER_TOPIC
TIMER_PRECISION_MS = 1000                   # timerPrecisionMs
TIMER_SLOTS_TOTAL = 7 * 86400               # TIMER_WHEEL_TTL_DAY * DAY_SECS
TIMER_SLOT = struct.Struct(">qqqii")        # Slot: timeMs/precision, firstPos, lastPos, num, magic
TIMER_UNIT = struct.Struct(">iqiqiqiiq")    # size, prevPos, magic, writeTime, delay, offsetPy, sizePy, hash, 0
TIMERLOG_FILE_SIZE = 100 * 1024 * 1024      # mappedFileSizeTimerLog
TIMER_MAGIC_DEFAULT = 1


def write_timer(store_dir: str, timer: dict, enqueued: list[tuple[int, int, dict]]) -> None:
    """Units for `enqueued` ((physical offset, size, properties) of the timer topic's messages, in
    queue order) in timerlog/, their slots in timerwheel, and config/timercheck."""
    write_time = int(timer["writeTimeMs"])
    log = MappedFileWriter(os.path.join(store_dir, "timerlog"), TIMERLOG_FILE_SIZE)
    slots: dict[int, list[int]] = {}     # time -> [firstPos, lastPos, num]
    position = 0
    for offset_py, size_py, props in enqueued:
        delayed = int(props["TIMER_OUT_MS"])
        slot = slots.get(delayed)
        prev = slot[1] if slot else -1
        real = props.get("REAL_TOPIC")
        unit = TIMER_UNIT.pack(TIMER_UNIT.size, prev, TIMER_MAGIC_DEFAULT, write_time,
                               delayed - write_time, offset_py, size_py,
                               java_string_hash(real) if real is not None else 0, 0)
        log.write(position, unit)
        slots[delayed] = [slot[0] if slot else position, position, (slot[2] if slot else 0) + 1]
        position += TIMER_UNIT.size
    wheel_path = os.path.join(store_dir, "timerwheel")
    with open(wheel_path, "wb") as f:
        f.truncate(2 * TIMER_SLOTS_TOTAL * TIMER_SLOT.size)
        for time_ms, (first, last, num) in slots.items():
            index = (time_ms // TIMER_PRECISION_MS) % (2 * TIMER_SLOTS_TOTAL)
            f.seek(index * TIMER_SLOT.size)
            f.write(TIMER_SLOT.pack(time_ms // TIMER_PRECISION_MS, first, last, num, 0))
    # prepareTimerCheckPoint takes the log's flushed position before the flush that follows it,
    # while the queue offset already counts every unit: as after the first flush of a new log,
    # the flushed position recorded here is 0.
    page = bytearray(CHECKPOINT_SIZE)
    struct.pack_into(">qqqqqqq", page, 0, int(timer["lastReadTimeMs"]), 0, len(enqueued),
                     len(enqueued), 0, write_time, 0)
    os.makedirs(os.path.join(store_dir, "config"), exist_ok=True)
    with open(os.path.join(store_dir, "config", "timercheck"), "wb") as f:
        f.write(page)


def load_manifest(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if not isinstance(manifest.get("messages"), list):
        raise StoreError(f"{path}: 'messages' must be a list")
    for i, msg in enumerate(manifest["messages"]):
        for key in ("topic", "queueId", "body", "bornTimestamp", "storeTimestamp"):
            if key not in msg:
                raise StoreError(f"{path}: message {i} lacks '{key}'")
    return manifest


def write_store(store_dir: str, manifest: dict) -> None:
    if os.path.isdir(store_dir) and os.listdir(store_dir):
        raise StoreError(f"{store_dir}: refusing to write into a non-empty directory")
    commitlog = MappedFileWriter(os.path.join(store_dir, "commitlog"), COMMITLOG_FILE_SIZE)
    queues: dict[tuple[str, int], MappedFileWriter] = {}
    next_queue_offset: dict[tuple[str, int], int] = {}
    position = 0
    last_store_ts = 0
    enqueued: list[tuple[int, int, dict]] = []

    for index, msg in enumerate(manifest["messages"]):
        key = (msg["topic"], int(msg["queueId"]))
        queue_offset = next_queue_offset.get(key, 0)
        props = message_properties(msg, index)
        body = msg["body"].encode("utf-8")

        record = encode_record(key[0], key[1], queue_offset, position, body, props,
                               int(msg["bornTimestamp"]), int(msg["storeTimestamp"]))
        remaining = COMMITLOG_FILE_SIZE - position % COMMITLOG_FILE_SIZE
        if len(record) + END_FILE_MIN_BLANK_LENGTH > remaining:
            commitlog.write(position, struct.pack(">iI", remaining, BLANK_MAGIC))
            position += remaining
            record = encode_record(key[0], key[1], queue_offset, position, body, props,
                                   int(msg["bornTimestamp"]), int(msg["storeTimestamp"]))
        commitlog.write(position, record)

        if key not in queues:
            queues[key] = MappedFileWriter(
                os.path.join(store_dir, "consumequeue", key[0], str(key[1])), CQ_FILE_SIZE)
        queues[key].write(queue_offset * CQ_UNIT_SIZE,
                          CQ_UNIT.pack(position, len(record), tags_code(props.get(PROP_TAGS))))

        next_queue_offset[key] = queue_offset + 1
        if key[0] == TIMER_TOPIC:
            enqueued.append((position, len(record), props))
        position += len(record)
        last_store_ts = int(msg["storeTimestamp"])

    if manifest.get("timer"):
        write_timer(store_dir, manifest["timer"], enqueued)

    os.makedirs(os.path.join(store_dir, "commitlog"), exist_ok=True)
    os.makedirs(os.path.join(store_dir, "consumequeue"), exist_ok=True)
    write_checkpoint(os.path.join(store_dir, "checkpoint"), last_store_ts)
    os.makedirs(os.path.join(store_dir, "config"), exist_ok=True)
    open(os.path.join(store_dir, "lock"), "wb").close()
    abort_path = os.path.join(store_dir, "abort")
    if manifest.get("abort"):
        open(abort_path, "wb").close()
    elif os.path.exists(abort_path):
        os.remove(abort_path)


def write_checkpoint(path: str, timestamp: int) -> None:
    """physicMsgTimestamp, logicsMsgTimestamp, indexMsgTimestamp; rest zero."""
    page = bytearray(CHECKPOINT_SIZE)
    struct.pack_into(">qqq", page, 0, timestamp, timestamp, timestamp)
    with open(path, "wb") as f:
        f.write(page)


# --------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------

def list_mapped_files(directory: str) -> tuple[list[tuple[int, str]], int]:
    """Offset-named files of one directory, checked for equal size and contiguity.

    Returns ([(start offset, path)], file size); file size 0 when empty.
    """
    if not os.path.isdir(directory):
        return [], 0
    files = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if len(name) != 20 or not name.isdigit() or not os.path.isfile(path):
            raise StoreError(f"{path}: not a 20-digit mapped file name")
        files.append((int(name), path))
    if not files:
        return [], 0
    sizes = {os.path.getsize(path) for _, path in files}
    if len(sizes) != 1:
        raise StoreError(f"{directory}: files have different sizes {sorted(sizes)}")
    size = sizes.pop()
    if size == 0:
        raise StoreError(f"{directory}: files are empty")
    for (start, path), (next_start, _) in zip(files, files[1:]):
        if next_start != start + size:
            raise StoreError(f"{directory}: {os.path.basename(path)} is followed by "
                             f"{file_name(next_start)}, expected {file_name(start + size)}")
    return files, size


class CommitLog:
    """Random and sequential access to the commit-log files."""

    def __init__(self, directory: str):
        self.files, self.file_size = list_mapped_files(directory)
        self.handles = {start: open(path, "rb") for start, path in self.files}
        self.cache: dict[int, Record] = {}

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()

    def file_start(self, offset: int) -> int | None:
        for start, _ in self.files:
            if start <= offset < start + self.file_size:
                return start
        return None

    def read(self, offset: int, length: int) -> bytes:
        """Bytes inside one file; fails if they run past its end."""
        start = self.file_start(offset)
        if start is None:
            raise StoreError(f"commit log has no file containing offset {offset}")
        if offset + length > start + self.file_size:
            raise StoreError(f"commit log: {length} bytes at offset {offset} run past the end "
                             f"of file {file_name(start)}")
        handle = self.handles[start]
        handle.seek(offset - start)
        return handle.read(length)

    def record_at(self, offset: int) -> Record:
        """Decode (and verify) the record starting at `offset`."""
        if offset in self.cache:
            return self.cache[offset]
        total, magic = struct.unpack(">iI", self.read(offset, 8))
        if magic == BLANK_MAGIC:
            raise StoreError(f"commit log offset {offset} is a BLANK end-of-file marker")
        if magic not in (MAGIC_V1, MAGIC_V2):
            raise StoreError(f"record at offset {offset}: bad magic 0x{magic:08X}")
        if total < record_length(magic, 0, 0, 0, 0):
            raise StoreError(f"record at offset {offset}: totalSize {total} is too small")
        record = decode_record(self.read(offset, total), offset)
        if record.physical_offset != offset:
            raise StoreError(f"record at offset {offset}: physicalOffset field says "
                             f"{record.physical_offset}")
        self.cache[offset] = record
        return record

    def walk(self) -> list[int]:
        """Offsets of all records, walking from the first file.

        BLANK ends a file; a zero totalSize ends the log.
        """
        offsets = []
        for i, (start, _) in enumerate(self.files):
            position = start
            end = start + self.file_size
            while True:
                if end - position < END_FILE_MIN_BLANK_LENGTH:
                    if any(self.read(position, end - position)):
                        raise StoreError(f"commit log offset {position}: {end - position} "
                                         "stray bytes at the end of a file (no room for BLANK)")
                    ended_log = True
                    break
                total, magic = struct.unpack(">iI", self.read(position, 8))
                if total == 0 and magic == 0:
                    ended_log = True
                    break
                if magic == BLANK_MAGIC:
                    if total != end - position:
                        raise StoreError(f"BLANK at commit log offset {position} has size "
                                         f"{total}, expected {end - position}")
                    ended_log = False
                    break
                self.record_at(position)
                offsets.append(position)
                position += total
            if ended_log and i + 1 < len(self.files):
                raise StoreError(f"commit log ends at offset {position} (no BLANK) but file "
                                 f"{file_name(self.files[i + 1][0])} follows")
            if ended_log:
                break
        return offsets


@dataclass
class QueueUnit:
    index: int
    offset: int
    size: int
    tags_code: int


def read_consume_queue(directory: str) -> list[QueueUnit]:
    """All units of one queue up to the first end unit (offset < 0 or size <= 0)."""
    files, size = list_mapped_files(directory)
    if size % CQ_UNIT_SIZE:
        raise StoreError(f"{directory}: file size {size} is not a multiple of {CQ_UNIT_SIZE}")
    units: list[QueueUnit] = []
    for i, (start, path) in enumerate(files):
        if start % CQ_UNIT_SIZE:
            raise StoreError(f"{path}: start offset is not a multiple of {CQ_UNIT_SIZE}")
        with open(path, "rb") as f:
            data = f.read()
        for pos in range(0, size, CQ_UNIT_SIZE):
            offset, unit_size, code = CQ_UNIT.unpack_from(data, pos)
            if offset < 0 or unit_size <= 0:
                if i + 1 < len(files):
                    raise StoreError(f"{path}: queue ends at unit {(start + pos) // CQ_UNIT_SIZE} "
                                     f"but file {file_name(files[i + 1][0])} follows")
                return units
            units.append(QueueUnit((start + pos) // CQ_UNIT_SIZE, offset, unit_size, code))
    return units


def list_queues(store_dir: str) -> list[tuple[str, int, str]]:
    """(topic, queueId, directory) for every consumequeue/{topic}/{qid}/."""
    root = os.path.join(store_dir, "consumequeue")
    if not os.path.isdir(root):
        return []
    queues = []
    for topic in sorted(os.listdir(root)):
        for qid in sorted(os.listdir(os.path.join(root, topic))):
            directory = os.path.join(root, topic, qid)
            if not qid.lstrip("-").isdigit():
                raise StoreError(f"{directory}: queue directory name is not an integer")
            queues.append((topic, int(qid), directory))
    return queues


def expected_tags_code(record: Record) -> int:
    """tagsCode the dispatcher computes for this record."""
    code = tags_code(record.properties.get(PROP_TAGS))
    delay = record.properties.get(PROP_DELAY)
    if record.topic == SCHEDULE_TOPIC and delay is not None:
        table = delay_level_table()
        try:
            level = min(int(delay), max(table))
        except ValueError:
            raise StoreError(f"{record.topic} record at offset {record.physical_offset}: "
                             f"DELAY property {delay!r} is not an integer") from None
        if level > 0:
            code = record.store_timestamp + table.get(level, 1000)
    return code


def check_unit(unit: QueueUnit, record: Record, topic: str, queue_id: int) -> None:
    """The unit and the record it points at must agree."""
    where = f"consumequeue {topic}/{queue_id} unit {unit.index} (offset {unit.offset})"
    if record.total_size != unit.size:
        raise StoreError(f"{where}: unit size {unit.size} but record totalSize "
                         f"{record.total_size}")
    if record.topic != topic or record.queue_id != queue_id:
        raise StoreError(f"{where}: record belongs to {record.topic}/{record.queue_id}")
    if record.queue_offset != unit.index:
        raise StoreError(f"{where}: record queueOffset is {record.queue_offset}")
    if unit.tags_code <= CQ_EXT_MAX_ADDR:
        raise StoreError(f"{where}: tagsCode {unit.tags_code} is a ConsumeQueueExt address "
                         "(not supported)")
    expected = expected_tags_code(record)
    if unit.tags_code != expected:
        raise StoreError(f"{where}: tagsCode {unit.tags_code}, expected {expected}")


def message_json(unit: QueueUnit, record: Record) -> dict:
    return {
        "queueOffset": record.queue_offset,
        "physicalOffset": record.physical_offset,
        "size": record.total_size,
        "body": decode_body(record, unit.offset),
        "tags": record.properties.get(PROP_TAGS),
        "keys": record.properties.get(PROP_KEYS),
        "storeTimestamp": record.store_timestamp,
        "properties": record.properties,
    }


def read_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise StoreError(f"{path}: checkpoint file is missing")
    with open(path, "rb") as f:
        data = f.read(CHECKPOINT_SIZE)
    if len(data) < 24:
        raise StoreError(f"{path}: checkpoint is only {len(data)} bytes")
    phys, logics, index = struct.unpack_from(">qqq", data, 0)
    return {"physicMsgTimestamp": phys, "logicsMsgTimestamp": logics,
            "indexMsgTimestamp": index}


def read_store(store_dir: str) -> dict:
    if not os.path.isdir(store_dir):
        raise StoreError(f"{store_dir}: not a directory")
    commitlog = CommitLog(os.path.join(store_dir, "commitlog"))
    try:
        references = {offset: 0 for offset in commitlog.walk()}
        queues: dict[str, list[dict]] = {}
        for topic, queue_id, directory in list_queues(store_dir):
            messages = []
            for unit in read_consume_queue(directory):
                if (unit.offset, unit.size, unit.tags_code) == FILLER_UNIT:
                    continue
                if unit.offset not in references:
                    raise StoreError(f"consumequeue {topic}/{queue_id} unit {unit.index}: offset "
                                     f"{unit.offset} is not the start of a record in the "
                                     "commit log")
                record = commitlog.record_at(unit.offset)
                check_unit(unit, record, topic, queue_id)
                references[unit.offset] = references.get(unit.offset, 0) + 1
                messages.append(message_json(unit, record))
            queues[f"{topic}/{queue_id}"] = messages
        check_references(commitlog, references)
    finally:
        commitlog.close()
    return {
        "queues": queues,
        "checkpoint": read_checkpoint(os.path.join(store_dir, "checkpoint")),
        "abort": os.path.exists(os.path.join(store_dir, "abort")),
    }


def check_references(commitlog: CommitLog, references: dict[int, int]) -> None:
    """Every dispatched record has exactly one unit; others have none."""
    for offset, count in sorted(references.items()):
        record = commitlog.record_at(offset)
        expected = 0 if record.has_no_queue_unit else 1
        if count != expected:
            raise StoreError(f"record at commit log offset {offset} ({record.topic}/"
                             f"{record.queue_id} queueOffset {record.queue_offset}) is referenced "
                             f"by {count} consume-queue units, expected {expected}")


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

USAGE = "usage: rocketmq_store.py write DIR MANIFEST | rocketmq_store.py read DIR"


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 3 and argv[0] == "write":
            write_store(argv[1], load_manifest(argv[2]))
        elif len(argv) == 2 and argv[0] == "read":
            json.dump(read_store(argv[1]), sys.stdout, ensure_ascii=True)
            sys.stdout.write("\n")
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except (StoreError, OSError, ValueError, struct.error) as exc:
        print(f"rocketmq_store.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
