"""How tests, the demo and benchmarks reach a cluster: a kubeconfig, and kubectl bound to it."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from modelledger.testing.binaries import kubectl_binary


@dataclass(frozen=True)
class ClusterAccess:
    kubeconfig: Path

    def env(self) -> dict[str, str]:
        """The environment for a subprocess that should talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def wait_established(self, crd: str, timeout: float = 90.0) -> None:
        """Wait until the CRD `crd` (its full name) is Established.

        Retried: right after a CRD is created (or re-created), `kubectl wait` can fail at once instead
        of waiting, while its discovery does not resolve the kind yet.
        """
        deadline = time.monotonic() + timeout
        while True:
            waited = self.kubectl(
                "wait",
                "--for=condition=Established",
                f"customresourcedefinitions.apiextensions.k8s.io/{crd}",
                "--timeout=20s",
                check=False,
            )
            if waited.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd} not Established within {timeout:g} s: {waited.stderr.strip()}")
            time.sleep(1.0)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(kubectl_binary()), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result
