#!/usr/bin/env node
'use strict';

// Protocol capture for the ali-ons client test. NOT a broker: an in-memory stand-in
// that prints every remoting frame a client sends and answers just enough (route,
// cluster info, topic creation, heartbeat, send, pull, offsets, query, view, delay)
// to walk a client through all of ons_client.js's commands. Used to record what
// ali-ons sends (NOTES.md) and to check ons_client.js itself without Petrel.
// No dependencies.
//
//   node capture_server.js [--namesrv 9876] [--broker 10911] [--quiet] [--responses]
//
// Prints one line per frame: ">> :port code NAME header-json body".

const net = require('net');
const zlib = require('zlib');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const NAMESRV_PORT = Number(opt('--namesrv', 9876));
const BROKER_PORT = Number(opt('--broker', 10911));
const QUIET = args.includes('--quiet');
const SHOW_RESPONSES = args.includes('--responses');
const HOST = '127.0.0.1';
const BROKER_ADDR = `${HOST}:${BROKER_PORT}`;
const BROKER_NAME = 'capture-broker';
const DELAY_LEVELS_MS = [ 1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200 ].map(s => s * 1000);

const NAMES = {
  10: 'SEND_MESSAGE', 11: 'PULL_MESSAGE', 12: 'QUERY_MESSAGE', 14: 'QUERY_CONSUMER_OFFSET',
  15: 'UPDATE_CONSUMER_OFFSET', 17: 'UPDATE_AND_CREATE_TOPIC', 29: 'SEARCH_OFFSET_BY_TIMESTAMP',
  30: 'GET_MAX_OFFSET', 31: 'GET_MIN_OFFSET', 33: 'VIEW_MESSAGE_BY_ID', 34: 'HEART_BEAT',
  35: 'UNREGISTER_CLIENT', 36: 'CONSUMER_SEND_MSG_BACK', 38: 'GET_CONSUMER_LIST_BY_GROUP',
  105: 'GET_ROUTEINFO_BY_TOPIC', 106: 'GET_BROKER_CLUSTER_INFO', 310: 'SEND_MESSAGE_V2',
};

// ------------------------------------------------------------------ state

const topics = new Map([ [ 'TBW102', 8 ] ]); // topic -> queue count
const queues = new Map(); // "topic@qid" -> [record]
const byPhy = new Map(); // commit log offset -> record
const offsets = new Map(); // "group@topic@qid" -> offset
const groups = new Map(); // group -> Map(clientId -> socket)
const scheduled = [];
let commitLogOffset = 0;

function queueOf(topic, qid) {
  const k = `${topic}@${qid}`;
  if (!queues.has(k)) queues.set(k, []);
  return queues.get(k);
}

function parseProps(s) {
  const out = {};
  for (const item of (s || '').split('\u0002')) {
    const i = item.indexOf('\u0001');
    if (i > 0) out[item.slice(0, i)] = item.slice(i + 1);
  }
  return out;
}

function propsString(p) {
  return Object.keys(p).map(k => `${k}\u0001${p[k]}\u0002`).join('');
}

function ipBytes(addr) {
  const m = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(addr || '');
  return m ? m.slice(1).map(Number) : [ 127, 0, 0, 1 ];
}

function msgIdOf(phy) {
  const b = Buffer.alloc(16);
  Buffer.from(ipBytes(HOST)).copy(b, 0);
  b.writeInt32BE(BROKER_PORT, 4);
  b.writeBigInt64BE(BigInt(phy), 8);
  return b.toString('hex').toUpperCase();
}

// Appends a message; returns the record (with its encoded bytes).
function append(m) {
  const body = m.body || Buffer.alloc(0);
  const topicBuf = Buffer.from(m.topic);
  const propBuf = Buffer.from(propsString(m.props));
  const q = queueOf(m.topic, m.queueId);
  const size = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + body.length + 1 + topicBuf.length + 2 + propBuf.length;
  const b = Buffer.alloc(size);
  let o = 0;
  const storeTimestamp = Date.now();
  const rec = { topic: m.topic, queueId: m.queueId, queueOffset: q.length, phy: commitLogOffset, props: m.props, storeTimestamp };
  o = b.writeInt32BE(size, o);
  o = b.writeInt32BE(-626843481, o); // 0xDAA320A7, the v1 message magic
  o = b.writeInt32BE(zlib.crc32 ? zlib.crc32(body) | 0 : 0, o);
  o = b.writeInt32BE(m.queueId, o);
  o = b.writeInt32BE(m.flag || 0, o);
  o = b.writeBigInt64BE(BigInt(rec.queueOffset), o);
  o = b.writeBigInt64BE(BigInt(rec.phy), o);
  o = b.writeInt32BE(m.sysFlag || 0, o);
  o = b.writeBigInt64BE(BigInt(m.bornTimestamp || storeTimestamp), o);
  Buffer.from(ipBytes(m.bornHost)).copy(b, o); o += 4;
  o = b.writeInt32BE(m.bornPort || 0, o);
  o = b.writeBigInt64BE(BigInt(storeTimestamp), o);
  Buffer.from(ipBytes(HOST)).copy(b, o); o += 4;
  o = b.writeInt32BE(BROKER_PORT, o);
  o = b.writeInt32BE(m.reconsumeTimes || 0, o);
  o = b.writeBigInt64BE(0n, o);
  o = b.writeInt32BE(body.length, o);
  o += body.copy(b, o);
  o = b.writeUInt8(topicBuf.length, o);
  o += topicBuf.copy(b, o);
  o = b.writeInt16BE(propBuf.length, o);
  propBuf.copy(b, o);
  rec.bytes = b;
  rec.msgId = msgIdOf(rec.phy);
  commitLogOffset += size;
  q.push(rec);
  byPhy.set(rec.phy, rec);
  return rec;
}

setInterval(() => {
  const now = Date.now();
  for (let i = scheduled.length - 1; i >= 0; i--) {
    if (scheduled[i].due <= now) {
      const m = scheduled.splice(i, 1)[0].m;
      append(m); // re-appended to the real topic, as RocketMQ does
    }
  }
}, 50).unref();

// ------------------------------------------------------------------ framing

function encodeResponse(req, code, ext, body, remark) {
  const extFields = {};
  for (const k of Object.keys(ext || {})) extFields[k] = String(ext[k]);
  const header = Buffer.from(JSON.stringify({
    code, extFields, flag: 1, language: 'JAVA', opaque: req.opaque,
    remark: remark || null, serializeTypeCurrentRPC: 'JSON', version: 479,
  }));
  const bodyLen = body ? body.length : 0;
  const pre = Buffer.alloc(8);
  pre.writeInt32BE(4 + header.length + bodyLen, 0);
  pre.writeInt32BE(header.length, 4); // type 0 = JSON
  return body ? Buffer.concat([ pre, header, body ]) : Buffer.concat([ pre, header ]);
}

function show(port, header, body) {
  if (QUIET) return;
  let b = '';
  if (body && body.length) {
    const txt = body.toString('utf8');
    b = /^[\x20-\x7e\u0001\u0002\u00a0-\uffff\s]*$/.test(txt) && !txt.includes('\ufffd') ?
      ` body(${body.length})=${JSON.stringify(txt.length > 600 ? txt.slice(0, 600) + '...' : txt)}` :
      ` body(${body.length} bytes)=${body.slice(0, 48).toString('hex')}...`;
  }
  console.log(`>> :${port} ${header.code} ${NAMES[header.code] || '?'} ${JSON.stringify(header)}${b}`);
}

function serve(port, handler) {
  net.createServer(sock => {
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    sock.on('data', chunk => {
      buf = Buffer.concat([ buf, chunk ]);
      while (buf.length >= 4) {
        const total = buf.readInt32BE(0);
        if (buf.length < 4 + total) break;
        const frame = buf.slice(4, 4 + total);
        buf = buf.slice(4 + total);
        const type = frame[0];
        const hlen = frame.readUInt32BE(0) & 0xffffff;
        if (type !== 0) {
          console.log(`>> :${port} non-JSON header type ${type}: ${frame.slice(4, 4 + hlen).toString('hex')}`);
          continue;
        }
        const header = JSON.parse(frame.slice(4, 4 + hlen).toString('utf8'));
        const body = frame.length > 4 + hlen ? frame.slice(4 + hlen) : null;
        show(port, header, body);
        if (header.flag & 1) continue; // a response to something we never send
        const oneway = (header.flag & 2) === 2;
        Promise.resolve(handler(header, body, sock)).then(res => {
          if (oneway || !res || sock.destroyed) return;
          if (SHOW_RESPONSES && !QUIET) console.log(`<< :${port} ${header.code} -> ${res[0]} ${JSON.stringify(res[1] || {})}`);
          sock.write(encodeResponse(header, res[0], res[1], res[2], res[3]));
        }).catch(err => console.error('handler error', err));
      }
    });
    sock.on('error', () => {});
  }).listen(port, HOST, () => console.log(`capture_server listening on ${HOST}:${port}`));
}

// ------------------------------------------------------------------ namesrv

function routeBody(topic, version) {
  const n = topics.get(topic);
  const quoted = version >= 401; // fastjson form depends on the client version
  const addrs = quoted ? `{"0":"${BROKER_ADDR}"}` : `{0:"${BROKER_ADDR}"}`;
  return Buffer.from(`{"brokerDatas":[{"brokerAddrs":${addrs},"brokerName":"${BROKER_NAME}","cluster":"DefaultCluster"}],` +
    `"filterServerTable":{},"queueDatas":[{"brokerName":"${BROKER_NAME}","perm":6,"readQueueNums":${n},"topicSysFlag":0,"writeQueueNums":${n}}]}`);
}

serve(NAMESRV_PORT, h => {
  const e = h.extFields || {};
  switch (h.code) {
    case 105:
      if (!topics.has(e.topic)) return [ 17, {}, null, `No topic route info in name server for the topic: ${e.topic}` ];
      return [ 0, {}, routeBody(e.topic, h.version) ];
    case 106:
      return [ 0, {}, Buffer.from(`{"brokerAddrTable":{"${BROKER_NAME}":{"brokerAddrs":{0:"${BROKER_ADDR}"},"brokerName":"${BROKER_NAME}","cluster":"DefaultCluster"}},"clusterAddrTable":{"DefaultCluster":["${BROKER_NAME}"]}}`) ];
    default:
      return [ 3, {}, null, `request type ${h.code} not supported` ];
  }
});

// ------------------------------------------------------------------ broker

function waitForMessages(q, from, ms) {
  return new Promise(resolve => {
    const deadline = Date.now() + ms;
    const t = setInterval(() => {
      if (q.length > from || Date.now() >= deadline) {
        clearInterval(t);
        resolve();
      }
    }, 20);
  });
}

function matches(sub, rec) {
  if (!sub || sub === '*') return true;
  const tags = sub.split('||').map(s => s.trim()).filter(Boolean);
  return tags.includes(rec.props.TAGS);
}

serve(BROKER_PORT, async (h, body, sock) => {
  const e = h.extFields || {};
  switch (h.code) {
    case 17:
      topics.set(e.topic, Number(e.writeQueueNums) || 4);
      return [ 0 ];
    case 34: {
      const hb = JSON.parse(body.toString());
      for (const c of hb.consumerDataSet || []) {
        if (!groups.has(c.groupName)) groups.set(c.groupName, new Map());
        groups.get(c.groupName).set(hb.clientID, sock);
        if (!topics.has(`%RETRY%${c.groupName}`)) topics.set(`%RETRY%${c.groupName}`, 1);
      }
      sock.once('close', () => { for (const g of groups.values()) if (g.get(hb.clientID) === sock) g.delete(hb.clientID); });
      return [ 0 ];
    }
    case 35:
      if (e.consumerGroup && groups.has(e.consumerGroup)) groups.get(e.consumerGroup).delete(e.clientID);
      return [ 0 ];
    case 38: {
      const ids = groups.has(e.consumerGroup) ? [ ...groups.get(e.consumerGroup).keys() ] : [];
      return [ 0, {}, Buffer.from(JSON.stringify({ consumerIdList: ids })) ];
    }
    case 14: {
      const k = `${e.consumerGroup}@${e.topic}@${e.queueId}`;
      return offsets.has(k) ? [ 0, { offset: offsets.get(k) } ] : [ 22, {}, null, 'Not found, maybe this group consumer boot first' ];
    }
    case 15:
      offsets.set(`${e.consumerGroup}@${e.topic}@${e.queueId}`, Number(e.commitOffset));
      return [ 0 ];
    case 30:
      return [ 0, { offset: queueOf(e.topic, Number(e.queueId)).length } ];
    case 31: case 29:
      return [ 0, { offset: 0 } ];
    case 10: case 310: {
      const v2 = h.code === 310;
      const topic = v2 ? e.b : e.topic;
      if (!topics.has(topic)) return [ 17, {}, null, `topic[${topic}] not exist` ];
      const queueId = Number(v2 ? e.e : e.queueId);
      const props = parseProps(v2 ? e.i : e.properties);
      const m = {
        topic, queueId, props, body,
        flag: Number(v2 ? e.h : e.flag) || 0,
        sysFlag: Number(v2 ? e.f : e.sysFlag) || 0,
        bornTimestamp: Number(v2 ? e.g : e.bornTimestamp) || Date.now(),
        bornHost: sock.remoteAddress, bornPort: sock.remotePort,
      };
      const level = Number(props.DELAY || 0);
      if (level > 0) {
        // keep an id for the send result; the message shows up in the topic later
        const rec = append({ ...m, topic: 'SCHEDULE_TOPIC_XXXX', queueId: level - 1, props: { ...props, REAL_TOPIC: topic, REAL_QID: String(queueId) } });
        scheduled.push({ due: rec.storeTimestamp + DELAY_LEVELS_MS[Math.min(level, 18) - 1], m });
        return [ 0, { msgId: rec.msgId, queueId, queueOffset: rec.queueOffset } ];
      }
      const rec = append(m);
      return [ 0, { msgId: rec.msgId, queueId, queueOffset: rec.queueOffset } ];
    }
    case 11: {
      const q = queueOf(e.topic, Number(e.queueId));
      const from = Number(e.queueOffset);
      const sysFlag = Number(e.sysFlag);
      if (sysFlag & 1) offsets.set(`${e.consumerGroup}@${e.topic}@${e.queueId}`, Number(e.commitOffset));
      if (q.length <= from && (sysFlag & 2)) {
        await waitForMessages(q, from, Math.min(Number(e.suspendTimeoutMillis) || 0, 15000));
      }
      const hdr = { minOffset: 0, maxOffset: q.length, suggestWhichBrokerId: 0 };
      if (from > q.length) return [ 21, { ...hdr, nextBeginOffset: q.length } ];
      if (q.length <= from) return [ 19, { ...hdr, nextBeginOffset: from } ];
      const recs = q.slice(from, from + Number(e.maxMsgNums || 32));
      const hits = recs.filter(r => matches(e.subscription, r));
      const next = from + recs.length;
      if (!hits.length) return [ 20, { ...hdr, nextBeginOffset: next } ];
      return [ 0, { ...hdr, nextBeginOffset: next }, Buffer.concat(hits.map(r => r.bytes)) ];
    }
    case 12: {
      const begin = Number(e.beginTimestamp);
      const end = Number(e.endTimestamp);
      const hits = [];
      for (const r of byPhy.values()) {
        if (r.topic === e.topic && (r.props.KEYS || '').split(' ').includes(e.key) &&
          r.storeTimestamp >= begin && r.storeTimestamp <= end) hits.push(r);
      }
      const found = hits.slice(0, Number(e.maxNum) || 32);
      const hdr = { indexLastUpdateTimestamp: Date.now(), indexLastUpdatePhyoffset: commitLogOffset };
      if (!found.length) return [ 22, hdr, null, 'can not find message, maybe time range not correct' ];
      return [ 0, hdr, Buffer.concat(found.map(r => r.bytes)) ];
    }
    case 33: {
      const r = byPhy.get(Number(e.offset));
      return r ? [ 0, {}, r.bytes ] : [ 1, {}, null, `can not find message by the offset, ${e.offset}` ];
    }
    case 36:
      return [ 0 ];
    default:
      return [ 3, {}, null, `request type ${h.code} not supported` ];
  }
});
