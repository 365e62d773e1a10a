"""Drives `petrel console` in headless Chromium over WebDriver (plain HTTP to chromedriver, no
client library) and checks what a person sees; saves a screenshot of each page.

usage: browser.py PETREL ROUNDTRIP NAMESRV CONSOLE_URL DRIVER_URL SHOTS_DIR PROFILE_DIR
"""
import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

petrel, roundtrip, namesrv, console, driver, shots, profile = sys.argv[1:8]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def wd(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(driver + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)["value"]


args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1400,900",
        "--user-data-dir=" + profile]
caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
    "binary": "/usr/bin/chromium", "args": args}}}}
session = "/session/" + wd("POST", "/session", caps)["sessionId"]


def find(css):
    return wd("POST", session + "/element", {"using": "css selector", "value": css})[ELEMENT]


def click(css):
    wd("POST", f"{session}/element/{find(css)}/click", {})


def type_into(css, text):
    element = find(css)
    wd("POST", f"{session}/element/{element}/clear", {})
    wd("POST", f"{session}/element/{element}/value", {"text": text})


def set_value(css, value):
    # Typing into a date input depends on the browser's locale; its value does not.
    wd("POST", session + "/execute/sync",
       {"script": "document.querySelector(arguments[0]).value = arguments[1];", "args": [css, value]})


def scroll_to(css):
    wd("POST", session + "/execute/sync",
       {"script": "document.querySelector(arguments[0]).scrollIntoView(false)", "args": [css]})


def text(css):
    return wd("GET", f"{session}/element/{find(css)}/text")


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except urllib.error.HTTPError as e:  # the element is not there yet
            last = e
        time.sleep(0.3)
    shot("failed")
    raise SystemExit(f"FAIL waiting for {what}; last saw: {last}")


def shot(name):
    png = base64.b64decode(wd("GET", session + "/screenshot"))
    path = os.path.join(shots, name + ".png")
    with open(path, "wb") as out:
        out.write(png)
    print(f"screenshot {path} ({len(png)} bytes)")


def admin(*words):
    return subprocess.run([petrel, "admin", *words, "-n", namesrv], check=True,
                          capture_output=True, text=True).stdout


def lag_of(group):
    for line in text("#groups tbody").splitlines():
        cols = line.split()
        if cols and cols[0] == group:
            return int(cols[-1])
    return None


try:
    # The cluster page lists the broker with its figures.
    wd("POST", session + "/url", {"url": console})
    wait_for("the broker on the cluster page", lambda: "broker-a" in text("#brokers tbody"))
    # A broker's configuration, as petrel admin getBrokerConfig reads it.
    click("#brokers tbody tr")
    config = wait_for("the broker's configuration", lambda: {
        line.split()[0]: line.split()[-1] for line in text("#broker-config tbody").splitlines()
        if len(line.split()) >= 2} or None)
    assert config.get("brokerName") == "broker-a", config
    listed = admin("getBrokerConfig", "-c", "DefaultCluster")
    assert re.search(r"^flushDiskType\s+=\s+" + re.escape(config["flushDiskType"]) + "$", listed, re.M), listed
    # A property set from the page: the broker takes it, and petrel admin reads it back.
    def property_value(table, name):
        for line in text(table + " tbody").splitlines():
            if line.split()[:1] == [name]:
                return line.split()[-1]
        return None

    def set_property(form, name, value):
        type_into(form + "-key", name)
        type_into(form + "-value", value)
        click(form + "-go")

    def config_value(name):
        return property_value("#broker-config", name)

    def set_config(name, value):
        set_property("#config", name, value)

    set_config("rejectTransactionMessage", "true")
    wait_for("the update's answer", lambda: "in effect now: rejectTransactionMessage" in text("#config-result"))
    wait_for("the new value in the table", lambda: config_value("rejectTransactionMessage") == "true")
    listed = admin("getBrokerConfig", "-c", "DefaultCluster")
    assert re.search(r"^rejectTransactionMessage\s+=\s+true$", listed, re.M), listed
    scroll_to("#config-result")
    shot("config")
    set_config("rejectTransactionMesage", "false")
    wait_for("a misspelt name refused", lambda: "did you mean rejectTransactionMessage" in text("#status"))
    set_config("rejectTransactionMessage", "false")
    wait_for("the value set back", lambda: config_value("rejectTransactionMessage") == "false")
    shot("cluster")

    # The broker's write permission, taken away on the NameServer and given back: the route
    # petrel admin reads says so.
    # The broker's own topic, as RocketMQ's: inherit, read and write (7).
    def perm_in_route():
        route = json.loads(admin("topicRoute", "-t", "broker-a"))
        return [q["perm"] for q in route["queueDatas"] if q["brokerName"] == "broker-a"]

    click("#perm-wipe")
    wait_for("the wipe's answer", lambda: re.search(
        r"write permission taken from [1-9][0-9]* topics of broker-a on NameServer", text("#perm-result")))
    assert perm_in_route() == [7 & ~2], perm_in_route()
    scroll_to("#perm-result")
    shot("write-perm")
    click("#perm-add")
    wait_for("the add's answer", lambda: "write permission given back to" in text("#perm-result"))
    assert perm_in_route() == [6], perm_in_route()  # read and write, as RocketMQ's add

    # The NameServer's configuration: read, set from the page, read back by petrel admin.
    def namesrv_value(name):
        return property_value("#namesrv-config", name)

    def set_namesrv(name, value):
        set_property("#ns-config", name, value)

    click("#ns-details summary")
    wait_for("the NameServer's configuration", lambda: namesrv_value("orderMessageEnable") == "false")
    set_namesrv("orderMessageEnable", "true")
    wait_for("the NameServer's answer", lambda: "in effect now: orderMessageEnable" in text("#ns-config-result"))
    wait_for("the new value in the table", lambda: namesrv_value("orderMessageEnable") == "true")
    assert re.search(r"^orderMessageEnable\s+=\s+true$", admin("getNamesrvConfig"), re.M)
    scroll_to("#ns-config-result")
    shot("namesrv")
    set_namesrv("orderMessageEnable", "false")
    wait_for("the value set back", lambda: namesrv_value("orderMessageEnable") == "false")
    click("#ns-details summary")

    # The API answers the page only: a form posted from another site lacks the header.
    forged = urllib.request.Request(console.rstrip("/") + "/api/reset", method="POST",
                                    data=b"group=G&topic=T&time=now")
    try:
        urllib.request.urlopen(forged, timeout=10)
        raise SystemExit("FAIL a reset without the console's header was taken")
    except urllib.error.HTTPError as e:
        assert e.code == 403, e.code

    # A topic created in the page is the NameServer's: petrel admin topicList lists it.
    click("#tab-topics")
    type_into("#topic-name", "ConsoleTopic")
    type_into("#topic-queues", "4")
    click("#topic-create")
    wait_for("the new topic in the list", lambda: "ConsoleTopic" in text("#topics-table tbody"))
    listed = admin("topicList").split()
    assert "ConsoleTopic" in listed, f"petrel admin topicList does not list it: {listed}"
    click('tr[data-topic="ConsoleTopic"]')
    wait_for("the topic's queues", lambda: text("#topic-status").count("broker-a") == 4)
    # Its route: broker-a's master, four read and four write queues, readable and writable.
    route = wait_for("the topic's route", lambda: next(
        (line.split() for line in text("#topic-route tbody").splitlines() if line.startswith("broker-a")), None))
    assert route[1] == "0:" and re.fullmatch(r"[\d.]+:\d+", route[2]), route
    assert route[3:] == ["4", "4", "RW"], route
    shot("topics")

    # A group consumes the topic, then stops; messages sent after show up as lag on the page.
    run = subprocess.run([roundtrip, "ConsoleTopic", "40"], env={**os.environ, "NAMESRV_ADDR": namesrv},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"roundtrip failed: {run.stdout}{run.stderr}"
    click("#tab-consumers")
    group = wait_for("the push consumer's group", lambda: next(
        (line.split()[0] for line in text("#groups tbody").splitlines()
         if line.startswith("roundtrip-push-")), None))
    before = wait_for("its lag", lambda: (lambda lag: None if lag is None else str(lag))(lag_of(group)))
    for i in range(5):
        admin("sendMessage", "-t", "ConsoleTopic", "-p", f"after the consumer stopped {i}",
              "-k", "console-key")
    wait_for("the lag to grow by the 5 sent", lambda: lag_of(group) == int(before) + 5)
    click(f'tr[data-group="{group}"]')
    wait_for("the group's queues", lambda: "ConsoleTopic" in text("#group-detail"))
    shot("consumers")

    # Reset from the page: to now the 5 are skipped, to time 0 all 45 are to read again;
    # petrel admin consumerProgress agrees.
    def topic_lag():
        rows = [line.split() for line in admin("consumerProgress", "-g", group).splitlines()]
        return sum(int(cols[5]) for cols in rows if cols and cols[0] == "ConsoleTopic")

    type_into("#reset-topic", "ConsoleTopic")
    type_into("#reset-time", "now")
    click("#reset-go")
    wait_for("the lag back to where it was", lambda: lag_of(group) == int(before))
    assert topic_lag() == 0, admin("consumerProgress", "-g", group)
    type_into("#reset-time", "0")
    click("#reset-go")
    wait_for("the reset's offsets on the page", lambda: "offset 0" in text("#reset-result"))
    wait_for("the lag of every message", lambda: lag_of(group) == int(before) + 45)
    assert topic_lag() == 45, admin("consumerProgress", "-g", group)
    shot("reset")

    # A member of another group, running while the messages are queried: it reads all 45.
    listened = os.path.join(os.path.dirname(profile), "listen.out")
    listener = subprocess.Popen([os.path.join(os.path.dirname(roundtrip), "listen"), "ConsoleTopic",
                                 "ConsoleListeners"], env={**os.environ, "NAMESRV_ADDR": namesrv},
                                stdout=open(listened, "w"), stderr=subprocess.DEVNULL)

    def heard(what):
        with open(listened) as out:
            return sum(what in line for line in out)
    wait_for("the listener's 45 messages", lambda: heard("ConsoleTopic ") == 45)

    # A message sent is found on the query page, with its keys and where each group is.
    click("#tab-messages")
    type_into("#msg-topic", "ConsoleTopic")
    type_into("#msg-key", "console-key")
    click("#msg-query")
    rows = wait_for("the 5 messages by key", lambda: (lambda t: t if len(t.splitlines()) == 5 else None)(
        text("#messages-table tbody")))
    first_id = rows.splitlines()[0].split()[0]
    assert re.fullmatch(r"[0-9A-F]{32}", first_id), first_id
    click(f'tr[data-id="{first_id}"]')
    detail = wait_for("the message's detail", lambda: (lambda t: t if "console-key" in t else None)(
        text("#message-detail")))
    assert '"NOT_ONLINE"' in detail or '"NOT_CONSUME_YET"' in detail, detail
    # Handed from the page to the listening group's member, which consumes it a second time.
    type_into("#again-group", "ConsoleListeners")
    click("#again-go")
    wait_for("the member's answer", lambda: "CR_SUCCESS in" in text("#again-result"))
    wait_for("the message consumed again", lambda: heard("after the consumer stopped") == 6)
    scroll_to("#again-result")
    shot("consume-again")

    # Sent from the page, found by its key, sent again under its id: the member hears it twice.
    type_into("#send-topic", "ConsoleTopic")
    type_into("#send-tags", "TagC")
    type_into("#send-keys", "page-key")
    type_into("#send-body", "sent from the page")
    click("#send-go")
    sent = wait_for("the send's result", lambda: re.fullmatch(
        r"SEND_OK: broker-a queue \d offset \d+, id ([0-9A-F]{32})", text("#send-result")))
    wait_for("the member hearing it", lambda: heard("sent from the page") == 1)
    type_into("#msg-key", "page-key")
    click("#msg-query")
    wait_for("the message by its key", lambda: len(text("#messages-table tbody").splitlines()) == 1)
    click("#messages-table tbody tr")
    wait_for("its detail with its tag", lambda: "TagC" in text("#message-detail"))
    click("#resend-go")
    wait_for("the resend's result under the same id", lambda: text("#again-result").startswith(
        "sent again, SEND_OK: broker-a queue ") and text("#again-result").endswith(", id " + sent.group(1)))
    wait_for("the member hearing it again", lambda: heard("sent from the page") == 2)
    scroll_to("#again-result")
    shot("send")
    listener.kill()

    # By time: the last ten minutes hold all 47 of the topic's messages, a minute long past none.
    def local(seconds_from_now):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + seconds_from_now))

    type_into("#time-topic", "ConsoleTopic")
    set_value("#time-begin", local(-600))
    set_value("#time-end", local(60))
    click("#time-query")
    wait_for("the 47 messages by time", lambda: len(text("#messages-table tbody").splitlines()) == 47)
    set_value("#time-begin", local(-7200))
    set_value("#time-end", local(-7140))
    click("#time-query")
    wait_for("none two hours ago", lambda: text("#messages-table tbody") == "")
    shot("messages")
    print(f"PASS console: broker listed, topic created and listed by petrel admin, lag of {group} "
          f"grew {before} -> {int(before) + 5}, reset to now and to time 0 from the page, message "
          f"found by key with its track and consumed again by a member from the page, a broker "
          f"property set from the page, a broker's writes stopped and allowed again, a NameServer "
          f"property set from the page, a message sent from the page and sent again under its id, "
          f"the topic's 47 messages found by time")
finally:
    if "listener" in globals():
        listener.kill()
    wd("DELETE", session)
