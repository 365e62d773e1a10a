#!/usr/bin/env node
'use strict';

// Third-party client check for Petrel: drives the npm RocketMQ client `ali-ons`
// (pure JavaScript, unchanged) against a running NameServer + broker and checks
// what comes back. Exits 0 only when every check of the subcommand holds;
// otherwise prints "FAIL ons <command>: <reason>" and exits 1 (2 = bad usage).
//
//   node ons_client.js <namesrv host:port> <run-id> <command> [args]
//
// Commands (the driver runs them as separate processes, in this order):
//   setup       make sure the run's topics exist (UPDATE_AND_CREATE_TOPIC to every
//               master broker when the NameServer has no route for them)
//   produce N   send N messages (distinct keys, tags TagA/TagB/TagC); ids -> state file
//   consume     a new consumer group receives every produced message, checked field by field
//   resume      group consumes about half, closes (commits offsets); a fresh consumer
//               of the same group must get the rest and not everything again
//   query       query by key and view by message id return the right message
//   tags        a group subscribed to "TagA || TagC" gets exactly those messages
//   delay       a message with delay level 2 (5 s) arrives no earlier than 5 s after send
//
// Environment: ONS_TIMEOUT_MS (per command, default 120000), ONS_STATE_DIR (default
// the OS temp dir), ONS_DEBUG=1 (print ali-ons's info/warn logs).
//
// Query by key and view by id are not part of ali-ons's API (its viewMessage is
// commented out and it has no queryMessage). They are sent here through ali-ons's own
// remoting layer (MQClientAPI.invoke, RemotingCommand, MessageDecoder), with the
// request codes and headers ali-ons itself defines: same framing, same connection code.

const fs = require('fs');
const os = require('os');
const path = require('path');
const ByteBuffer = require('byte');
const JSON2 = require('JSON2');
const { Producer, Consumer, Message } = require('ali-ons');
const MQClientAPI = require('ali-ons/lib/mq_client_api');
const RemotingCommand = require('ali-ons/lib/protocol/command/remoting_command');
const RequestCode = require('ali-ons/lib/protocol/request_code');
const ResponseCode = require('ali-ons/lib/protocol/response_code');
const MessageDecoder = require('ali-ons/lib/message/message_decoder');
const ConsumeFromWhere = require('ali-ons/lib/consumer/consume_from_where');

const TIMEOUT_MS = Number(process.env.ONS_TIMEOUT_MS || 120000);
const DEBUG = process.env.ONS_DEBUG === '1';
const QUEUES = 4; // queues per topic when this program creates the topic
const TAGS = [ 'TagA', 'TagB', 'TagC' ];
const DELAY_LEVEL = 2; // 5 s in RocketMQ's default messageDelayLevel
const DELAY_MS = 5000;
const RESUME_SLACK = 8; // redelivered-at-most count allowed after a clean close

// ---------------------------------------------------------------- plumbing

class CheckFailed extends Error {}

const started = Date.now();
let command = '?';
let clientErrors = 0;
let lastClientError = '';

function fail(reason) {
  throw new CheckFailed(reason);
}

function check(cond, reason) {
  if (!cond) fail(reason);
}

function note(...args) {
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`[ons ${command} +${secs}s]`, ...args);
}

function finish(code, line) {
  (code === 0 ? console.log : console.error)(line);
  // ali-ons keeps timers (route polling, heartbeats, the shared inner producer)
  // running after close(): leave explicitly.
  process.exit(code);
}

const logger = {
  info(...a) { if (DEBUG) console.log('[ali-ons info]', ...a); },
  debug(...a) { if (DEBUG) console.log('[ali-ons debug]', ...a); },
  warn(...a) { if (DEBUG) console.warn('[ali-ons warn]', ...a); },
  error(...a) { console.error('[ali-ons error]', ...a); },
};

function onClientError(err) {
  clientErrors++;
  lastClientError = `${err && err.name}: ${err && err.message}`;
  console.error(`[ali-ons emitted error] ${lastClientError}`);
}

function lastError() {
  return lastClientError ? ` (last error from ali-ons: ${lastClientError})` : '';
}

// Time left for a wait, keeping `reserveMs` for closing and reporting.
function budget(reserveMs) {
  return Math.max(5000, TIMEOUT_MS - (Date.now() - started) - reserveMs);
}

// ali-ons insists on an HTTP client (for Aliyun's address server); with `nameSrv`
// set it is never called.
const noHttp = {
  async request(url) {
    throw new Error(`ali-ons tried to reach the address server ${url}; nameSrv should be used`);
  },
};

const sleep = ms => new Promise(r => setTimeout(r, ms));

async function waitFor(what, cond, ms, stepMs = 100) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) fail(`timed out after ${ms} ms waiting for ${what}${lastError()}`);
    await sleep(stepMs);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed(`timed out after ${ms} ms: ${what}${lastError()}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------- naming and state

function names(namesrv, runId) {
  const safe = runId.replace(/[^A-Za-z0-9_-]/g, '_');
  const base = `petrel_ons_${safe}`;
  const stateDir = process.env.ONS_STATE_DIR || os.tmpdir();
  return {
    namesrv,
    safe,
    topic: base,
    delayTopic: `${base}_delay`,
    producerGroup: `${base}_pg`,
    group: suffix => `${base}_${suffix}`,
    instance: suffix => `${safe}-${suffix}-${process.pid}`,
    stateFile: path.join(stateDir, `petrel-ons-${safe}.json`),
  };
}

function keyOf(n, i) { return `k-${n.safe}-${i}`; }
function extraKeyOf(n, i) { return `x-${n.safe}-${i}`; }
function tagOf(i) { return TAGS[i % TAGS.length]; }
function bodyOf(n, i) { return JSON.stringify({ run: n.safe, i }); }
function keysOf(n, i) { return i % 5 === 0 ? [ keyOf(n, i), extraKeyOf(n, i) ] : [ keyOf(n, i) ]; }

function loadState(n) {
  let state;
  try {
    state = JSON.parse(fs.readFileSync(n.stateFile, 'utf8'));
  } catch (err) {
    fail(`cannot read ${n.stateFile} (run "produce N" first): ${err.message}`);
  }
  check(state.topic === n.topic && Array.isArray(state.messages) && state.messages.length > 0,
    `state file ${n.stateFile} does not belong to this run or is empty`);
  return state;
}

// ---------------------------------------------------------------- clients

function producerOptions(n) {
  return {
    nameSrv: n.namesrv,
    httpclient: noHttp,
    logger,
    producerGroup: n.producerGroup,
    sendMsgTimeout: 5000,
  };
}

function newConsumer(n, groupSuffix, instanceSuffix) {
  const consumer = new Consumer({
    nameSrv: n.namesrv,
    httpclient: noHttp,
    logger,
    consumerGroup: n.group(groupSuffix),
    instanceName: n.instance(instanceSuffix || groupSuffix),
    consumeFromWhere: ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
    // rebalance more often than the 10 s default so a second consumer settles fast
    rebalanceInterval: 2000,
  });
  consumer.on('error', onClientError);
  return consumer;
}

async function newAdmin(n) {
  const api = new MQClientAPI({ nameSrv: n.namesrv, httpclient: noHttp, logger, responseTimeout: 5000 });
  api.on('error', onClientError);
  await api.ready();
  return api;
}

function masterAddrs(route) {
  const addrs = [];
  for (const b of route.brokerDatas || []) {
    const a = b.brokerAddrs && b.brokerAddrs['0'];
    if (a) addrs.push(a);
  }
  return addrs;
}

function writable(route) {
  return route && (route.queueDatas || []).some(q => (q.perm & 2) === 2 && q.writeQueueNums > 0) &&
    masterAddrs(route).length > 0;
}

async function routeOf(api, topic) {
  try {
    return await api.getTopicRouteInfoFromNameServer(topic, 5000);
  } catch (err) {
    if (err.code === ResponseCode.TOPIC_NOT_EXIST) return null;
    throw err;
  }
}

// Creates `topic` the way `mqadmin updateTopic -c` does when the NameServer has no
// route: ali-ons itself never auto-creates (it stops at TOPIC_NOT_EXIST).
async function ensureTopic(api, topic) {
  let route = await routeOf(api, topic);
  if (writable(route)) return route;

  const masters = new Set();
  const cmd = RemotingCommand.createRequestCommand(RequestCode.GET_BROKER_CLUSTER_INFO, null);
  const res = await api.invokeForNameSrvAtLeastOnce(cmd, 5000);
  if (res.code === ResponseCode.SUCCESS && res.body) {
    const info = JSON2.parse(res.body.toString());
    for (const name of Object.keys(info.brokerAddrTable || {})) {
      const a = (info.brokerAddrTable[name].brokerAddrs || {})['0'];
      if (a) masters.add(a);
    }
  }
  if (!masters.size) {
    // fall back to the brokers that serve the default topic
    const def = await routeOf(api, 'TBW102');
    for (const a of def ? masterAddrs(def) : []) masters.add(a);
  }
  check(masters.size > 0,
    `topic ${topic} has no route and the NameServer names no broker to create it on ` +
    `(GET_BROKER_CLUSTER_INFO code ${res.code}, remark ${res.remark})`);
  for (const addr of masters) {
    note(`creating topic ${topic} on ${addr} (${QUEUES} queues)`);
    await api.createTopic(addr, 'TBW102', {
      topicName: topic,
      readQueueNums: QUEUES,
      writeQueueNums: QUEUES,
      perm: 6,
      topicFilterType: 'SINGLE_TAG',
      topicSysFlag: 0,
      order: false,
    }, 5000);
  }
  await waitFor(`a writable NameServer route for ${topic}`, async () => {
    route = await routeOf(api, topic);
    return writable(route);
  }, 30000, 500);
  return route;
}

// ---------------------------------------------------------------- message checks

function describe(msg) {
  return `msgId=${msg.msgId} topic=${msg.topic} q=${msg.queueId}@${msg.queueOffset} ` +
    `tags=${msg.tags} keys=${JSON.stringify(msg.keys)} body=${msg.body && msg.body.toString()}`;
}

function indexOfBody(n, msg) {
  let parsed;
  try {
    parsed = JSON.parse(msg.body.toString());
  } catch (e) {
    return -1;
  }
  return parsed && parsed.run === n.safe && Number.isInteger(parsed.i) ? parsed.i : -1;
}

// Checks one received message against what `produce` sent. Returns the index.
function checkReceived(n, state, msg, where) {
  const i = indexOfBody(n, msg);
  check(i >= 0 && i < state.messages.length, `${where}: unexpected message ${describe(msg)}`);
  const sent = state.messages[i];
  const problems = [];
  if (msg.topic !== n.topic) problems.push(`topic ${msg.topic} != ${n.topic}`);
  if (msg.body.toString() !== bodyOf(n, i)) problems.push('body differs');
  if (msg.tags !== sent.tag) problems.push(`tags ${msg.tags} != ${sent.tag}`);
  if (msg.keys !== sent.keys.join(' ')) problems.push(`keys ${JSON.stringify(msg.keys)} != ${JSON.stringify(sent.keys.join(' '))}`);
  if (msg.msgId !== sent.msgId) problems.push(`msgId (store host + commit log offset of the record) ${msg.msgId} != send result msgId ${sent.msgId}`);
  if (msg.queueId !== sent.queueId) problems.push(`queueId ${msg.queueId} != send result ${sent.queueId}`);
  if (msg.queueOffset !== sent.queueOffset) problems.push(`queueOffset ${msg.queueOffset} != send result ${sent.queueOffset}`);
  if (!(msg.bornTimestamp >= sent.sentAt - 1000 && msg.bornTimestamp <= sent.sentAt + 60000)) problems.push(`bornTimestamp ${msg.bornTimestamp} not near send time ${sent.sentAt}`);
  if (!(msg.storeTimestamp >= msg.bornTimestamp - 1000)) problems.push(`storeTimestamp ${msg.storeTimestamp} before bornTimestamp ${msg.bornTimestamp}`);
  if (msg.reconsumeTimes !== 0) problems.push(`reconsumeTimes ${msg.reconsumeTimes} != 0`);
  check(!problems.length, `${where}: message #${i}: ${problems.join('; ')} (${describe(msg)})`);
  return i;
}

// ---------------------------------------------------------------- commands

async function cmdSetup(n) {
  const api = await newAdmin(n);
  for (const topic of [ n.topic, n.delayTopic ]) {
    const route = await ensureTopic(api, topic);
    note(`route for ${topic}: brokers ${JSON.stringify(masterAddrs(route))}, ` +
      `queues ${JSON.stringify((route.queueDatas || []).map(q => [ q.brokerName, q.readQueueNums, q.writeQueueNums, q.perm ]))}`);
  }
  return 'topics exist and have writable routes';
}

async function cmdProduce(n, count) {
  check(Number.isInteger(count) && count >= 2, 'produce needs N >= 2');
  const api = await newAdmin(n);
  await ensureTopic(api, n.topic);

  const producer = new Producer(producerOptions(n));
  producer.on('error', onClientError);
  await producer.ready();
  const messages = [];
  for (let i = 0; i < count; i++) {
    const msg = new Message(n.topic, tagOf(i), bodyOf(n, i));
    msg.keys = keysOf(n, i);
    msg.properties.n = String(i); // what the sql step's SQL92 expression reads
    const sentAt = Date.now();
    let res;
    try {
      res = await producer.send(msg);
    } catch (err) {
      fail(`send #${i} failed: ${err.name} code=${err.code}: ${err.message}`);
    }
    check(res.sendStatus === 'SEND_OK', `send #${i}: status ${res.sendStatus}`);
    check(typeof res.msgId === 'string' && /^[0-9A-F]{32}$/.test(res.msgId),
      `send #${i}: msgId ${JSON.stringify(res.msgId)} is not 32 upper-case hex digits (IPv4 store host + port + commit log offset)`);
    check(Number.isInteger(res.messageQueue.queueId) || /^\d+$/.test(String(res.messageQueue.queueId)),
      `send #${i}: queueId ${res.messageQueue.queueId}`);
    check(Number.isInteger(res.queueOffset) && res.queueOffset >= 0, `send #${i}: queueOffset ${res.queueOffset}`);
    messages.push({
      i,
      keys: keysOf(n, i),
      tag: tagOf(i),
      msgId: res.msgId,
      brokerName: res.messageQueue.brokerName,
      queueId: Number(res.messageQueue.queueId),
      queueOffset: res.queueOffset,
      sentAt,
    });
  }
  const ids = new Set(messages.map(m => m.msgId));
  check(ids.size === count, `send results carry ${ids.size} distinct msgIds for ${count} messages`);
  const slots = new Set(messages.map(m => `${m.brokerName}/${m.queueId}/${m.queueOffset}`));
  check(slots.size === count, `send results carry ${slots.size} distinct (queue, offset) pairs for ${count} messages`);
  const queues = new Set(messages.map(m => `${m.brokerName}/${m.queueId}`));
  fs.mkdirSync(path.dirname(n.stateFile), { recursive: true });
  fs.writeFileSync(n.stateFile, JSON.stringify({ topic: n.topic, run: n.safe, messages }, null, 1));
  await withTimeout(producer.close(), 10000, 'producer close');
  return `${count} messages sent over ${queues.size} queue(s); ids in ${n.stateFile}`;
}

// Subscribes a new consumer and collects messages by index.
function collect(n, state, consumer, expression, where, onMessage) {
  const got = new Map(); // index -> count
  consumer.subscribe(n.topic, expression, async msg => {
    const i = checkReceivedSafe(n, state, msg, where);
    got.set(i, (got.get(i) || 0) + 1);
    if (onMessage) await onMessage(i, msg);
  });
  return got;
}

let deferredFailure = null;
function checkReceivedSafe(n, state, msg, where) {
  // A throw inside the handler would only make ali-ons retry the message; remember
  // the first failure and report it from the main flow instead.
  try {
    return checkReceived(n, state, msg, where);
  } catch (err) {
    if (!deferredFailure) deferredFailure = err;
    return -1;
  }
}

function throwDeferred() {
  if (deferredFailure) throw deferredFailure;
}

async function cmdConsume(n) {
  const state = loadState(n);
  const total = state.messages.length;
  const consumer = newConsumer(n, 'consume');
  const got = collect(n, state, consumer, '*', 'consume');
  await waitFor(`all ${total} messages (have ${got.size})`, () => {
    throwDeferred();
    return got.size >= total;
  }, budget(15000));
  await sleep(2000); // anything extra shows up now
  throwDeferred();
  const dups = [ ...got.values() ].filter(c => c > 1).length;
  await withTimeout(consumer.close(), 10000, 'consumer close');
  return `received all ${total} messages, bodies/keys/tags/msgIds/queue offsets match` +
    (dups ? ` (${dups} delivered more than once)` : '');
}

async function cmdResume(n) {
  const state = loadState(n);
  const total = state.messages.length;
  const half = Math.floor(total / 2);

  // First consumer: take `half` messages, then close cleanly while the handler of
  // the last one is still running, so nothing past it is acknowledged.
  const first = newConsumer(n, 'resume', 'resume-1');
  let reachedHalf;
  const halfReached = new Promise(r => { reachedHalf = r; });
  let releaseHandler;
  const closed = new Promise(r => { releaseHandler = r; });
  const gotA = collect(n, state, first, '*', 'resume (first consumer)', async () => {
    if (gotA.size >= half) {
      reachedHalf();
      await closed;
    }
  });
  await withTimeout(halfReached, budget(40000), `first consumer receiving ${half} of ${total} messages (has ${gotA.size})`);
  throwDeferred();
  await withTimeout(first.close(), 15000, 'first consumer close (commits offsets, unregisters)');
  releaseHandler();
  const a = new Set(gotA.keys());
  note(`first consumer took ${a.size} messages and closed`);
  await sleep(1000);

  // Second consumer, same group: must start from the committed offsets.
  const second = newConsumer(n, 'resume', 'resume-2');
  const gotB = collect(n, state, second, '*', 'resume (second consumer)');
  const missing = () => state.messages.filter(m => !a.has(m.i) && !gotB.has(m.i)).length;
  await waitFor('the second consumer to receive the rest', () => {
    throwDeferred();
    return missing() === 0;
  }, budget(15000));
  await sleep(3000); // redeliveries, if any, arrive now
  throwDeferred();
  const b = new Set(gotB.keys());
  const again = [ ...b ].filter(i => a.has(i));
  // after a clean close only the message in hand at close time should come back
  const slack = Math.max(1, Math.min(RESUME_SLACK, Math.floor(half / 4)));
  await withTimeout(second.close(), 10000, 'second consumer close');
  check(again.length <= slack,
    `second consumer re-received ${again.length} of the ${a.size} messages the first one had consumed ` +
    `(allowed ${slack}): consumer offsets were not committed on close or not returned by QUERY_CONSUMER_OFFSET`);
  return `first consumer took ${a.size}/${total}, second got ${b.size} (the other ${total - a.size} ` +
    `+ ${again.length} redelivered)`;
}

// A new consumer of group `groupSuffix` subscribed with `expression` must receive every
// message of `wanted` (indexes) and nothing else; returns how many it received.
async function receiveExactly(n, state, groupSuffix, expression, wanted) {
  const consumer = newConsumer(n, groupSuffix);
  const got = collect(n, state, consumer, expression, groupSuffix);
  await waitFor(`all ${wanted.size} selected messages (have ${got.size})`, () => {
    throwDeferred();
    return [ ...wanted ].every(i => got.has(i));
  }, budget(15000));
  await sleep(2000);
  throwDeferred();
  const extra = [ ...got.keys() ].filter(i => !wanted.has(i));
  await withTimeout(consumer.close(), 10000, 'consumer close');
  check(!extra.length, `handler got messages outside the subscription: ${JSON.stringify(extra)}`);
  return wanted.size;
}

async function cmdTags(n) {
  const state = loadState(n);
  const wanted = new Set(state.messages.filter(m => m.tag === 'TagA' || m.tag === 'TagC').map(m => m.i));
  // ali-ons also filters by tag on the client, so an extra here is a client-visible bug.
  const count = await receiveExactly(n, state, 'tags', 'TagA || TagC', wanted);
  return `received exactly the ${count} TagA/TagC messages`;
}

// An SQL92 subscription (ali-ons sends expressionType SQL92 in its heartbeat and pulls, and
// filters nothing itself, so an extra is one the broker let through): exactly the messages
// the expression selects arrive.
async function cmdSql(n) {
  const state = loadState(n);
  const selects = m => m.i >= 10 && m.i < 60 && (m.tag === 'TagA' || m.tag === 'TagC');
  const wanted = new Set(state.messages.filter(selects).map(m => m.i));
  check(wanted.size > 0, 'the sql step needs produce to have sent more than 10 messages');
  const expression = { expressionType: 'SQL92', subString: "n BETWEEN 10 AND 59 AND TAGS IN ('TagA', 'TagC')" };
  const count = await receiveExactly(n, state, 'sql', expression, wanted);
  return `received exactly the ${count} messages ${expression.subString} selects`;
}

function decodeAll(body) {
  if (!body || !body.length) return [];
  return MessageDecoder.decodes(ByteBuffer.wrap(body));
}

async function queryByKey(api, n, brokers, key, begin, end) {
  const found = [];
  for (const addr of brokers) {
    const cmd = RemotingCommand.createRequestCommand(RequestCode.QUERY_MESSAGE, {
      topic: n.topic,
      key,
      maxNum: 32,
      beginTimestamp: begin,
      endTimestamp: end,
    });
    cmd.extFields._UNIQUE_KEY_QUERY = 'false';
    const res = await api.invoke(addr, cmd, 10000);
    if (res.code === ResponseCode.QUERY_NOT_FOUND) continue;
    check(res.code === ResponseCode.SUCCESS,
      `QUERY_MESSAGE key=${key} to ${addr}: response code ${res.code} remark ${res.remark}`);
    // the index is hashed: keep what really carries the key, as real clients do
    for (const m of decodeAll(res.body)) {
      if (m.topic === n.topic && String(m.keys || '').split(' ').includes(key)) found.push(m);
    }
  }
  return found;
}

async function viewById(api, msgId) {
  let where;
  try {
    where = MessageDecoder.decodeMessageId(msgId);
  } catch (err) {
    fail(`msgId ${msgId} does not decode as store host + commit log offset: ${err.message}`);
  }
  const cmd = RemotingCommand.createRequestCommand(RequestCode.VIEW_MESSAGE_BY_ID, { offset: where.offset.toString() });
  let res;
  try {
    res = await api.invoke(where.address, cmd, 10000);
  } catch (err) {
    fail(`VIEW_MESSAGE_BY_ID ${msgId}: cannot reach ${where.address} (the store host the msgId names): ${err.message}`);
  }
  check(res.code === ResponseCode.SUCCESS,
    `VIEW_MESSAGE_BY_ID ${msgId} (offset ${where.offset}) at ${where.address}: response code ${res.code} remark ${res.remark}`);
  const msgs = decodeAll(res.body);
  check(msgs.length === 1, `VIEW_MESSAGE_BY_ID ${msgId}: body decodes to ${msgs.length} messages, expected 1`);
  return msgs[0];
}

async function cmdQuery(n) {
  const state = loadState(n);
  const total = state.messages.length;
  const api = await newAdmin(n);
  const route = await routeOf(api, n.topic);
  check(route, `no route for ${n.topic}`);
  const brokers = masterAddrs(route);
  check(brokers.length, `route for ${n.topic} names no master broker`);
  const begin = Math.min(...state.messages.map(m => m.sentAt)) - 60000;
  const end = Date.now() + 60000;

  const picks = [ ...new Set([ 0, Math.floor(total / 2), total - 1 ]) ].map(i => state.messages[i]);
  const lookups = [];
  for (const m of picks) lookups.push({ m, key: m.keys[0] });
  const multi = state.messages.find(m => m.keys.length > 1 && m.i > 0) || state.messages[0];
  lookups.push({ m: multi, key: multi.keys[multi.keys.length - 1] }); // second key of a two-key message

  for (const { m, key } of lookups) {
    let found = [];
    // the key index may be built behind the append: give it a few seconds
    await waitFor(`QUERY_MESSAGE for key ${key} to find the message`, async () => {
      found = await queryByKey(api, n, brokers, key, begin, end);
      return found.length > 0;
    }, 15000, 500);
    check(found.length === 1, `query by key ${key}: ${found.length} messages carry it, expected 1: ${found.map(describe).join(' | ')}`);
    checkReceived(n, state, found[0], `query by key ${key}`);
  }
  const none = await queryByKey(api, n, brokers, `absent-${n.safe}`, begin, end);
  check(none.length === 0, `query by an unused key returned ${none.length} messages`);
  // a time range that ends before the messages were sent finds nothing
  const early = await queryByKey(api, n, brokers, picks[0].keys[0], 0, begin);
  check(early.length === 0, `query by key with a time range before the send returned ${early.length} messages`);

  for (const m of picks) {
    const got = await viewById(api, m.msgId);
    check(got.msgId === m.msgId, `view by id ${m.msgId}: record decodes to msgId ${got.msgId}`);
    checkReceived(n, state, got, `view by id ${m.msgId}`);
  }
  return `query by key (${lookups.length} keys, incl. a second key) and view by id (${picks.length} ids) ` +
    'return the right messages; unused key and early time range return none';
}

async function cmdDelay(n) {
  const api = await newAdmin(n);
  await ensureTopic(api, n.delayTopic);

  const arrivals = new Map(); // key -> { at, msg }
  const consumer = newConsumer(n, 'delay');
  consumer.subscribe(n.delayTopic, '*', async msg => {
    if (!arrivals.has(msg.keys)) arrivals.set(msg.keys, { at: Date.now(), msg });
  });
  // wait until the consumer owns the topic's queues and is pulling
  await waitFor('the delay consumer to be assigned queues', () =>
    [ ...consumer.processQueueTable.values() ].some(v => v.messageQueue.topic === n.delayTopic),
  30000);
  await sleep(1000);

  const producer = new Producer(producerOptions(n));
  producer.on('error', onClientError);
  await producer.ready();
  // unique per invocation: a re-run in the same run id must not see the old ones
  const delayedKey = `d-${n.safe}-${Date.now()}`;
  const controlKey = `c-${n.safe}-${Date.now()}`;
  const delayed = new Message(n.delayTopic, 'Delay', `delayed ${n.safe}`);
  delayed.keys = [ delayedKey ];
  delayed.delayTimeLevel = DELAY_LEVEL;
  const sendStart = Date.now();
  const r1 = await producer.send(delayed);
  const sendEnd = Date.now();
  check(r1.sendStatus === 'SEND_OK', `delayed send: status ${r1.sendStatus}`);
  const control = new Message(n.delayTopic, 'Control', `control ${n.safe}`);
  control.keys = [ controlKey ];
  const r2 = await producer.send(control);
  check(r2.sendStatus === 'SEND_OK', `control send: status ${r2.sendStatus}`);

  await waitFor('the undelayed control message', () => arrivals.has(controlKey), 20000);
  const controlAfter = arrivals.get(controlKey).at - sendEnd;
  await waitFor('the delayed message', () => arrivals.has(delayedKey), DELAY_MS + 40000);
  const got = arrivals.get(delayedKey);
  const after = got.at - sendStart;
  check(after >= DELAY_MS, `delayed message (level ${DELAY_LEVEL}) arrived ${after} ms after send, expected >= ${DELAY_MS} ms`);
  check(got.msg.topic === n.delayTopic, `delayed message delivered with topic ${got.msg.topic}, expected ${n.delayTopic}`);
  check(got.msg.body.toString() === `delayed ${n.safe}`, `delayed message body ${got.msg.body}`);
  check(got.msg.tags === 'Delay', `delayed message tags ${got.msg.tags}`);
  await withTimeout(producer.close(), 10000, 'producer close');
  await withTimeout(consumer.close(), 10000, 'consumer close');
  return `control arrived after ${controlAfter} ms; delayed (level ${DELAY_LEVEL}) after ${after} ms ` +
    `(send result msgId ${r1.msgId}, delivered msgId ${got.msg.msgId})`;
}

// ---------------------------------------------------------------- main

const USAGE = 'usage: node ons_client.js <namesrv host:port> <run-id> ' +
  '(setup | produce N | consume | resume | query | tags | sql | delay)';

async function main() {
  const [ namesrv, runId, cmd, arg ] = process.argv.slice(2);
  command = cmd || '?';
  if (!namesrv || !/^[^:]+:\d+$/.test(namesrv) || !runId || !cmd) finish(2, USAGE);
  const n = names(namesrv, runId);
  const commands = {
    setup: () => cmdSetup(n),
    produce: () => cmdProduce(n, Number(arg)),
    consume: () => cmdConsume(n),
    resume: () => cmdResume(n),
    query: () => cmdQuery(n),
    tags: () => cmdTags(n),
    sql: () => cmdSql(n),
    delay: () => cmdDelay(n),
  };
  if (!commands[cmd]) finish(2, USAGE);

  const watchdog = setTimeout(() => {
    finish(1, `FAIL ons ${cmd}: no result within ${TIMEOUT_MS} ms (ONS_TIMEOUT_MS)`);
  }, TIMEOUT_MS);
  try {
    const summary = await commands[cmd]();
    clearTimeout(watchdog);
    const errs = clientErrors ? ` [ali-ons reported ${clientErrors} error event(s), see stderr]` : '';
    finish(0, `PASS ons ${cmd}: ${summary}${errs}`);
  } catch (err) {
    clearTimeout(watchdog);
    const reason = err instanceof CheckFailed ? err.message :
      `${err.name || 'Error'}${err.code !== undefined ? ` code=${err.code}` : ''}: ${err.message}${lastError()}`;
    finish(1, `FAIL ons ${cmd}: ${reason}`);
  }
}

process.on('unhandledRejection', err => {
  console.error('[unhandled rejection]', err && err.stack || err);
});

main();
