"""The `dev` environment synthesized exactly as `cdk synth -c env=dev` would, without the CDK CLI.

The CLI runs `app.py` with the context in CDK_CONTEXT_JSON and the output folder in CDK_OUTDIR; doing the
same here gives the same template while sparing the local runtime the Node CLI. The function code is the
repository's own `functions/` (the local workers import it; no platform-specific asset is needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
APP = REPOSITORY_ROOT / "app.py"
LOCAL_ENVIRONMENT = "dev"
STACK_NAME = f"{LOCAL_ENVIRONMENT}-callback-dispatcher"
SYNTH_TIMEOUT_SECONDS = 300


class SynthesisError(RuntimeError):
    """The registry did not synthesize; the message carries the app's own explanation."""


def synthesize(registry: Path, outdir: Path) -> Path:
    """Synthesize `registry` as the dev environment into `outdir`; returns the stack's template path."""
    context = json.loads((REPOSITORY_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    context |= {"env": LOCAL_ENVIRONMENT, "registry": str(registry.resolve()), "lambda_asset": "functions"}
    environment = os.environ | {
        "CDK_OUTDIR": str(outdir.resolve()),
        "CDK_CONTEXT_JSON": json.dumps(context),
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
    }
    completed = subprocess.run(
        [sys.executable, str(APP)],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SYNTH_TIMEOUT_SECONDS,
        check=False,
    )
    template = outdir / f"{STACK_NAME}.template.json"
    if completed.returncode != 0 or not template.is_file():
        raise SynthesisError(completed.stderr.strip() or completed.stdout.strip() or "cdk synthesis failed")
    return template
