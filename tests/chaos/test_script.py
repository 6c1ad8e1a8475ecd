"""The script itself (pure, no cluster): replayable from its seed, and every step's outcome certain."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.chaos.script import DEPLOYMENTS, STORM, STORM_ROUND, Action, draw


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=8))
def test_a_seed_replays_the_same_script(seed: int, drawn: int) -> None:
    assert draw(seed, 4 + drawn) == draw(seed, 4 + drawn)
    assert len(draw(seed, 4 + drawn).rounds) == 4 + drawn
    assert draw(seed, 4 + drawn).rounds[:3] == draw(seed, 3).rounds, "the short form is a prefix"


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=8))
def test_each_step_adds_one_revision_and_versions_are_never_reused(seed: int, drawn: int) -> None:
    script = draw(seed, 4 + drawn)
    for deployment in DEPLOYMENTS:
        steps = [s for s in script.steps if s.deployment == deployment]
        assert [s.revisions for s in steps] == list(range(1, len(steps) + 1))
        versions = script.versions(deployment)
        assert len(versions) == len(set(versions))
        revoked = [s.version for s in steps if s.action is Action.REVOKE]
        assert len(revoked) == len(set(revoked)), "a version is revoked once"


@given(st.integers(min_value=0, max_value=10**6))
def test_the_storm_rolls_every_deployment_back_for_each_reason(seed: int) -> None:
    storm = draw(seed, 3).rounds[STORM_ROUND]
    assert sorted(s.action for s in storm) == sorted(STORM)
    assert {s.cause.value for s in storm} == {"AutomaticRollback", "ManualRollback", "Revocation"}


def test_nothing_is_drawn_that_cannot_happen() -> None:
    """A rollback, breach or revocation only from a deployment serving its desired version."""
    for seed in range(200):
        rolled_back = dict.fromkeys(DEPLOYMENTS, False)
        for step in draw(seed, 12).steps:
            if step.action not in (Action.CREATE, Action.DEPLOY):
                assert not rolled_back[step.deployment], step
            rolled_back[step.deployment] = step.action not in (Action.CREATE, Action.DEPLOY)
