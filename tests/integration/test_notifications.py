"""Notifications (issue 15, item 2) with a real `modelledger run`, a real Prometheus and a real HTTP
receiver on loopback:

- a breach rolls back, and the receiver gets exactly one message for it, carrying the evidence (rule,
  resolved query, value, threshold), the versions, the actor and the commands; the deployment's
  `modelledger.io/notify` annotation routes it, and a name the admins did not define gets a Warning Event;
- a receiver that is down (connection refused, then 503) delays nothing (the rollback happens on time)
  and loses nothing within its retry budget (the message arrives once it is back);
- the chart renders the receivers file the operator loads, with each URL mounted from its Secret.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Gauge

from modelledger.adapters.notifier import load_receivers
from modelledger.testing.access import ClusterAccess
from modelledger.testing.processes import free_port
from tests.helpers import eventually
from tests.integration.test_chart_values import (
    dry_run,
    one,
    operator_container,
    parse_run_args,
    pod_spec,
    render,
    restricted,
)
from tests.operator_process import OperatorProcess
from tests.scenario import (
    V132,
    V140,
    apply,
    events,
    rolled_back,
    status,
    versions,
    wait_phase,
    wait_served,
    with_rules,
)


class Receiver:
    """A webhook receiver on loopback: records what is POSTed; `answer` sets the status it replies with;
    `down()` closes the socket (connections refused) and `up()` listens again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.answer = 200
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.lock = threading.Lock()
        self.server: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def up(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.attempts += 1
                    status = receiver.answer
                    if status == 200:
                        receiver.received.append(
                            {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                        )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def messages(self, path: str, trigger: str | None = None) -> list[dict[str, Any]]:
        """The bodies POSTed to `path`; with `trigger`, that trigger's (JSON field, or Slack headline)."""
        with self.lock:
            bodies = [r["body"] for r in self.received if r["path"] == path]
        if trigger is None:
            return bodies
        return [
            b
            for b in bodies
            if b.get("trigger") == trigger or str(b.get("text", "")).startswith(f"{trigger}:")
        ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.down()


def configure(operator: OperatorProcess, receiver: Receiver, *entries: dict[str, Any]) -> None:
    """The admins' receivers file, each URL in a file of its own (as the chart mounts Secret keys)."""
    listed = []
    for entry in entries:
        url_file = operator.workdir / f"url-{entry['name']}"
        url_file.write_text(receiver.url(entry["name"]) + "\n")
        listed.append({**entry, "urlFile": str(url_file)})
    path = operator.workdir / "receivers.yaml"
    path.write_text(yaml.safe_dump({"receivers": listed}))
    operator.extra += ["--notification-receivers", str(path)]


def annotated(version: str, notify: str | None, **rule: Any) -> dict[str, Any]:
    document = with_rules(version, **rule)
    if notify is not None:
        document["metadata"]["annotations"] = {"modelledger.io/notify": notify}
    return document


def stable_then_upgraded(plane: ClusterAccess, namespace: str, notify: str | None) -> None:
    versions(plane, namespace)
    apply(plane, namespace, annotated(V132, notify))
    eventually(lambda: status(plane, namespace).stable_revision == 1, 30, "1.3.2 stable with rules passing")
    apply(plane, namespace, annotated(V140, notify, bake="1h"))
    wait_served(plane, namespace, V140, 2)


def counter(operator: OperatorProcess, receiver: str, result: str) -> float:
    prefix = f'modelledger_notifications_total{{receiver="{receiver}",result="{result}"}} '
    for line in operator.metrics().splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    raise AssertionError(f"no series {prefix}")


def test_one_message_per_rollback_carrying_the_evidence(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge, receiver: Receiver
) -> None:
    receiver.up()
    configure(
        operator,
        receiver,
        {"name": "team", "type": "webhook", "routing": "named"},
        {"name": "chat", "type": "slack", "routing": "named"},
        {"name": "everyone", "type": "webhook"},  # default routing: replaced by the annotation's names
    )
    operator.start()
    stable_then_upgraded(plane, namespace, notify="team, chat, nosuch")
    eventually(
        lambda: any(
            e["reason"] == "NotificationReceiversIgnored" and "nosuch" in e["message"]
            for e in events(plane, namespace)
        ),
        15,
        "a Warning Event naming the unknown receiver",
    )
    # Deploys and the bake's MarkedStable notify nothing by default. (A VersionNotFound, should the
    # operator see the deployment before its versions, would notify Failed: not counted here.)
    early = [b for p in ("/hooks/team", "/hooks/everyone") for b in receiver.messages(p)]
    assert all(b["trigger"] == "Failed" for b in early), early
    assert not [b for t in ("RolledBack", "MarkedStable") for b in receiver.messages("/hooks/chat", t)]

    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.9)
    eventually(lambda: rolled_back(plane, namespace), 30, "automatic rollback", interval=0.1)
    [message] = eventually(lambda: receiver.messages("/hooks/team", "RolledBack") or None, 10, "the webhook")
    [slack] = eventually(
        lambda: receiver.messages("/hooks/chat", "RolledBack") or None, 10, "the Slack message"
    )
    time.sleep(4)  # several more passes, rule evaluations and status writes
    assert len(receiver.messages("/hooks/team", "RolledBack")) == 1, "exactly one message per rollback"
    assert len(receiver.messages("/hooks/chat", "RolledBack")) == 1
    assert not receiver.messages("/hooks/everyone"), "the annotation named other receivers"

    top = wait_phase(plane, namespace, "RolledBack").history[0]
    assert top.evidence is not None
    assert message["trigger"] == "RolledBack"
    assert message["cause"] == "AutomaticRollback"
    assert message["deployment"]["namespace"] == namespace
    assert message["deployment"]["name"] == "fraud-detector"
    assert message["revision"] == top.revision == 3
    assert message["versions"]["from"] == V140
    assert message["versions"]["to"] == V132
    assert message["rule"] == "error-rate"
    assert message["actor"] == "modelledger/rule:error-rate"
    evidence = message["evidence"]
    assert evidence["query"] == top.evidence.query
    assert f'namespace="{namespace}"' in evidence["query"]
    assert evidence["value"] == pytest.approx(0.9)
    assert (evidence["comparator"], evidence["threshold"]) == (">", 0.5)
    assert f"modelledger history fraud-detector -n {namespace}" in message["commands"]
    assert any(c.startswith("kubectl describe modeldeployment fraud-detector") for c in message["commands"])

    text = slack["text"]
    assert f"{namespace}/fraud-detector" in text
    assert f"{V140} -&gt; {V132}" in text
    assert "0.9 &gt; 0.5" in text
    assert "modelledger/rule:error-rate" in text
    assert slack["blocks"][0]["type"] == "header"

    assert counter(operator, "team", "sent") == len(receiver.messages("/hooks/team"))
    assert counter(operator, "chat", "sent") == len(receiver.messages("/hooks/chat"))
    assert counter(operator, "everyone", "sent") == 0
    assert counter(operator, "team", "failed") == 0


def test_a_receiver_that_is_down_delays_nothing_and_loses_nothing(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge, receiver: Receiver
) -> None:
    configure(operator, receiver, {"name": "oncall", "type": "webhook", "retryBudget": 120, "maxBackoff": 2})
    operator.start()
    stable_then_upgraded(plane, namespace, notify=None)

    # Down: nothing listens on its port.
    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.9)
    started = time.monotonic()
    eventually(lambda: rolled_back(plane, namespace), 30, "automatic rollback", interval=0.1)
    elapsed = time.monotonic() - started
    assert elapsed <= 6.0, f"rolled back {elapsed:.1f} s after the breach, with the receiver down"
    eventually(lambda: counter(operator, "oncall", "retried") >= 2, 15, "refused attempts retried")

    # Back, but answering 503 for a while.
    receiver.answer = 503
    receiver.up()
    eventually(lambda: receiver.attempts >= 1, 15, "an attempt answered 503")
    assert not receiver.received

    receiver.answer = 200
    [message] = eventually(
        lambda: receiver.messages("/hooks/oncall", "RolledBack") or None, 15, "the message, once back"
    )
    assert message["trigger"] == "RolledBack"
    assert (message["versions"]["from"], message["versions"]["to"]) == (V140, V132)
    assert message["evidence"]["value"] == pytest.approx(0.9)
    time.sleep(3)
    assert len(receiver.messages("/hooks/oncall", "RolledBack")) == 1, "delivered once, not once per attempt"
    assert counter(operator, "oncall", "sent") == len(receiver.messages("/hooks/oncall"))
    assert counter(operator, "oncall", "failed") == 0
    assert counter(operator, "oncall", "dropped") == 0


NOTIFICATION_VALUES = {
    "notifications": {
        "receivers": [
            {"name": "oncall", "type": "slack", "url": {"secretName": "modelledger-notify", "key": "oncall"}},
            {
                "name": "audit",
                "type": "webhook",
                "url": {"secretName": "audit-hook", "key": "url"},
                "triggers": ["RolledBack", "MarkedStable"],
                "routing": "always",
                "namespaces": ["ml-*"],
                "retryBudgetSeconds": 600,
            },
        ]
    }
}


def test_the_chart_renders_the_receivers_the_operator_loads(
    plane: ClusterAccess, namespace: str, installed_crds: object, tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(NOTIFICATION_VALUES))
    docs = render("-f", str(values), namespace=namespace)
    config = one(docs, "ConfigMap", "-notifications")
    receivers_file = tmp_path / "receivers.yaml"
    receivers_file.write_text(config["data"]["receivers.yaml"])
    loaded = {r.name: r for r in load_receivers(receivers_file)}
    assert set(loaded) == {"oncall", "audit"}
    assert loaded["audit"].retry_budget == 600
    assert "http" not in config["data"]["receivers.yaml"]  # no URL in a ConfigMap

    container = operator_container(docs)
    args = parse_run_args(container)
    assert args.notification_receivers == Path("/etc/modelledger/notifications/receivers.yaml")
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for name, (secret, key) in {
        "oncall": ("modelledger-notify", "oncall"),
        "audit": ("audit-hook", "url"),
    }.items():
        directory, _, file = loaded[name].url_file.rpartition("/")
        volume = volumes[mounts[directory]]
        assert volume["secret"]["secretName"] == secret
        assert volume["secret"]["items"] == [{"key": key, "path": file}]
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/notification-receivers" in annotations

    restricted(plane, namespace)
    dry_run(plane, namespace, docs)
    without = render(namespace=namespace)
    assert not [d for d in without if d["metadata"]["name"].endswith("-notifications")]
    assert parse_run_args(operator_container(without)).notification_receivers is None
