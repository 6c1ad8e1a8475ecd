"""The fault suite's workload: a seeded script of rounds, each with one step per deployment.

Pure: the script is drawn from the seed before anything runs, so a fault-free run and every faulted run
do exactly the same thing, and each step says what the cluster must show when it is done (how many
revisions, the newest one's cause, the phase). Steps are drawn only where their outcome is certain:
every revision is stable before the next step (each step waits for that), versions are never reused, and
a rollback or revocation is drawn only when a usable target exists, so no step leaves a deployment
Degraded.

Rounds: 0 creates every deployment on its first version, 1 deploys the second everywhere (a rollback
target), 2 is a rollback storm (every deployment rolls back at once: two rules breach, one person asks
for a rollback, one version is revoked; which deployment gets which is drawn), 3 deploys a third version
everywhere; the rest are drawn.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from modelledger.api import DeploymentPhase, RevisionCause

DEPLOYMENTS = ("m0", "m1", "m2", "m3")
STORM_ROUND = 2


class Action(StrEnum):
    CREATE = "create"  # the ModelDeployment, serving its first version
    DEPLOY = "deploy"  # spec.version set to a new version (a person's decision, through Git)
    BREACH = "breach"  # its error rate up until the rule rolls it back, then down again
    ROLLBACK = "rollback"  # `modelledger rollback` (a ModelDeploymentRequest)
    REVOKE = "revoke"  # the serving ModelVersion revoked


CAUSE = {
    Action.CREATE: RevisionCause.DEPLOY,
    Action.DEPLOY: RevisionCause.DEPLOY,
    Action.BREACH: RevisionCause.AUTOMATIC_ROLLBACK,
    Action.ROLLBACK: RevisionCause.MANUAL_ROLLBACK,
    Action.REVOKE: RevisionCause.REVOCATION,
}
# The storm: every deployment rolls back in the same round, for each of the three reasons.
STORM = (Action.BREACH, Action.BREACH, Action.ROLLBACK, Action.REVOKE)
WEIGHTS = {Action.DEPLOY: 3, Action.BREACH: 2, Action.ROLLBACK: 2, Action.REVOKE: 1}


def version_name(deployment: str, index: int) -> str:
    return f"{deployment}-v{index}"


@dataclass(frozen=True)
class Step:
    deployment: str
    action: Action
    version: str  # deploy/create: the version to serve; revoke: the version revoked; else the serving one
    revisions: int  # how many revisions the history holds once the step is done
    phase: DeploymentPhase

    @property
    def cause(self) -> RevisionCause:
        return CAUSE[self.action]

    def describe(self) -> str:
        return f"{self.deployment}: {self.action.value} {self.version} -> revision {self.revisions}"


@dataclass
class _Model:
    """What one deployment's history will be, as far as the script needs it."""

    history: list[str] = field(default_factory=list)  # versions, oldest first
    revoked: set[str] = field(default_factory=set)
    rolled_back: bool = False
    next_version: int = 1

    def target(self) -> str | None:
        """The version a rollback from the serving revision would go to (newest usable, not serving)."""
        serving = self.history[-1]
        older = [v for v in reversed(self.history[:-1]) if v not in self.revoked and v != serving]
        return older[0] if older else None

    def valid(self) -> list[Action]:
        actions = [Action.DEPLOY]
        if not self.rolled_back and self.target() is not None:
            actions += [Action.BREACH, Action.ROLLBACK, Action.REVOKE]
        return actions

    def apply(self, deployment: str, action: Action) -> Step:
        serving = self.history[-1] if self.history else ""
        if action in (Action.CREATE, Action.DEPLOY):
            version = version_name(deployment, self.next_version)
            self.next_version += 1
            self.history.append(version)
            self.rolled_back = False
            return Step(deployment, action, version, len(self.history), DeploymentPhase.HEALTHY)
        target = self.target()
        assert target is not None, f"{deployment}: no target for {action.value}"
        assert not self.rolled_back, f"{deployment}: {action.value} while rolled back"
        if action is Action.REVOKE:
            self.revoked.add(serving)
        self.history.append(target)
        self.rolled_back = True
        return Step(deployment, action, serving, len(self.history), DeploymentPhase.ROLLED_BACK)


@dataclass(frozen=True)
class Script:
    seed: int
    rounds: tuple[tuple[Step, ...], ...]

    @property
    def steps(self) -> list[Step]:
        return [step for steps in self.rounds for step in steps]

    def versions(self, deployment: str) -> list[str]:
        """Every version the script deploys to `deployment` (the ModelVersions to register)."""
        return [s.version for s in self.steps if s.deployment == deployment and s.action in _NEW]

    def count(self, action: Action) -> int:
        return sum(step.action is action for step in self.steps)


_NEW = (Action.CREATE, Action.DEPLOY)


def draw(seed: int, rounds: int, deployments: tuple[str, ...] = DEPLOYMENTS) -> Script:
    """The script for `seed`: `rounds` rounds, the fixed ones first (at least the storm), then drawn."""
    rng = random.Random(seed)
    models = {d: _Model() for d in deployments}
    storm = list(STORM[: len(deployments)])
    rng.shuffle(storm)
    fixed = [
        [Action.CREATE] * len(deployments),
        [Action.DEPLOY] * len(deployments),
        storm,
        [Action.DEPLOY] * len(deployments),
    ]
    drawn: list[tuple[Step, ...]] = []
    for index in range(max(rounds, STORM_ROUND + 1)):
        steps = []
        for position, deployment in enumerate(deployments):
            model = models[deployment]
            if index < len(fixed):
                action = fixed[index][position]
            else:
                valid = model.valid()
                action = rng.choices(valid, weights=[WEIGHTS[a] for a in valid])[0]
            steps.append(model.apply(deployment, action))
        drawn.append(tuple(steps))
    return Script(seed, tuple(drawn))
