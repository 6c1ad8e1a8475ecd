"""Trust, end to end on the real plane: only the operator decides, every actor is verified, and the trail
is signed. People are real client certificates (alice and bob: release managers, bob an approver; carol:
an editor); the operator runs as the chart's ServiceAccount under the chart's RBAC and the status policy.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.api import ModelDeploymentStatus
from modelledger.core import history
from modelledger.testing.access import ClusterAccess
from modelledger.testing.prometheus import PrometheusServer
from tests.conftest import admission_policies
from tests.helpers import eventually
from tests.identities import Person, people, service_account_kubeconfig
from tests.integration.test_chart import CHART, PEERING, RELEASE, SandboxedOperator, helm, set_args
from tests.scenario import V132, V140, example, get, model_deployment, served_revision

POLICY_MESSAGE = "only the modelledger operator"
FOUR_EYES = {"requiredFor": ["MarkStable"], "approverGroups": ["ml-approvers"], "timeout": "10m"}


@pytest.fixture
def trust_release(
    plane: ClusterAccess,
    namespace: str,
    installed_crds: object,
    identity_guards: None,
    prometheus: PrometheusServer,
) -> Iterator[str]:
    """The chart (replicaCount 0) with user roles bound to groups, and its status policy for `namespace`.

    The identity guards are already installed for the whole session; the status-writers policy is bound
    to this test's namespace only, so other tests' operators (run as admin) keep writing status.
    """
    operator_ns = f"modelledger-{uuid.uuid4().hex[:6]}"
    label = f"trust-{uuid.uuid4().hex[:6]}"
    plane.kubectl("label", "namespace", namespace, f"modelledger.io/trust-test={label}")
    values = {
        "replicaCount": "0",
        "peering.enabled": "true",
        "peering.name": PEERING,
        "watchNamespaces[0]": namespace,
        "prometheus.url": prometheus.url,
        "admission.enabled": "false",
        "rbac.groupBindings[0].role": "editor",
        "rbac.groupBindings[0].group": "ml-engineers",
        "rbac.groupBindings[0].namespaces[0]": namespace,
        "rbac.groupBindings[1].role": "release-manager",
        "rbac.groupBindings[1].group": "ml-release-managers",
        "rbac.groupBindings[1].namespaces[0]": namespace,
    }
    helm(plane, "install", RELEASE, str(CHART), "-n", operator_ns, "--create-namespace", *set_args(values))
    writers = [
        doc
        for doc in admission_policies(
            f"admission.namespaceSelector.matchLabels.modelledger\\.io/trust-test={label}",
            release_namespace=operator_ns,
        )
        if doc["metadata"]["name"] == "modelledger-status-writers"
    ]
    plane.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(writers))
    try:
        yield operator_ns
    finally:
        for doc in writers:
            plane.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found", check=False)
        helm(plane, "uninstall", RELEASE, "-n", operator_ns, "--wait", "--timeout=60s", check=False)
        plane.kubectl("delete", "namespace", operator_ns, "--wait=false", check=False)


def mdl(who: ClusterAccess, *args: str, env: dict[str, str] | None = None) -> Any:
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "modelledger.cli.main", *args],
        capture_output=True,
        text=True,
        env={**who.env(), "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


def md_status(plane: ClusterAccess, namespace: str, name: str = "fraud-detector") -> ModelDeploymentStatus:
    raw = get(plane, namespace, "mdep", name).get("status") or {}
    return ModelDeploymentStatus.model_validate({k: v for k, v in raw.items() if k != "kopf"})


def deployment(version: str, name: str = "fraud-detector", **spec: Any) -> dict[str, Any]:
    document = model_deployment(version, bake="1h")
    document["metadata"]["name"] = name
    document["spec"].update(spec)
    return document


def apply_as(person: Person, namespace: str, *documents: dict[str, Any]) -> None:
    person.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents))


def request_name(output: str) -> str:
    """`MarkStable request NAME created by USER`: the request's name."""
    words = output.split()
    return words[words.index("request") + 1]


def break_glass(plane: ClusterAccess, patch: list[dict[str, Any]], namespace: str, name: str) -> None:
    """What docs/security.md tells a cluster admin to do: suspend the status policy, write, restore."""
    binding = "validatingadmissionpolicybinding/modelledger-status-writers"
    relaxed = {"spec": {"validationActions": ["Warn", "Audit"]}}
    plane.kubectl("patch", binding, "--type=merge", "-p", json.dumps(relaxed))
    try:
        eventually(
            lambda: plane.kubectl(
                "patch", "mdep", name, "-n", namespace, "--subresource=status", "--type=json",
                "-p", json.dumps(patch), check=False,
            ).returncode == 0,
            30,
            "the admin's status write (policy relaxed)",
        )  # fmt: skip
    finally:
        plane.kubectl(
            "patch", binding, "--type=merge", "-p", json.dumps({"spec": {"validationActions": ["Deny"]}})
        )


def rehashed(entries: list[dict[str, Any]], change: dict[str, Any], revision: int) -> list[dict[str, Any]]:
    """The history with one entry edited and every hash recomputed by the documented formula."""
    from modelledger.api import HistoryEntry

    parsed = sorted((HistoryEntry.model_validate(e) for e in entries), key=lambda e: e.revision)
    previous, fixed = "", []
    for entry in parsed:
        if entry.revision == revision:
            entry = entry.model_copy(update=change)
        entry = entry.model_copy(update={"prev_hash": previous})
        entry = entry.model_copy(update={"hash": history.entry_hash(entry)})
        previous = entry.hash
        fixed.append(entry.to_wire())
    return list(reversed(fixed))


def test_only_the_operator_decides_and_every_actor_is_verified(
    plane: ClusterAccess, namespace: str, trust_release: str, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    users = people(plane, tmp_path)
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    access = service_account_kubeconfig(plane, trust_release, RELEASE, tmp_path / "operator.kubeconfig")
    operator = SandboxedOperator(
        access,
        namespace,
        prometheus.url,
        tmp_path / "operator.log",
        extra=[f"--operator-namespace={trust_release}"],
    )
    try:
        _scenario(plane, namespace, trust_release, alice, bob, carol, tmp_path)
    except BaseException:
        sys.stderr.write(operator.text()[-8000:])
        raise
    finally:
        operator.stop()
    assert operator.forbidden() == [], "the chart's RBAC misses a permission"


def _scenario(
    plane: ClusterAccess,
    namespace: str,
    operator_ns: str,
    alice: Person,
    bob: Person,
    carol: Person,
    tmp_path: Path,
) -> None:
    # carol (editor) registers the versions and deploys: the Deploy entry names her, verified.
    apply_as(carol, namespace, example(V132), example(V140))
    apply_as(carol, namespace, deployment(V132, approval=FOUR_EYES))
    eventually(lambda: served_revision(plane, namespace) == (V132, "1"), 60, "revision 1 served")
    first = md_status(plane, namespace).history[0]
    assert (first.actor, first.actor_verified) == ("carol", True)
    assert "ml-engineers" in first.actor_groups
    assert first.signature is not None

    # Four-eyes: alice's MarkStable waits; her own approval does not count; bob's does.
    asked = mdl(alice.access, "mark-stable", "fraud-detector", "-n", namespace, "--timeout", "0")
    assert asked.returncode == 0, asked.stderr
    name = request_name(asked.stdout)
    eventually(
        lambda: (get(plane, namespace, "mdreq", name).get("status") or {}).get("phase") == "Pending",
        30,
        "the MarkStable request Pending",
    )
    assert md_status(plane, namespace).stable_revision is None
    own = mdl(alice.access, "approve", name, "-n", namespace, "--timeout", "30")
    assert own.returncode == 1, own.stdout + own.stderr
    assert "own approval does not count" in own.stdout
    theirs = mdl(bob.access, "approve", name, "-n", namespace, "--timeout", "30")
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    eventually(lambda: md_status(plane, namespace).stable_revision == 1, 30, "revision 1 stable")
    mark = md_status(plane, namespace).history[0].stable_mark
    assert mark is not None
    assert (mark.actor, mark.actor_verified, mark.approvers) == ("alice", True, ["bob"])
    assert mark.signature is not None

    # A request that claims someone else never stores that claim.
    forged = {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeploymentRequest",
        "metadata": {"name": "forged"},
        "spec": {
            "deployment": "fraud-detector",
            "action": "Rollback",
            "reason": "claims to be bob",
            "requester": {"username": "bob", "groups": ["ml-release-managers", "ml-approvers"]},
        },
    }
    created = alice.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(forged), check=False)
    if created.returncode == 0:  # re-stamped by the mutating policy
        assert get(plane, namespace, "mdreq", "forged")["spec"]["requester"]["username"] == "alice"
        plane.kubectl("delete", "mdreq", "forged", "-n", namespace)
    else:  # refused by the validating policy
        assert "spec.requester" in created.stderr

    # An editor cannot request a rollback (RBAC: exit code 3, forbidden).
    refused = mdl(carol.access, "rollback", "fraud-detector", "-n", namespace, "--reason", "x")
    assert refused.returncode == 3, refused.stdout + refused.stderr

    # carol upgrades; alice rolls back; both entries name them, verified.
    apply_as(carol, namespace, deployment(V140, approval=FOUR_EYES))
    eventually(lambda: served_revision(plane, namespace) == (V140, "2"), 60, "revision 2 served")
    rolled = mdl(alice.access, "rollback", "fraud-detector", "-n", namespace, "--reason", "latency")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    eventually(lambda: served_revision(plane, namespace) == (V132, "3"), 60, "revision 3 served")
    top = md_status(plane, namespace).history[0]
    assert (top.cause.value, top.actor, top.actor_verified, top.reason) == (
        "ManualRollback",
        "alice",
        True,
        "latency",
    )
    assert top.request_name is not None

    # A request nobody approves in time expires.
    apply_as(carol, namespace, deployment(V132, name="quick", approval={**FOUR_EYES, "timeout": "3s"}))
    eventually(lambda: md_status(plane, namespace, "quick").current_revision == 1, 60, "quick deployed")
    expired = mdl(alice.access, "mark-stable", "quick", "-n", namespace, "--timeout", "60")
    assert expired.returncode == 1, expired.stdout + expired.stderr
    assert "Expired" in expired.stdout

    # Nobody but the operator writes status: alice, even granted the status subresource, is refused.
    plane.kubectl(
        "create", "role", "status-writer", "-n", namespace, "--verb=patch",
        "--resource=modeldeployments.modelledger.io/status", "--resource=modelversions.modelledger.io/status",
    )  # fmt: skip
    plane.kubectl(
        "create", "rolebinding", "status-writer", "-n", namespace, "--role=status-writer", "--user=alice",
        "--user=carol",
    )  # fmt: skip
    for field, value in (("stableRevision", 2), ("quarantined", []), ("currentRevision", 2)):
        patch = json.dumps({"status": {field: value}})
        written = alice.kubectl(
            "patch", "mdep", "fraud-detector", "-n", namespace, "--subresource=status", "--type=merge",
            "-p", patch, check=False,
        )  # fmt: skip
        assert written.returncode != 0, f"alice wrote status.{field}"
        assert POLICY_MESSAGE in written.stderr, written.stderr
    written = carol.kubectl(
        "patch", "mv", V132, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Revoked"}}), check=False,
    )  # fmt: skip
    assert written.returncode != 0
    assert POLICY_MESSAGE in written.stderr, written.stderr

    # The report verifies offline, with the published public key and no cluster at all.
    key = mdl(plane, "audit", "public-key", "--operator-namespace", operator_ns)
    assert key.returncode == 0, key.stderr
    (tmp_path / "key.pem").write_text(key.stdout)
    report = mdl(plane, "report", "fraud-detector", "-n", namespace, "--operator-namespace", operator_ns)
    assert report.returncode == 0, report.stderr
    (tmp_path / "report.json").write_text(report.stdout)
    offline = {"KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    verified = mdl(
        plane, "audit", "verify", "--report", str(tmp_path / "report.json"),
        "--public-key", str(tmp_path / "key.pem"), env=offline,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    edited = json.loads(report.stdout)
    deployment_report = edited["deployments"][0]
    deployment_report["history"] = rehashed(deployment_report["history"], {"actor": "mallory"}, 3)
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    caught = mdl(
        plane, "audit", "verify", "--report", str(tmp_path / "edited.json"),
        "--public-key", str(tmp_path / "key.pem"), env=offline,
    )  # fmt: skip
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "revision 3" in caught.stdout

    # A cluster admin rewrites the history with the documented formula, but without the key.
    serving_before = served_revision(plane, namespace)
    entries = get(plane, namespace, "mdep", "fraud-detector")["status"]["history"]
    forged_history = rehashed(entries, {"actor": "mallory"}, 3)
    break_glass(plane, [{"op": "replace", "path": "/status/history", "value": forged_history}], namespace,
                "fraud-detector")  # fmt: skip
    checked = mdl(
        plane, "audit", "verify", "fraud-detector", "-n", namespace, "--operator-namespace", operator_ns
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "revision 3" in checked.stdout
    eventually(lambda: md_status(plane, namespace).phase.value == "Failed", 30, "phase Failed")
    verified_condition = next(
        c for c in md_status(plane, namespace).conditions if c.type == "HistoryVerified"
    )
    assert (verified_condition.status.value, verified_condition.reason) == ("False", "HistoryTampered")
    # The operator acts on nothing: a rollback request waits, and the workload stays as it was.
    waiting = mdl(
        alice.access, "rollback", "fraud-detector", "-n", namespace, "--reason", "x", "--timeout", "5"
    )
    assert waiting.returncode == 1, waiting.stdout + waiting.stderr
    assert served_revision(plane, namespace) == serving_before

    # A flipped stable flag is tampering too.
    quick = get(plane, namespace, "mdep", "quick")["status"]["history"]
    index = next(i for i, e in enumerate(quick) if not e.get("stable"))
    break_glass(plane, [{"op": "replace", "path": f"/status/history/{index}/stable", "value": True}],
                namespace, "quick")  # fmt: skip
    checked = mdl(plane, "audit", "verify", "quick", "-n", namespace, "--operator-namespace", operator_ns)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    eventually(
        lambda: (
            next(
                c for c in md_status(plane, namespace, "quick").conditions if c.type == "HistoryVerified"
            ).reason
            == "HistoryTampered"
        ),
        30,
        "quick: HistoryTampered",
    )
