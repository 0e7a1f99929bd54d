"""No job route lets anyone outside the job's workspace reach it: every `/v1/jobs/{job_id}...`
route, called with a real job id by members of another workspace (token, API key, or the
target named in X-Workspace-Id), is the bare 404; nothing changes."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from lipika.app import create_app
from lipika.config import Settings
from tests.jobs.conftest import Jobs
from tests.workspaces.test_isolation import assert_hidden, endpoints, unwrap

JOB_ROUTES = {
    ("GET", "/v1/jobs/{job_id}"),
    ("POST", "/v1/jobs/{job_id}/cancel"),
    ("GET", "/v1/jobs/{job_id}/events"),
    ("GET", "/v1/jobs/{job_id}/content"),
}


@pytest.fixture
def api(app: object, settings: Settings) -> FastAPI:
    return unwrap(app) or create_app(settings)


async def test_another_workspace_never_reaches_a_job(
    jobs: Jobs, api: FastAPI, signup, books
) -> None:
    owner, outsider = await signup("owner"), await signup("outsider")
    job = await jobs.submit_video(owner.headers, prompt="the secret lighthouse", seconds=2)
    job_id = job.json()["id"]
    await jobs.wait(job_id, owner.headers)
    key = await jobs.client.post("/v1/api-keys", json={"name": "k"}, headers=outsider.headers)
    outsider_key = {"Authorization": f"Bearer {key.json()['key']}"}

    routes = [e for e in endpoints(api) if e.path.startswith("/v1/jobs/{job_id}")]
    assert {(e.method, e.path) for e in routes} >= JOB_ROUTES
    credentials = {
        "token of another workspace": outsider.headers,
        "same, naming the target": outsider.in_workspace(owner.personal_workspace_id),
        "API key of another workspace": outsider_key,
    }
    problems = []
    for label, headers in credentials.items():
        for endpoint in routes:
            response = await jobs.client.request(
                endpoint.method, endpoint.url({"job_id": job_id}), headers=headers
            )
            problem = assert_hidden(response, endpoint, ["secret lighthouse", owner.user_id])
            if problem:
                problems.append(f"[{label}] {problem}")
        listed = await jobs.client.get("/v1/jobs", headers=headers)
        if listed.status_code == 200 and listed.json()["data"]:
            problems.append(f"[{label}] GET /v1/jobs lists another workspace's job")
    assert not problems, "\n".join(problems)

    # The owner still reads it, unchanged.
    for endpoint in routes:
        if endpoint.method == "GET":
            response = await jobs.client.get(
                endpoint.url({"job_id": job_id}), headers=owner.headers
            )
            assert response.status_code == 200, f"{endpoint}: {response.text}"
    assert (await jobs.client.get(f"/v1/jobs/{job_id}", headers=owner.headers)).json()[
        "status"
    ] == "succeeded"
    await books.assert_balanced()
