"""Schemathesis over the OpenAPI document, against the real server: zero 5xx is the bar.

Bounded (10 examples per operation, every phase including stateful links) with a fixed seed,
so CI is repeatable and stays within a couple of minutes a backend; set LIPIKA_FUZZ_SEED and
LIPIKA_FUZZ_EXAMPLES to explore more inputs locally. Runs on both
backends: the attacks this guards against were found on PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fixtures.live import serve

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def test_no_generated_request_gets_a_server_error(app, signup, tmp_path: Path) -> None:
    account = await signup()
    async with serve(app) as url:
        process = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            os.environ.get("LIPIKA_FUZZ_EXAMPLES", "10"),
            "--seed",
            os.environ.get("LIPIKA_FUZZ_SEED", "20261201"),
            "--no-shrink",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--header",
            f"Authorization: Bearer {account.access_token}",
            # Logging out would revoke the token the rest of the run uses.
            "--exclude-path",
            "/v1/auth/logout",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        output, _ = await process.communicate()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]
    assert "passed" in report.splitlines()[-1] or " passed" in report, report[-2000:]
