"""Child processes that never outlive their launcher: killed with it, even when it is SIGKILLed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1

Probe = Callable[[], bool]


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # Linux delivers SIGKILL to the child when the thread that forked it exits, even on SIGKILL.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class StartupError(RuntimeError):
    """A component did not become ready; the message carries the tail of its log."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    argv: list[str] = field(default_factory=list)  # kept so `ProcessGroup.restart` can start it again
    env: dict[str, str] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def check_running(self) -> None:
        if not self.running():
            raise StartupError(
                f"{self.name} exited with code {self.process.returncode}; last lines of {self.log}:\n"
                + log_tail(self.log)
            )


@dataclass
class ProcessGroup:
    """Starts children with logs in `log_dir` and stops them in reverse order of start."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str | os.PathLike[str]], env: dict[str, str] | None = None
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [os.fspath(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                # Own session: Ctrl-C reaches the launcher only, and it stops children in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, process, log, [os.fspath(a) for a in argv], env)
        self.children.append(child)
        return child

    def restart(self, name: str, *, down: float = 0.0, sig: int = signal.SIGTERM) -> Child:
        """Stop the child `name` (with `sig`), wait `down` seconds, and start it again with the same
        arguments and environment, in the same place in the stop order (fault tests)."""
        index, old = next((i, c) for i, c in enumerate(self.children) if c.name == name)
        if old.running():
            with contextlib.suppress(ProcessLookupError):
                old.process.send_signal(sig)
            try:
                old.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                old.process.kill()
                old.process.wait()
        time.sleep(down)
        new = self.start(name, old.argv, old.env)
        self.children.pop()
        self.children[index] = new
        return new

    def stop(self, grace: float = 10.0) -> None:
        for child in reversed(self.children):
            if child.running():
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self.children.clear()


def wait_until(
    what: str,
    probe: Probe,
    timeout: float,
    *,
    watch: Child | None = None,
    interval: float = 0.1,
) -> None:
    """Poll `probe` until it returns True; fail early (with the log) if the watched child dies."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if watch is not None:
            watch.check_running()
        try:
            if probe():
                return
        except Exception as error:  # a probe's connection errors just mean "not yet"
            last_error = f" (last error: {error})"
        time.sleep(interval)
    detail = f"; last lines of {watch.log}:\n{log_tail(watch.log)}" if watch else ""
    raise StartupError(f"{what} not ready after {timeout:.0f} s{last_error}{detail}")
