"""What the fault suite does to the cluster and reads from it: manifests, the steps' actions (retried, since
the apiserver may be down when one is due), snapshots, and the final state a run is judged by."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, cast

import kubernetes
import yaml

from modelledger.api.common import GROUP, VERSION
from modelledger.testing.access import ClusterAccess
from tests.chaos.script import Action, Step
from tests.scenario import QUERY, example

ACTION_RETRY = 120.0  # seconds an action keeps being retried while the apiserver does not answer


def model_version(deployment: str, name: str) -> dict[str, Any]:
    document = example("fraud-detector-1-3-2")
    document["metadata"] = {"name": name, "labels": {"app.kubernetes.io/name": deployment}}
    spec = document["spec"]
    spec["modelName"] = deployment
    spec["version"] = "1.0." + name.rsplit("-v", 1)[1]
    spec["artifact"]["digest"] = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    return document


def model_deployment(deployment: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": deployment},
        "spec": {
            "modelName": deployment,
            "version": version,
            "replicas": 1,
            "revisionHistoryLimit": 100,  # nothing pruned: every revision is compared
            "stability": {"bakeTime": "1s"},
            "rollback": {
                "interval": "1s",
                "cooldown": "1s",
                "rules": [
                    {"name": "error-rate", "query": QUERY, "comparator": ">", "threshold": 0.5, "for": "1s"}
                ],
            },
        },
    }


class Cluster:
    """One run's namespace, through kubectl (actions) and the Python client (fast polling)."""

    def __init__(self, plane: ClusterAccess, api: kubernetes.client.ApiClient, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace
        self.objects = kubernetes.client.CustomObjectsApi(api)
        self.apps = kubernetes.client.AppsV1Api(api)

    # --- actions -------------------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, ok: tuple[str, ...] = ()) -> None:
        """kubectl, retried until it succeeds (or fails with one of `ok` in its stderr)."""
        deadline = time.monotonic() + ACTION_RETRY
        while True:
            done = self.plane.kubectl(*args, "-n", self.namespace, input=input, check=False, timeout=30)
            if done.returncode == 0 or any(text in done.stderr for text in ok):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
            time.sleep(0.5)

    def apply(self, *documents: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))

    def act(self, step: Step) -> None:
        """Start the step (a breach is started by the caller, through the exporter)."""
        if step.action in (Action.CREATE, Action.DEPLOY):
            self.apply(model_deployment(step.deployment, step.version))
        elif step.action is Action.REVOKE:
            patch = {"spec": {"revoked": True, "revocationReason": f"chaos: {step.describe()}"}}
            self.kubectl("patch", "mv", step.version, "--type=merge", "-p", json.dumps(patch))
        elif step.action is Action.ROLLBACK:
            self.request_rollback(step)

    def request_rollback(self, step: Step) -> None:
        """`modelledger rollback`, once: a retry after a failure first looks for the request it may have
        created (the CLI names requests by generateName)."""
        deadline = time.monotonic() + ACTION_RETRY
        while True:
            try:
                before = len(self.requests(step.deployment))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        while True:
            sent = subprocess.run(
                [sys.executable, "-m", "modelledger.cli.main", "rollback", step.deployment,
                 "-n", self.namespace, "--reason", f"chaos: {step.describe()}", "--timeout", "0"],
                capture_output=True, text=True, env={**self.plane.env(), "COLUMNS": "200"}, timeout=60,
            )  # fmt: skip
            if sent.returncode == 0:
                return
            try:
                if len(self.requests(step.deployment)) > before:
                    return  # created, but the answer was lost with the connection
            except Exception:  # the apiserver is still down: retry
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"modelledger rollback {step.deployment}: {sent.stdout}{sent.stderr}")
            time.sleep(0.5)

    # --- reads (raise while the apiserver does not answer) -------------------------------------------

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {item["metadata"]["name"]: item for item in self._list("modeldeployments")}

    def versions(self) -> dict[str, dict[str, Any]]:
        return {item["metadata"]["name"]: item for item in self._list("modelversions")}

    def requests(self, deployment: str | None = None) -> list[dict[str, Any]]:
        listed = self._list("modeldeploymentrequests")
        return [i for i in listed if deployment in (None, i["spec"].get("deployment"))]

    def _list(self, plural: str) -> list[dict[str, Any]]:
        listed = cast(
            dict[str, Any],
            self.objects.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, _request_timeout=5
            ),
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def workloads(self) -> dict[str, tuple[str, int]]:
        """name → (version, revision) of each Deployment whose rollout is complete."""
        listed = self.apps.list_namespaced_deployment(self.namespace, _request_timeout=5)
        done: dict[str, tuple[str, int]] = {}
        for item in listed.items:
            s, spec = item.status, item.spec
            complete = (s.observed_generation or 0) >= (
                item.metadata.generation or 0
            ) and s.updated_replicas == s.available_replicas == s.replicas == spec.replicas
            labels = spec.template.metadata.labels or {}
            if complete and "modelledger.io/revision" in labels:
                done[str(item.metadata.name)] = (
                    labels["modelledger.io/version"],
                    int(labels["modelledger.io/revision"]),
                )
        return done


@dataclass(frozen=True)
class Snapshot:
    deployments: dict[str, dict[str, Any]]
    workloads: dict[str, tuple[str, int]]


def history(item: dict[str, Any]) -> list[dict[str, Any]]:
    return list((item.get("status") or {}).get("history") or [])


def settled(step: Step, snapshot: Snapshot) -> bool:
    """The step's outcome is in the cluster: its revision, stable, served, in the step's phase."""
    item = snapshot.deployments.get(step.deployment)
    if item is None:
        return False
    entries = history(item)
    if len(entries) != step.revisions:
        return False
    top = entries[0]
    return (
        top["cause"] == step.cause.value
        and bool(top.get("stable"))
        and (item.get("status") or {}).get("phase") == step.phase.value
        and snapshot.workloads.get(step.deployment) == (top["version"], top["revision"])
    )


def overshot(step: Step, snapshot: Snapshot) -> str | None:
    """A history that already went past what the step calls for (a revision too many, another cause)."""
    item = snapshot.deployments.get(step.deployment)
    entries = history(item) if item else []
    if len(entries) > step.revisions or (
        len(entries) == step.revisions and entries[0]["cause"] != step.cause.value
    ):
        return f"{step.describe()}: history is {[(e['revision'], e['cause']) for e in entries]}"
    return None


def final_state(cluster: Cluster) -> dict[str, Any]:
    """Per deployment: what serves, the phase, quarantined and revoked versions, the history's versions
    and causes (oldest first) with their stability; requests by phase. Namespace-free, so runs compare."""
    found = cluster.deployments()
    revoked = sorted(n for n, v in cluster.versions().items() if v["spec"].get("revoked"))
    state: dict[str, Any] = {"revoked": revoked, "requests": {}}
    for request in cluster.requests():
        phase = (request.get("status") or {}).get("phase") or "unanswered"
        state["requests"][phase] = state["requests"].get(phase, 0) + 1
    for name, item in sorted(found.items()):
        st = item.get("status") or {}
        state[name] = {
            "serving": st.get("servingVersion"),
            "phase": st.get("phase"),
            "quarantined": sorted(st.get("quarantined") or []),
            "history": [
                (e["revision"], e["version"], e["cause"], bool(e.get("stable")))
                for e in reversed(history(item))
            ],
        }
    return state
