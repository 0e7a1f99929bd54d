"""Job outputs in an object store: against a real S3-compatible server (moto's, started on a
free port as its own process), through the same obstore code the app runs; and a whole job
whose output lands there and is streamed back through the API."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from lipika.jobs.storage import OutputStore
from tests.jobs.conftest import Jobs

BUCKET = "lipika-outputs"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(endpoint, timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def _s3_store(endpoint: str) -> OutputStore:
    options = {**CREDENTIALS, "endpoint": endpoint, "allow_http": "true"}
    return OutputStore.open(f"s3://{BUCKET}/jobs-test", Path("unused"), options)


async def test_outputs_round_trip_through_s3(s3_endpoint: str) -> None:
    store = _s3_store(s3_endpoint)
    data = bytes(range(256)) * 4096  # 1 MiB, read back in several chunks
    key = f"jobs/{uuid.uuid4()}/0"
    await store.put(key, data)
    assert await store.read(key) == data
    chunks = [chunk async for chunk in store.stream(key)]
    assert b"".join(chunks) == data
    listed = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).list_objects_v2(Bucket=BUCKET, Prefix="jobs-test/")
    assert f"jobs-test/{key}" in [o["Key"] for o in listed["Contents"]]


@pytest.mark.usefixtures("backend")
async def test_a_jobs_output_is_kept_in_s3_and_streamed_back(
    jobs: Jobs, s3_endpoint: str, signup, books, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs.runner, "store", _s3_store(s3_endpoint))
    me = await signup("s3")
    job = (await jobs.submit_video(me.headers, seconds=2)).json()
    done = await jobs.wait(job["id"], me.headers)
    assert done["status"] == "succeeded"
    content = await jobs.client.get(f"/v1/jobs/{job['id']}/content", headers=me.headers)
    assert content.status_code == 200 and b"Lipika demo video" in content.content
    assert int(content.headers["content-length"]) == len(content.content)
    await books.assert_balanced()


async def test_the_local_store_is_a_directory(tmp_path: Path) -> None:
    store = OutputStore.open(None, tmp_path / "outputs", {})
    await store.put("jobs/x/0", b"hello")
    assert (tmp_path / "outputs" / "jobs" / "x" / "0").read_bytes() == b"hello"
    assert await store.read("jobs/x/0") == b"hello"
