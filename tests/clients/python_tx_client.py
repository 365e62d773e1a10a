#!/usr/bin/env python3
"""Third-party transaction check for Petrel: Apache's PyPI `rocketmq-client-python` 2.0.0
(TransactionMQProducer) over the librocketmq.so of rocketmq-client-cpp 2.1 that
`rocketmq-python-cvs` 2.1.0.3 bundles, installed by tests/clients/install.sh python_tx.

    PY="${PETREL_CLIENTS_DIR:-$HOME/.cache/petrel/clients}/python_tx/venv/bin/python"
    $PY tests/clients/python_tx_client.py --namesrv 127.0.0.1:9876 --run-id r1 --count 40

Sends `count` transaction messages. The local transaction commits message i when i % 4 == 2,
rolls it back when i % 4 == 3, and says UNKNOWN otherwise; the broker's check (after
transactionTimeOut, at its next transactionCheckInterval pass) is answered COMMIT for even i,
ROLLBACK for odd i. A push consumer must then receive exactly the even messages, each once,
and the checker must have been asked about every UNKNOWN one.

Prints `PASS transactions: ...` and exits 0, or `FAIL transactions: <reason>` and exits 1;
exit 3: the watchdog fired (the native client hung).
"""
import argparse
import os
import sys
import threading
import time

from rocketmq.client import ConsumeStatus, Message, PushConsumer, TransactionMQProducer, TransactionStatus


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def finish(rc):
    # Skip native destructors at teardown: the C++ client's threads may still call back.
    sys.stdout.flush()
    os._exit(rc)


def index_of(body):
    return int(body.decode().split("-", 1)[1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--namesrv", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()

    def watchdog():
        time.sleep(args.timeout + 30)
        sys.stdout.write("FAIL transactions: watchdog: still running (native client call hung?)\n")
        finish(3)

    threading.Thread(target=watchdog, daemon=True).start()
    topic = "PyTx_%s" % args.run_id
    lock = threading.Lock()
    checked, received = {}, []

    def check(message):
        i = index_of(message.body)
        with lock:
            checked[i] = checked.get(i, 0) + 1
        return TransactionStatus.COMMIT if i % 2 == 0 else TransactionStatus.ROLLBACK

    def execute(message, _args):
        i = index_of(message.body)
        return {2: TransactionStatus.COMMIT, 3: TransactionStatus.ROLLBACK}.get(
            i % 4, TransactionStatus.UNKNOWN)

    producer = TransactionMQProducer("PyTxPG_%s" % args.run_id, check)
    producer.set_name_server_address(args.namesrv)
    producer.start()
    for i in range(args.count):
        message = Message(topic)
        message.set_keys("tx-%d" % i)
        message.set_body("tx-%d" % i)
        result = producer.send_message_in_transaction(message, execute)
        if result.status != 0:
            print("FAIL transactions: half message %d not stored: %s" % (i, result))
            finish(1)
    log("sent %d transaction messages to %s" % (args.count, topic))

    def on_message(message):
        with lock:
            received.append(index_of(message.body))
        return ConsumeStatus.CONSUME_SUCCESS

    consumer = PushConsumer("PyTxCG_%s" % args.run_id)
    consumer.set_name_server_address(args.namesrv)
    consumer.subscribe(topic, on_message)
    consumer.start()

    expected = sorted(i for i in range(args.count) if i % 2 == 0)
    unknown = sorted(i for i in range(args.count) if i % 4 in (0, 1))
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        with lock:
            done = sorted(set(received)) == expected and set(unknown) <= set(checked)
        if done:
            break
        time.sleep(0.5)
    time.sleep(3)  # anything delivered twice or late shows up now
    with lock:
        got, asked = sorted(received), dict(checked)
    if got != expected:
        extra = sorted(set(got) - set(expected))
        missing = sorted(set(expected) - set(got))
        twice = sorted(i for i in set(got) if got.count(i) > 1)
        print("FAIL transactions: delivered %d, missing %s, rolled back but delivered %s, twice %s"
              % (len(got), missing, extra, twice))
        finish(1)
    if not set(unknown) <= set(asked):
        print("FAIL transactions: never checked: %s" % sorted(set(unknown) - set(asked)))
        finish(1)
    print("PASS transactions: %d committed delivered once, %d rolled back never; %d unknown "
          "resolved by %d checks" % (len(expected), args.count - len(expected), len(unknown),
                                      sum(asked.values())))
    finish(0)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any failure is the test's report
        print("FAIL transactions: %s: %s" % (type(e).__name__, e))
        finish(1)
