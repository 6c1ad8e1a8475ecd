"""`modelledger-plane`: start, stop and inspect the local control plane (+ Prometheus) from a shell.

modelledger-plane run     foreground; Ctrl-C stops everything
modelledger-plane up      in the background; the LAST line printed is the admin kubeconfig path
modelledger-plane down    stops what `up` started
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from modelledger.testing.binaries import REPO_ROOT
from modelledger.testing.plane import LocalPlane, PlaneOptions
from modelledger.testing.processes import log_tail
from modelledger.testing.prometheus import PrometheusServer

DEFAULT_STATE_DIR = REPO_ROOT / ".plane"


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _stop_on_signals() -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, handler)


def _read_state(state_dir: Path) -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads((state_dir / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run(state_dir: Path, options: PlaneOptions, with_prometheus: bool) -> int:
    _stop_on_signals()
    state_file = state_dir / "state.json"
    state_file.unlink(missing_ok=True)
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        plane = stack.enter_context(LocalPlane(state_dir / "plane", options))
        state: dict[str, object] = {
            "launcher_pid": os.getpid(),
            "kubeconfig": str(plane.kubeconfig),
            "server": plane.server,
            "pids": plane.pids(),
            "timings": plane.timings,
        }
        if with_prometheus:
            prometheus = stack.enter_context(PrometheusServer(state_dir / "prometheus"))
            state["prometheus_url"] = prometheus.url
            state["prometheus_targets"] = str(state_dir / "prometheus" / "targets")
            state["pids"] = plane.pids() + [c.pid for c in prometheus.processes.children]
        state["ready_seconds"] = round(time.monotonic() - began, 2)
        tmp = state_dir / ".state.json"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.rename(state_file)
        _say(f"plane ready in {state['ready_seconds']} s: {plane.server}")
        if with_prometheus:
            _say(f"prometheus: {state['prometheus_url']}")
        _say(str(plane.kubeconfig))
        try:
            while True:
                time.sleep(3600)
        finally:
            state_file.unlink(missing_ok=True)
    return 0


def up(state_dir: Path, argv_tail: list[str], timeout: float) -> int:
    state = _read_state(state_dir)
    if state and _alive(int(str(state["launcher_pid"]))):
        _say(f"already running (launcher pid {state['launcher_pid']})")
        _say(str(state["kubeconfig"]))
        return 0
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / "launcher.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelledger.testing.launcher",
                "--state-dir",
                str(state_dir),
                "run",
                *argv_tail,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _say(f"starting the local control plane (launcher pid {launcher.pid}, log {log})")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            _say(f"the launcher exited with code {launcher.returncode}:\n{log_tail(log)}")
            return 1
        state = _read_state(state_dir)
        if state:
            _say(f"ready in {state['ready_seconds']} s: {state['server']}")
            if "prometheus_url" in state:
                _say(f"prometheus: {state['prometheus_url']}")
            _say(str(state["kubeconfig"]))
            return 0
        time.sleep(0.2)
    launcher.terminate()
    _say(f"not ready after {timeout:.0f} s:\n{log_tail(log)}")
    return 1


def down(state_dir: Path, timeout: float = 30.0) -> int:
    state = _read_state(state_dir)
    if not state:
        _say("not running")
        return 0
    pid = int(str(state["launcher_pid"]))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)  # its children die with it (PR_SET_PDEATHSIG)
    (state_dir / "state.json").unlink(missing_ok=True)
    _say("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="modelledger-plane", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "up"):
        sub = commands.add_parser(name)
        sub.add_argument("--nodes", type=int, default=2)
        sub.add_argument("--event-ttl", default="1h")
        sub.add_argument("--no-prometheus", action="store_true")
    commands.add_parser("down")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    if args.command == "run":
        return run(
            state_dir, PlaneOptions(nodes=args.nodes, event_ttl=args.event_ttl), not args.no_prometheus
        )
    if args.command == "up":
        tail = ["--nodes", str(args.nodes), "--event-ttl", args.event_ttl]
        tail += ["--no-prometheus"] if args.no_prometheus else []
        return up(state_dir, tail, timeout=180)
    return down(state_dir)


if __name__ == "__main__":
    sys.exit(main())
