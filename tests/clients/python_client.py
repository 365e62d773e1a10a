#!/usr/bin/env python3
"""Third-party client check for Petrel: the PyPI package `rocketmq` 0.4.4
(ctypes bindings over the bundled rocketmq-client-cpp 1.2.x, remoting protocol,
JSON headers).

Run it with the interpreter of the venv made by tests/clients/install.sh:

    PY="${PETREL_CLIENTS_DIR:-$HOME/.cache/petrel/clients}/python/venv/bin/python"
    $PY tests/clients/python_client.py --namesrv 127.0.0.1:9876 --run-id r1 produce 200
    $PY tests/clients/python_client.py --namesrv 127.0.0.1:9876 --run-id r1 push-consume
    ...

Every subcommand prints `PASS <phase>: ...` and exits 0, or prints
`FAIL <phase>: <reason>` and exits 1.  Exit 2: usage/environment error,
exit 3: the watchdog fired (the native client hung).

Names derive from the run id, so runs never share topics or groups:
    topic        PyT_<rid>            (messages of `produce`)
    delay topic  PyTD_<rid>
    large bodies PyTB_<rid>          (big-produce, big-consume)
    producer     PyPG_<rid>
    consumers    PyCG_<phase>_<rid>
State (what `produce` sent) lives in <state-dir>/produced.json, default
state dir ${TMPDIR:-/tmp}/petrel-pyclient/<rid>.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

TAGS = ("TagA", "TagB", "TagC")
DELAY_LEVEL = 2          # Apache default messageDelayLevel: "1s 5s 10s ..." -> level 2 = 5 s
DELAY_SECONDS = 5.0
EXIT_FAIL, EXIT_USAGE, EXIT_WATCHDOG = 1, 2, 3


class Fail(Exception):
    pass


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def finish(rc):
    # Leave without running ctypes/native destructors at interpreter teardown:
    # the C++ client's threads can still be calling back into Python then.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def start_watchdog(seconds, phase):
    def fire():
        time.sleep(seconds)
        sys.stdout.write("FAIL %s: watchdog: still running after %.0f s (native client call hung?)\n"
                         % (phase, seconds))
        finish(EXIT_WATCHDOG)
    threading.Thread(target=fire, daemon=True).start()


# ---------------------------------------------------------------- naming/state

class Ctx(object):
    def __init__(self, args):
        rid = re.sub(r"[^A-Za-z0-9_-]", "_", args.run_id)
        if not rid or len(rid) > 64:
            raise SystemExit("run id must be 1..64 characters")
        self.rid = rid
        self.namesrv = args.namesrv
        self.timeout = float(args.timeout)
        self.state_dir = args.state_dir or os.path.join(
            os.environ.get("TMPDIR", "/tmp"), "petrel-pyclient", rid)
        self.topic = "PyT_" + rid
        self.delay_topic = "PyTD_" + rid
        self.big_topic = "PyTB_" + rid
        self.producer_group = "PyPG_" + rid
        self.args = args

    def group(self, phase):
        return "PyCG_%s_%s" % (phase, self.rid)

    def path(self, name):
        return os.path.join(self.state_dir, name)

    def save(self, name, obj):
        os.makedirs(self.state_dir, exist_ok=True)
        tmp = self.path(name) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path(name))

    def load(self, name, what):
        try:
            with open(self.path(name)) as f:
                return json.load(f)
        except (IOError, OSError, ValueError) as e:
            raise Fail("cannot read %s (%s); run `%s` first" % (self.path(name), e, what))

    def produced(self):
        st = self.load("produced.json", "produce N")
        if st.get("topic") != self.topic:
            raise Fail("produced.json is for topic %r, expected %r" % (st.get("topic"), self.topic))
        return st


def key_of(rid, i):
    return "%s-k%05d" % (rid, i)


def body_of(rid, i):
    return "petrel-py|%s|%d" % (rid, i)


def decode(v):
    if v is None:
        return None
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def snapshot(m):
    """Copy what we need out of a native message (only valid inside the call)."""
    return {
        "topic": decode(m.topic),
        "keys": decode(m.keys),
        "tags": decode(m.tags),
        "body": decode(m.body),
        "id": decode(m.id),
        "queue_id": m.queue_id,
        "queue_offset": m.queue_offset,
        "reconsume_times": m.reconsume_times,
        "store_ts": m.store_timestamp,
        "born_ts": m.born_timestamp,
        "recv_time": time.time(),
    }


def check_message(ctx, st, m, where):
    """Return a problem string for a received message of the `produce` topic, or None."""
    by_key = st["by_key"]
    if m["topic"] != ctx.topic:
        return "%s: message %s has topic %r, expected %r" % (where, m["id"], m["topic"], ctx.topic)
    exp = by_key.get(m["keys"]) or st.get("unacked", {}).get(m["keys"])
    if exp is None:
        return "%s: unexpected message keys=%r body=%r id=%s" % (where, m["keys"], m["body"], m["id"])
    if m["body"] != exp["body"]:
        return "%s: key %s body %r != sent %r" % (where, m["keys"], m["body"], exp["body"])
    if m["tags"] != exp["tag"]:
        return "%s: key %s tags %r != sent %r" % (where, m["keys"], m["tags"], exp["tag"])
    if m["id"] != exp["msg_id"] and exp["msg_id"] is not None:  # None: the send raised
        return "%s: key %s msg id %r != id returned by send %r (UNIQ_KEY property lost?)" % (
            where, m["keys"], m["id"], exp["msg_id"])
    return None


def index_state(st):
    st["by_key"] = dict((x["key"], x) for x in st["messages"])
    # ha-produce: sends answered with something other than SEND_OK, or not at all, which the
    # broker may or may not have stored.
    st["unacked"] = dict((x["key"], x) for x in st.get("unacked_messages", []))
    return st


# ---------------------------------------------------------------- client helpers

def rmq():
    try:
        from rocketmq import client
    except Exception as e:  # ImportError, OSError from the native library
        sys.stdout.write("FAIL setup: cannot import rocketmq (%s); run tests/clients/install.sh and use its venv\n" % e)
        finish(EXIT_USAGE)
    return client


def make_producer(ctx):
    c = rmq()
    p = c.Producer(ctx.producer_group, timeout=10000)
    p.set_namesrv_addr(ctx.namesrv)
    p.start()
    return p


class Collector(object):
    """Push-consumer callback that records messages and never raises."""

    def __init__(self, sleep=0.0):
        self.lock = threading.Lock()
        self.msgs = []
        self.errors = []
        self.sleep = sleep

    def __call__(self, m):
        try:
            s = snapshot(m)
            with self.lock:
                self.msgs.append(s)
            if self.sleep:
                time.sleep(self.sleep)
        except Exception as e:  # must not raise: the wrapper would ask for redelivery
            with self.lock:
                self.errors.append(repr(e))

    def copy(self):
        with self.lock:
            return list(self.msgs)


def make_push(ctx, group, topic, collector, expression="*", threads=None, instance=None):
    c = rmq()
    pc = c.PushConsumer(group)
    pc.set_namesrv_addr(ctx.namesrv)
    if threads:
        pc.set_thread_count(threads)
    if instance:
        pc.set_instance_name(instance)
    pc.subscribe(topic, collector, expression)
    pc.start()
    return pc


def wait_until(pred, timeout, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def new_group_hint(n_got):
    if n_got:
        return ""
    return (" -- nothing arrived. Besides routing/pull errors, a likely cause: this client's push consumer "
            "is CONSUME_FROM_LAST_OFFSET (not settable from Python), so for a group without a committed "
            "offset it sends QUERY_CONSUMER_OFFSET (14) and, on an error answer such as 22/QUERY_NOT_FOUND, "
            "starts at GET_MAX_OFFSET (30), skipping everything. Apache brokers answer 0 for a new group "
            "while the queue still holds offset 0. C++ client log: ~/logs/rocketmq-cpp/")


# ---------------------------------------------------------------- phases

def phase_produce(ctx):
    n = ctx.args.n
    if n < 1:
        raise Fail("N must be >= 1")
    p = make_producer(ctx)
    out = []
    try:
        for i in range(n):
            c = rmq()
            msg = c.Message(ctx.topic)
            key, tag, body = key_of(ctx.rid, i), TAGS[i % len(TAGS)], body_of(ctx.rid, i)
            msg.set_keys(key)
            msg.set_tags(tag)
            msg.set_body(body)
            try:
                r = p.send_sync(msg)
            except Exception as e:
                raise Fail("send_sync #%d failed: %s: %s" % (i, type(e).__name__, e))
            if r.status != c.SendStatus.OK:
                raise Fail("send_sync #%d status %s, expected OK" % (i, r.status))
            if not r.msg_id:
                raise Fail("send_sync #%d returned an empty msg id" % i)
            if r.offset < 0:
                raise Fail("send_sync #%d returned queue offset %d" % (i, r.offset))
            out.append({"index": i, "key": key, "tag": tag, "body": body,
                        "msg_id": r.msg_id, "queue_offset": r.offset})
    finally:
        p.shutdown()
    ids = [x["msg_id"] for x in out]
    if len(set(ids)) != n:
        raise Fail("send_sync returned duplicate msg ids")
    ctx.save("produced.json", {"topic": ctx.topic, "n": n, "run_id": ctx.rid,
                               "produced_at": time.time(), "messages": out})
    return "sent %d messages to %s; msg ids in %s" % (n, ctx.topic, ctx.path("produced.json"))


def phase_push_consume(ctx, phase="push", expression="*", want_tags=None):
    st = index_state(ctx.produced())
    want = set(x["key"] for x in st["messages"] if want_tags is None or x["tag"] in want_tags)
    col = Collector()
    pc = make_push(ctx, ctx.group(phase), ctx.topic, col, expression)
    try:
        got_all = wait_until(lambda: want <= set(m["keys"] for m in col.copy()), ctx.timeout)
        if got_all:
            time.sleep(1.0)  # let stragglers (duplicates/unexpected) show up
    finally:
        pc.shutdown()        # persists consumer offsets (UPDATE_CONSUMER_OFFSET, oneway)
    msgs = col.copy()
    if col.errors:
        raise Fail("callback errors: %s" % col.errors[:3])
    for m in msgs:
        prob = check_message(ctx, st, m, phase)
        if prob:
            raise Fail(prob)
        if want_tags is not None and m["tags"] not in want_tags:
            raise Fail("subscription %r delivered tag %r (key %s)" % (expression, m["tags"], m["keys"]))
    keys = [m["keys"] for m in msgs]
    missing = want - set(keys)
    if missing:
        raise Fail("got %d of %d messages within %.0f s; missing e.g. %s%s" % (
            len(want) - len(missing), len(want), ctx.timeout, sorted(missing)[:5], new_group_hint(len(keys))))
    dups = len(keys) - len(set(keys))
    queues = sorted(set(m["queue_id"] for m in msgs))
    return "received all %d messages (%d duplicates) from queues %s; bodies/keys/tags/ids match" % (
        len(want), dups, queues)


def phase_tag_filter(ctx):
    want = ("TagA", "TagC")
    return phase_push_consume(ctx, phase="tag", expression=" || ".join(want), want_tags=set(want))


def phase_pull_consume(ctx):
    """Pull every queue from offset 0 with the native Pull() call.

    rocketmq.client.PullConsumer.pull() hides pull statuses and loops forever on
    OFFSET_ILLEGAL / BROKER_TIMEOUT, so the loop is written here on the same
    ctypes bindings the package ships (rocketmq.ffi), bounded and checked."""
    import ctypes
    c = rmq()
    from rocketmq import ffi
    st = index_state(ctx.produced())
    n = st["n"]
    pc = c.PullConsumer(ctx.group("pull"))
    pc.set_namesrv_addr(ctx.namesrv)
    pc.start()
    msgs, per_queue = [], {}
    try:
        mqs = ctypes.POINTER(ffi._CMessageQueue)()
        size = ctypes.c_int()
        try:
            c.ffi_check(ffi.dll.FetchSubscriptionMessageQueues(
                pc._handle, ctx.topic.encode(), ctypes.pointer(mqs), ctypes.pointer(size)))
        except Exception as e:
            raise Fail("FetchSubscriptionMessageQueues(%s) failed: %s" % (ctx.topic, e))
        if size.value < 1:
            raise Fail("topic route of %s has no queues" % ctx.topic)
        deadline = time.time() + ctx.timeout
        for qi in range(size.value):
            mq = mqs[qi]
            qid = mq.queueId
            offset, timeouts, got = 0, 0, 0
            for _ in range(n + 100):
                if time.time() > deadline:
                    raise Fail("pull of queue %d did not finish in %.0f s" % (qid, ctx.timeout))
                res = ffi.dll.Pull(pc._handle, ctypes.pointer(mq), b"*", ctypes.c_longlong(offset), 32)
                try:
                    status = res.pullStatus
                    if status == ffi._CPullStatus.FOUND:
                        if res.size < 1:
                            raise Fail("queue %d offset %d: FOUND with 0 messages" % (qid, offset))
                        for k in range(res.size):
                            m = snapshot(c.RecvMessage(res.msgFoundList[k]))
                            if m["queue_id"] != qid:
                                raise Fail("queue %d returned a message of queue %d" % (qid, m["queue_id"]))
                            if m["queue_offset"] != offset + k:
                                raise Fail("queue %d: message %d of a pull from offset %d has queue offset %d"
                                           % (qid, k, offset, m["queue_offset"]))
                            msgs.append(m)
                        got += res.size
                        if res.nextBeginOffset != offset + res.size:
                            raise Fail("queue %d: nextBeginOffset %d after %d messages from offset %d" % (
                                qid, res.nextBeginOffset, res.size, offset))
                        offset = res.nextBeginOffset
                    elif status == ffi._CPullStatus.NO_NEW_MSG:
                        if res.maxOffset != offset:
                            raise Fail("queue %d: NO_NEW_MSG at offset %d but maxOffset=%d" % (
                                qid, offset, res.maxOffset))
                        break
                    elif status == ffi._CPullStatus.BROKER_TIMEOUT:
                        timeouts += 1
                        if timeouts > 3:
                            raise Fail("queue %d: pull at offset %d failed %d times (client error: %s)" % (
                                qid, offset, timeouts, decode(ffi.dll.GetLatestErrorMessage())))
                        time.sleep(1)
                    elif status == ffi._CPullStatus.OFFSET_ILLEGAL:
                        raise Fail("queue %d: OFFSET_ILLEGAL pulling offset %d (min %d max %d next %d)" % (
                            qid, offset, res.minOffset, res.maxOffset, res.nextBeginOffset))
                    else:  # NO_MATCHED_MSG with "*" is wrong
                        raise Fail("queue %d: pull status %d at offset %d with expression '*'" % (
                            qid, status, offset))
                finally:
                    ffi.dll.ReleasePullResult(res)
            else:
                raise Fail("queue %d: pull loop did not reach NO_NEW_MSG" % qid)
            per_queue[qid] = got
        ffi.dll.ReleaseSubscriptionMessageQueue(mqs)
    finally:
        pc.shutdown()
    copies = {}
    for m in msgs:
        copies.setdefault(m["keys"], []).append(m)
    retried = 0
    for key, found in copies.items():
        exp = st["by_key"].get(key)
        if exp is None:  # a send never acknowledged: stored or not, any copies
            for m in found:
                prob = check_message(ctx, st, m, "pull")
                if prob:
                    raise Fail(prob)
            continue
        # The acknowledged copy is whole, at the offset its SEND_OK named. The C++ client
        # retries a send whose answer did not come with a fresh message id; such an attempt
        # may have been stored too (at least once): another copy with the same body.
        acked = [m for m in found if exp["msg_id"] is None or m["id"] == exp["msg_id"]]
        if len(acked) != 1:
            raise Fail("key %s: %d of its %d copies carry the acknowledged id %s" % (
                key, len(acked), len(found), exp["msg_id"]))
        prob = check_message(ctx, st, acked[0], "pull")
        if prob:
            raise Fail(prob)
        if exp.get("queue_offset") is not None and exp["queue_offset"] != acked[0]["queue_offset"]:
            raise Fail("key %s: stored at queue offset %d but send_sync reported %d" % (
                key, acked[0]["queue_offset"], exp["queue_offset"]))
        for m in found:
            if m is not acked[0] and (m["body"] != exp["body"] or m["tags"] != exp["tag"]):
                raise Fail("key %s: a second copy differs from the message sent" % key)
        retried += len(found) - 1
    keys = [k for k in copies if k in st["by_key"]]
    missing = set(st["by_key"]) - set(keys)
    if missing:
        raise Fail("pulled %d of %d messages; missing e.g. %s" % (len(keys), n, sorted(missing)[:5]))
    unacked = sum(len(f) for k, f in copies.items() if k not in st["by_key"])
    also = " (and %d sends never acknowledged)" % unacked if unacked else ""
    if retried:
        also += " (and %d copies of retried sends)" % retried
    return "pulled exactly the %d acknowledged messages%s from %d queues %s, offsets contiguous from 0" % (
        n, also, len(per_queue), per_queue)


def remoting_code(addr, code, ext_fields):
    """One RocketMQ remoting request over a plain socket (JSON header, no body); the answer's
    code. For what the native client cannot ask: a question to one chosen broker."""
    import socket
    import struct
    header = json.dumps({"code": code, "language": "PYTHON", "version": 0, "opaque": 1,
                         "flag": 0, "extFields": ext_fields}).encode()
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(struct.pack(">II", 4 + len(header), len(header)) + header)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise Fail("%s closed the connection before answering request %d" % (addr, code))
            data += chunk
    header_len = struct.unpack(">I", data[4:8])[0] & 0xFFFFFF
    return json.loads(data[8:8 + header_len].decode())["code"]


def slave_knows_topic(ctx, slave):
    """A pull of queue 0 on the slave finds the topic (not TOPIC_NOT_EXIST, 17)."""
    ext = {"consumerGroup": ctx.group("probe"), "topic": ctx.topic, "queueId": "0",
           "queueOffset": "0", "maxMsgNums": "1", "sysFlag": "4", "commitOffset": "0",
           "suspendTimeoutMillis": "0", "subscription": "*", "subVersion": "0",
           "expressionType": "TAG"}
    return remoting_code(slave, 11, ext) != 17


def phase_ha_produce(ctx):
    """Sends to a SYNC_MASTER from 4 threads and kills it with SIGKILL once N sends were
    acknowledged; records every SEND_OK (with its queue offset) and every other send.

    Before the load: one SEND_OK (the slave is connected) and the slave's copy of the topic
    (its config sync), so that after the kill the slave can serve the topic."""
    import signal
    c = rmq()
    n, master_pid, slave = ctx.args.n, ctx.args.master_pid, ctx.args.slave
    p = make_producer(ctx)
    lock = threading.Lock()
    acked, unacked, counter = [], [], [0]
    killed = threading.Event()

    def send_one():
        with lock:
            i = counter[0]
            counter[0] += 1
        key, tag, body = key_of(ctx.rid, i), TAGS[i % len(TAGS)], body_of(ctx.rid, i)
        msg = c.Message(ctx.topic)
        msg.set_keys(key)
        msg.set_tags(tag)
        msg.set_body(body)
        entry = {"index": i, "key": key, "tag": tag, "body": body}
        try:
            r = p.send_sync(msg)
        except Exception:
            with lock:
                unacked.append(dict(entry, msg_id=None))
            return False
        entry["msg_id"] = r.msg_id
        with lock:
            if r.status == c.SendStatus.OK:
                acked.append(dict(entry, queue_offset=r.offset))
                if len(acked) >= n and not killed.is_set():
                    os.kill(master_pid, signal.SIGKILL)
                    killed.set()
            else:
                unacked.append(entry)
        return r.status == c.SendStatus.OK

    def lane():
        failures = 0
        while failures < 3 and not (killed.is_set() and failures):
            failures = 0 if send_one() else failures + 1

    try:
        if not wait_until(send_one, ctx.timeout, step=0.1):
            raise Fail("no SEND_OK within %.0f s: the slave never connected" % ctx.timeout)
        if not wait_until(lambda: slave_knows_topic(ctx, slave), ctx.timeout):
            raise Fail("the slave never copied topic %s" % ctx.topic)
        lanes = [threading.Thread(target=lane) for _ in range(4)]
        for t in lanes:
            t.start()
        for t in lanes:
            t.join()
    finally:
        p.shutdown()
    if not killed.is_set():
        raise Fail("only %d sends were acknowledged before the lanes gave up" % len(acked))
    ctx.save("produced.json", {"topic": ctx.topic, "n": len(acked), "run_id": ctx.rid,
                               "messages": acked, "unacked_messages": unacked})
    return "%d sends acknowledged, %d not, master (pid %d) killed with SIGKILL after %d" % (
        len(acked), len(unacked), master_pid, n)


def phase_resume(ctx):
    """Stage 1 and stage 2 run as separate processes (a real client restart)."""
    st = ctx.produced()
    if st["n"] < 10:
        raise Fail("resume needs at least 10 produced messages")
    base = [sys.executable, os.path.abspath(__file__), "--namesrv", ctx.namesrv, "--run-id", ctx.rid,
            "--timeout", str(ctx.timeout), "--state-dir", ctx.state_dir]
    for stage in ("resume-stage1", "resume-stage2"):
        log("running %s" % stage)
        rc = subprocess.call(base + [stage])
        if rc != 0:
            raise Fail("%s exited %d" % (stage, rc))
    return ctx.load("resume.json", "resume")["summary"]


def phase_resume_stage1(ctx):
    st = index_state(ctx.produced())
    n = st["n"]
    half = (n + 1) // 2
    # one thread, slow callback: consumption is in order and easy to stop at ~N/2
    col = Collector(sleep=max(0.005, min(0.05, 5.0 / n)))
    pc = make_push(ctx, ctx.group("resume"), ctx.topic, col, threads=1, instance="resume1")
    try:
        reached = wait_until(lambda: len(set(m["keys"] for m in col.copy())) >= half, ctx.timeout, step=0.02)
    finally:
        t0 = time.time()
        pc.shutdown()        # waits for the consume thread, then commits offsets
        shutdown_s = time.time() - t0
    msgs = col.copy()
    for m in msgs:
        prob = check_message(ctx, st, m, "resume-stage1")
        if prob:
            raise Fail(prob)
    consumed = sorted(set(m["keys"] for m in msgs))
    if not reached:
        raise Fail("stage 1 got %d of the %d messages needed within %.0f s%s" % (
            len(consumed), half, ctx.timeout, new_group_hint(len(consumed))))
    ctx.save("resume.json", {"stage1_consumed": consumed, "stage1_shutdown_s": shutdown_s})
    log("stage 1: consumed %d/%d distinct messages, shutdown took %.1f s" % (len(consumed), n, shutdown_s))
    return "stage 1 consumed %d of %d" % (len(consumed), n)


def phase_resume_stage2(ctx):
    st = index_state(ctx.produced())
    n = st["n"]
    state = ctx.load("resume.json", "resume-stage1")
    done = set(state["stage1_consumed"])
    rest = set(st["by_key"]) - done
    col = Collector()
    pc = make_push(ctx, ctx.group("resume"), ctx.topic, col, instance="resume2")
    try:
        if rest:
            wait_until(lambda: rest <= set(m["keys"] for m in col.copy()), ctx.timeout)
        # quiet period: anything more that shows up is a re-delivery
        time.sleep(5.0 if rest else 10.0)
    finally:
        pc.shutdown()
    msgs = col.copy()
    for m in msgs:
        prob = check_message(ctx, st, m, "resume-stage2")
        if prob:
            raise Fail(prob)
    got = set(m["keys"] for m in msgs)
    missing = rest - got
    redelivered = got & done
    allowed = max(2, n // 10)
    if missing:
        raise Fail("after restart got %d of the %d not-yet-consumed messages; missing e.g. %s%s" % (
            len(rest) - len(missing), len(rest), sorted(missing)[:5],
            " (committed offsets ignored? the broker must restore them for the group)" if not got else ""))
    if len(redelivered) > allowed:
        raise Fail("after restart %d of the %d messages consumed before shutdown were delivered again "
                   "(allowed %d): committed offsets were not used" % (len(redelivered), len(done), allowed))
    summary = ("stage 1 consumed %d/%d then shut down; after restart got the other %d, re-delivered %d "
               "(allowed %d)" % (len(done), n, len(rest), len(redelivered), allowed))
    state["summary"] = summary
    ctx.save("resume.json", state)
    return summary


def phase_delay(ctx):
    c = rmq()
    topic = ctx.delay_topic
    rid = ctx.rid
    p = make_producer(ctx)

    def send(kind, level):
        m = c.Message(topic)
        key = "%s-%s" % (rid, kind)
        m.set_keys(key)
        m.set_tags("Delay" if level else "Now")
        m.set_body("petrel-py-delay|%s|%s" % (rid, kind))
        if level:
            m.set_delay_time_level(level)
        t = time.time()
        r = p.send_sync(m)
        if r.status != c.SendStatus.OK:
            raise Fail("send of %s message: status %s" % (kind, r.status))
        return key, t, r.msg_id

    col = Collector()
    pc = None
    try:
        # 1. control message: creates the topic and proves the consumer is live
        k0, _, _ = send("control0", 0)
        pc = make_push(ctx, ctx.group("delay"), topic, col)
        if not wait_until(lambda: k0 in [m["keys"] for m in col.copy()], ctx.timeout):
            raise Fail("control message not consumed within %.0f s%s" % (ctx.timeout, new_group_hint(0)))
        # 2. delayed message, then a second control right behind it
        kd, t_send, id_d = send("delayed", DELAY_LEVEL)
        k1, _, _ = send("control1", 0)
        if not wait_until(lambda: kd in [m["keys"] for m in col.copy()], DELAY_SECONDS + ctx.timeout):
            raise Fail("delay level %d message not delivered within %.0f s" % (
                DELAY_LEVEL, DELAY_SECONDS + ctx.timeout))
        wait_until(lambda: k1 in [m["keys"] for m in col.copy()], 5)
    finally:
        if pc is not None:
            pc.shutdown()
        p.shutdown()
    msgs = col.copy()
    first = {}
    for m in msgs:
        first.setdefault(m["keys"], m)
    d = first[kd]
    elapsed = d["recv_time"] - t_send
    if d["id"] != id_d:
        raise Fail("delayed message id %r != id returned by send %r" % (d["id"], id_d))
    if d["body"] != "petrel-py-delay|%s|delayed" % rid or d["topic"] != topic:
        raise Fail("delayed message arrived with body %r topic %r" % (d["body"], d["topic"]))
    if elapsed < DELAY_SECONDS:
        raise Fail("delay level %d message arrived %.2f s after send, expected >= %.1f s" % (
            DELAY_LEVEL, elapsed, DELAY_SECONDS))
    if k1 not in first:
        raise Fail("the undelayed message sent after the delayed one never arrived")
    c1 = first[k1]["recv_time"] - t_send
    if c1 >= DELAY_SECONDS:
        raise Fail("undelayed control message took %.2f s: cannot tell a delay from a slow consumer" % c1)
    return "delay level %d message arrived after %.2f s (control message after %.2f s)" % (
        DELAY_LEVEL, elapsed, c1)


TIMER_AHEAD_MS = 4000    # a timer message's TIMER_DELIVER_MS: this far ahead of its send


def phase_timer(ctx):
    """A message with TIMER_DELIVER_MS (RocketMQ 5's timer wheel, set as a plain property, as an
    older client must) is stored in its topic at its time, within the second after it, and
    received no earlier."""
    c = rmq()
    topic = "PyTT_" + ctx.rid
    p = make_producer(ctx)

    def send(kind, deliver_ms=None):
        m = c.Message(topic)
        key = "%s-%s" % (ctx.rid, kind)
        m.set_keys(key)
        m.set_body("petrel-py-timer|%s|%s" % (ctx.rid, kind))
        if deliver_ms is not None:
            m.set_property("TIMER_DELIVER_MS", str(deliver_ms))
        r = p.send_sync(m)
        if r.status != c.SendStatus.OK:
            raise Fail("send of %s message: status %s" % (kind, r.status))
        return key, r.msg_id

    col = Collector()
    pc = None
    try:
        k0, _ = send("control0")
        pc = make_push(ctx, ctx.group("timer"), topic, col)
        if not wait_until(lambda: k0 in [m["keys"] for m in col.copy()], ctx.timeout):
            raise Fail("control message not consumed within %.0f s%s" % (ctx.timeout, new_group_hint(0)))
        deliver_ms = int(time.time() * 1000) + TIMER_AHEAD_MS
        kt, id_t = send("timed", deliver_ms)
        k1, _ = send("control1")
        if not wait_until(lambda: kt in [m["keys"] for m in col.copy()], TIMER_AHEAD_MS / 1000.0 + ctx.timeout):
            raise Fail("timer message not delivered within %.0f s of its time" % ctx.timeout)
        wait_until(lambda: k1 in [m["keys"] for m in col.copy()], 5)
    finally:
        if pc is not None:
            pc.shutdown()
        p.shutdown()
    first = {}
    for m in col.copy():
        first.setdefault(m["keys"], m)
    t = first[kt]
    if t["id"] != id_t or t["topic"] != topic or t["body"] != "petrel-py-timer|%s|timed" % ctx.rid:
        raise Fail("timer message arrived as id %r topic %r body %r" % (t["id"], t["topic"], t["body"]))
    if t["store_ts"] < deliver_ms or t["recv_time"] * 1000 < deliver_ms:
        raise Fail("timer message due at %d stored at %d, received at %d: early" % (
            deliver_ms, t["store_ts"], t["recv_time"] * 1000))
    if t["store_ts"] >= deliver_ms + 1500:
        raise Fail("timer message due at %d stored at %d: not within the second after its time" % (
            deliver_ms, t["store_ts"]))
    if k1 not in first or first[k1]["recv_time"] * 1000 >= deliver_ms:
        raise Fail("the message sent right after the timer message did not arrive before its time")
    return "timer message due at +%d ms stored %d ms after its time, received %d ms after" % (
        TIMER_AHEAD_MS, t["store_ts"] - deliver_ms, t["recv_time"] * 1000 - deliver_ms)



# ---------------------------------------------------------------- ordered

ORDER_KEYS = 16
ORDER_WAVE1, ORDER_SEQS = 30, 40   # seqs sent before the consumers start, and in all
ORDER_SLEEP = 0.1                  # seconds a consumer spends on each message


def order_topic(ctx):
    return "PyTO_" + ctx.rid


def send_ordered(ctx, seqs):
    """Send seqs of every key with send_orderly, each key's to the queue `key % queues`."""
    c = rmq()
    p = make_producer(ctx)
    try:
        for seq in seqs:
            for key in range(ORDER_KEYS):
                msg = c.Message(order_topic(ctx))
                msg.set_keys("%s-o%d-%d" % (ctx.rid, key, seq))
                msg.set_body("%d:%d" % (key, seq))
                res = p.send_orderly(msg, key)
                if res.status != c.SendStatus.OK:
                    raise Fail("send_orderly of key %d seq %d: %s" % (key, seq, res.status))
    finally:
        p.shutdown()


def phase_orderly_consume(ctx):
    """One orderly consumer process: records (time, key, seq, queue, offset) per message
    until the stop file appears, then shuts down (committing and unlocking)."""
    c = rmq()
    os.makedirs(ctx.state_dir, exist_ok=True)
    out = open(ctx.path("orderly-%s.jsonl" % ctx.args.instance), "a")
    lock = threading.Lock()

    def on_message(m):
        key, seq = (int(x) for x in decode(m.body).split(":"))
        with lock:
            out.write(json.dumps({"t": time.time(), "key": key, "seq": seq,
                                  "q": m.queue_id, "o": m.queue_offset}) + "\n")
            out.flush()
        time.sleep(ORDER_SLEEP)

    pc = c.PushConsumer(ctx.group("orderly"), orderly=True)
    pc.set_namesrv_addr(ctx.namesrv)
    pc.set_instance_name(ctx.args.instance)
    pc.subscribe(order_topic(ctx), on_message)
    pc.start()
    wait_until(lambda: os.path.exists(ctx.path("orderly.stop")), 2 * ctx.timeout, step=0.1)
    pc.shutdown()
    return "consumer %s stopped" % ctx.args.instance


def order_deliveries(ctx, instances):
    got = []
    for instance in instances:
        try:
            with open(ctx.path("orderly-%s.jsonl" % instance)) as f:
                got.extend(dict(json.loads(line), who=instance) for line in f if line.strip())
        except (IOError, OSError):
            pass
    return sorted(got, key=lambda d: d["t"])


def check_key_order(deliveries):
    """Per key: no delivery past one beyond the highest delivered before (no gap), and each
    process goes forward one seq at a time, or back (a take-over at an older commit: a
    suffix again), or jumps ahead only after the other process had the key. Returns the
    number of deliveries that went back. (Two processes consuming one key at once each in
    order would pass here; the caller bounds the deliveries for that.)"""
    top, last, backs = {}, {}, 0
    for i, d in enumerate(deliveries):
        key, seq, who = d["key"], d["seq"], d["who"]
        if seq > top.get(key, -1) + 1:
            raise Fail("key %d: %s got seq %d when seq %d was the highest delivered" % (
                key, who, seq, top.get(key, -1)))
        prev = last.get((who, key))
        if prev is not None:
            handed = any(j > prev[0] for (w, k), (j, _) in last.items() if k == key and w != who)
            if seq > prev[1] + 1 and not handed:
                raise Fail("key %d: %s got seq %d after %d" % (key, who, seq, prev[1]))
            backs += seq <= prev[1]
        top[key] = max(top.get(key, -1), seq)
        last[(who, key)] = (i, seq)
    return backs


def phase_orderly(ctx):
    """send_orderly by key; two orderly consumer processes (the second joins while the
    first consumes); the broker killed with SIGKILL and restarted midway; then more sends.
    Every message arrives, and each key's in order."""
    total = ORDER_KEYS * ORDER_SEQS
    os.makedirs(ctx.state_dir, exist_ok=True)
    for stale in ("orderly-A.jsonl", "orderly-B.jsonl", "orderly.stop"):  # an earlier run's
        if os.path.exists(ctx.path(stale)):
            os.remove(ctx.path(stale))
    send_ordered(ctx, range(ORDER_WAVE1))
    base = [sys.executable, os.path.abspath(__file__), "--namesrv", ctx.namesrv, "--run-id", ctx.rid,
            "--timeout", str(ctx.timeout), "--state-dir", ctx.state_dir, "orderly-consume", "--instance"]
    children = []
    distinct = lambda: len(set((d["key"], d["seq"]) for d in order_deliveries(ctx, ("A", "B"))))
    try:
        children.append(subprocess.Popen(base + ["A"]))
        if not wait_until(lambda: distinct() >= total // 8, ctx.timeout):
            raise Fail("the first orderly consumer got %d of %d within %.0f s" % (distinct(), total // 8, ctx.timeout))
        children.append(subprocess.Popen(base + ["B"]))
        wait_until(lambda: distinct() >= total // 3, ctx.timeout)
        log("restarting the broker (SIGKILL) after %d of %d" % (distinct(), total))
        if subprocess.call(["bash", ctx.args.restart_broker]) != 0:
            raise Fail("the broker did not come back")
        send_ordered(ctx, range(ORDER_WAVE1, ORDER_SEQS))
        if not wait_until(lambda: distinct() >= total, 2 * ctx.timeout):
            raise Fail("%d of %d messages arrived" % (distinct(), total))
        time.sleep(3.0)  # anything more is a redelivery, still in order
    finally:
        open(ctx.path("orderly.stop"), "w").close()
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
    deliveries = order_deliveries(ctx, ("A", "B"))
    backs = check_key_order(deliveries)
    by = dict((w, sum(1 for d in deliveries if d["who"] == w)) for w in ("A", "B"))
    if not by["B"]:
        raise Fail("the second consumer never got a queue")
    # A take-over at an older commit repeats a suffix; two consumers sharing a queue (the
    # locks not held) would repeat nearly everything.
    if len(deliveries) > total + total // 4:
        raise Fail("%d deliveries of %d messages (A %d, B %d): queues consumed by both at once?" % (
            len(deliveries), total, by["A"], by["B"]))
    return "%d messages of %d keys in order; %d deliveries (A %d, B %d), %d went back" % (
        total, ORDER_KEYS, len(deliveries), by["A"], by["B"], backs)


def remoting_call(addr, code, fields, body=b""):
    """One request over RocketMQ's remoting protocol (JSON header): (header, body)."""
    import socket
    import struct
    host, port = addr.rsplit(":", 1)
    header = json.dumps({"code": code, "language": "PYTHON", "version": 479, "opaque": 1, "flag": 0,
                         "extFields": fields}).encode()
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(struct.pack(">II", 4 + len(header) + len(body), len(header)) + header + body)

        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise Fail("%s closed the connection" % addr)
                buf += chunk
            return buf
        total = struct.unpack(">I", read(4))[0]
        head_len = struct.unpack(">I", read(4))[0] & 0xFFFFFF
        answer = json.loads(read(head_len))
        return answer, read(total - 4 - head_len)


def master_of(ctx):
    """The address of the master serving ctx.topic, from the NameServer's route."""
    route, body = remoting_call(ctx.namesrv, 105, {"topic": ctx.topic})
    if route.get("code") != 0:
        raise Fail("no route of %s: %s" % (ctx.topic, route.get("remark")))
    return json.loads(body)["brokerDatas"][0]["brokerAddrs"]["0"]


def set_broker_config(broker, key, value):
    """UPDATE_BROKER_CONFIG (25) of one property."""
    head, _ = remoting_call(broker, 25, {}, ("%s=%s\n" % (key, value)).encode())
    if head.get("code") != 0:
        raise Fail("UPDATE_BROKER_CONFIG %s=%s answered %s: %s" % (key, value, head.get("code"), head.get("remark")))


def phase_client_reset(ctx):
    """An operator's reset made by the group's member (RocketMQ 4's, useServerSideResetOffset=false):
    the broker sends this client RESET_CONSUMER_CLIENT_OFFSET in the C++ client's form, and its
    push consumer reads the topic again from the start."""
    st = index_state(ctx.produced())
    want = set(x["key"] for x in st["messages"])
    broker = master_of(ctx)
    group = ctx.group("client-reset")
    col = Collector()
    pc = make_push(ctx, group, ctx.topic, col)
    try:
        if not wait_until(lambda: want <= set(m["keys"] for m in col.copy()), ctx.timeout):
            raise Fail("the first reading got %d of %d messages" % (len(col.copy()), len(want)))
        first = len(col.copy())
        said = []

        def reset():
            head, _ = remoting_call(broker, 222, {"group": group, "topic": ctx.topic, "timestamp": "0",
                                                  "isForce": "true"})
            said[:] = [head.get("code"), head.get("remark")]
            return head.get("code") == 0
        set_broker_config(broker, "useServerSideResetOffset", "false")
        try:
            # Until the member has committed every queue: the broker refuses a queue without one.
            if not wait_until(reset, ctx.timeout, step=1.0):
                raise Fail("INVOKE_BROKER_TO_RESET_OFFSET answered %s: %s" % tuple(said))
        finally:
            set_broker_config(broker, "useServerSideResetOffset", "true")
        again = lambda: want <= set(m["keys"] for m in col.copy()[first:])
        if not wait_until(again, ctx.timeout):
            raise Fail("after the reset the member read %d of %d messages again" % (
                len(col.copy()) - first, len(want)))
    finally:
        pc.shutdown()
    if col.errors:
        raise Fail("callback errors: %s" % col.errors[:3])
    return "the member moved its queues back to 0 and read all %d messages again" % len(want)


def phase_running_info(ctx):
    """GET_CONSUMER_RUNNING_INFO sent to the broker reaches this client's push consumer, which
    answers through the broker (its ConsumerRunningInfo names the topic's queues)."""
    broker = master_of(ctx)
    group = ctx.group("running")
    pc = make_push(ctx, group, ctx.topic, Collector())
    try:
        ids = []

        def members():
            head, listed = remoting_call(broker, 38, {"consumerGroup": group})
            ids[:] = json.loads(listed).get("consumerIdList", []) if head.get("code") == 0 else []
            return ids
        if not wait_until(members, ctx.timeout):
            raise Fail("the broker never listed a member of %s" % group)
        queues = "\"topic\" : \"%s\"" % ctx.topic

        def answered():
            head, info = remoting_call(broker, 307, {"consumerGroup": group, "clientId": ids[0],
                                                     "jstackEnable": "false"})
            if head.get("code") != 0:
                raise Fail("GET_CONSUMER_RUNNING_INFO answered %s: %s" % (head.get("code"), head.get("remark")))
            return b"mqTable" in info and queues.encode() in info.replace(b'"topic":"', b'"topic" : "')
        if not wait_until(answered, ctx.timeout):
            raise Fail("the member's running info never named a queue of %s" % ctx.topic)
        admin_says = consumer_status(ctx, group, ids[0]) if os.environ.get("PETREL_BIN") else ""
        head, _ = remoting_call(broker, 307, {"consumerGroup": group, "clientId": "nobody@x",
                                              "jstackEnable": "false"})
        if head.get("code") != 1 or "not online" not in (head.get("remark") or ""):
            raise Fail("a member the broker does not know: %s %s" % (head.get("code"), head.get("remark")))
    finally:
        pc.shutdown()
    return "running info of %s answered through the broker%s" % (ids[0], admin_says)


def consumer_status(ctx, group, client_id):
    """`petrel admin consumerStatus` reads this client's report: the table naming the file it
    wrote, and the whole report with -i, its offsets naming the topic's queues."""
    petrel = os.environ["PETREL_BIN"]
    work = os.path.join(ctx.state_dir, "consumer-status")
    os.makedirs(work, exist_ok=True)

    def admin(*args):
        run = subprocess.run([petrel, "admin", "consumerStatus", "-n", ctx.namesrv, "-g", group] + list(args),
                             cwd=work, capture_output=True, text=True, timeout=ctx.timeout)
        if run.returncode != 0:
            raise Fail("petrel admin consumerStatus %s: %s" % (" ".join(args), run.stderr.strip()))
        return run.stdout
    table = admin()
    row = next((line.split() for line in table.splitlines() if line.startswith("1 ")), None)
    if not row or row[1] != client_id or not os.path.isfile(os.path.join(work, row[3])):
        raise Fail("consumerStatus did not list %s with its report file:\n%s" % (client_id, table))
    whole = admin("-i", client_id)
    offsets = whole.split("#Consumer Offset#")[-1].split("#Consumer MQ Detail#")[0]
    if not any(line.split()[:1] == [ctx.topic] for line in offsets.splitlines()):
        raise Fail("consumerStatus -i named no queue of %s:\n%s" % (ctx.topic, whole))
    return "; consumerStatus read it"


BIG_BODIES = 12


def big_body(i):
    """Body i of the large-body exchange with petrel-client (client/examples/bodies.rs): its
    own line repeated to 4000 + 1500 i bytes, the first under the 4096 bytes from which the
    C++ producer deflates its bodies (compressMsgBodyOverHowmuch), the rest over it."""
    unit = "petrel compressed body %d; " % i
    size = 4000 + 1500 * i
    return (unit * (size // len(unit) + 1))[:size]


def phase_big_produce(ctx):
    """Send the large bodies to PyTB_<rid> for petrel-client's `bodies receive`."""
    p = make_producer(ctx)
    try:
        for i in range(BIG_BODIES):
            msg = rmq().Message(ctx.big_topic)
            msg.set_keys("big-%d" % i)
            msg.set_body(big_body(i))
            r = p.send_sync(msg)
            if r.status != rmq().SendStatus.OK:
                raise Fail("send of body %d answered status %s" % (i, r.status))
    finally:
        p.shutdown()
    return "%d bodies of 4000 to %d bytes sent to %s" % (BIG_BODIES, len(big_body(BIG_BODIES - 1)), ctx.big_topic)


def phase_big_consume(ctx):
    """Receive the large bodies petrel-client's `bodies send` sent to PyTB_<rid>, each whole."""
    col = Collector()
    pc = make_push(ctx, ctx.group("big"), ctx.big_topic, col)
    try:
        def complete():
            return len(set(m["keys"] for m in col.copy())) >= BIG_BODIES
        wait_until(complete, ctx.timeout)
    finally:
        pc.shutdown()
    if col.errors:
        raise Fail("the listener failed: %s" % col.errors[0])
    got = {}
    for m in col.copy():
        i = int(m["keys"].split("-")[1]) if (m["keys"] or "").startswith("big-") else -1
        if not 0 <= i < BIG_BODIES:
            raise Fail("an unexpected message, keys %r" % m["keys"])
        if m["body"] != big_body(i):
            raise Fail("%s came back as %d bytes beginning %r, not the %d sent"
                       % (m["keys"], len(m["body"] or ""), (m["body"] or "")[:48], len(big_body(i))))
        got[i] = len(m["body"])
    if len(got) < BIG_BODIES:
        raise Fail("%d of %d bodies arrived%s" % (len(got), BIG_BODIES, new_group_hint(len(got))))
    return "all %d bodies whole, %d bytes in all" % (BIG_BODIES, sum(got.values()))


def phase_all(ctx):
    n = ctx.args.n
    base = [sys.executable, os.path.abspath(__file__), "--namesrv", ctx.namesrv, "--run-id", ctx.rid,
            "--timeout", str(ctx.timeout), "--state-dir", ctx.state_dir]
    steps = [["produce", str(n)], ["push-consume"], ["tag-filter"], ["pull-consume"], ["resume"], ["delay"],
             ["timer"], ["running-info"], ["client-reset"]]
    passed, failed = [], []
    for s in steps:
        rc = subprocess.call(base + s)
        (passed if rc == 0 else failed).append(s[0])
        if s[0] == "produce" and rc != 0:
            failed.extend(x[0] for x in steps[1:])
            break
    print("%d passed, %d failed" % (len(passed), len(failed)))
    if failed:
        raise Fail("failed phases: %s" % ", ".join(failed))
    return "all phases passed: %s" % ", ".join(passed)


PHASES = {
    "produce": phase_produce,
    "push-consume": phase_push_consume,
    "tag-filter": phase_tag_filter,
    "pull-consume": phase_pull_consume,
    "resume": phase_resume,
    "resume-stage1": phase_resume_stage1,
    "resume-stage2": phase_resume_stage2,
    "delay": phase_delay,
    "timer": phase_timer,
    "ha-produce": phase_ha_produce,
    "orderly": phase_orderly,
    "orderly-consume": phase_orderly_consume,
    "running-info": phase_running_info,
    "client-reset": phase_client_reset,
    "big-produce": phase_big_produce,
    "big-consume": phase_big_consume,
    "all": phase_all,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--namesrv", default=os.environ.get("PETREL_NAMESRV", "127.0.0.1:9876"),
                    help="name server address host:port (default $PETREL_NAMESRV or 127.0.0.1:9876)")
    ap.add_argument("--run-id", required=True, help="unique id; topic and group names derive from it")
    ap.add_argument("--timeout", type=float, default=120.0, help="max wait per step in seconds (default 120)")
    ap.add_argument("--state-dir", default=None)
    sub = ap.add_subparsers(dest="phase")
    for name in PHASES:
        sp = sub.add_parser(name)
        if name in ("produce", "all"):
            sp.add_argument("n", type=int, help="number of messages")
        if name == "ha-produce":
            sp.add_argument("n", type=int, help="acknowledged sends before the kill")
            sp.add_argument("--master-pid", type=int, required=True, help="the SYNC_MASTER to kill")
            sp.add_argument("--slave", required=True, help="the slave's client address host:port")
        if name == "orderly":
            sp.add_argument("--restart-broker", required=True, help="a bash script that restarts the broker")
        if name == "orderly-consume":
            sp.add_argument("--instance", required=True, help="A or B")
    args = ap.parse_args()
    if not args.phase:
        ap.print_help()
        finish(EXIT_USAGE)
    ctx = Ctx(args)
    if args.phase == "orderly":
        # it waits for its consumer processes (which have their own watchdogs) up to 3 timeouts
        start_watchdog(4 * ctx.timeout + 120, args.phase)
    elif args.phase not in ("all", "resume"):
        # resume/all supervise subprocesses that have their own watchdogs
        start_watchdog(2 * ctx.timeout + 60, args.phase)
    t0 = time.time()
    try:
        summary = PHASES[args.phase](ctx)
    except Fail as e:
        print("FAIL %s: %s" % (args.phase, e))
        finish(EXIT_FAIL)
    except Exception as e:
        print("FAIL %s: unexpected %s: %s" % (args.phase, type(e).__name__, e))
        finish(EXIT_FAIL)
    print("PASS %s: %s (%.1f s)" % (args.phase, summary, time.time() - t0))
    finish(0)


if __name__ == "__main__":
    main()
