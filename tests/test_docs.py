"""The README's settings table, its route table and the charge-policy page must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from lipika.billing.policy import POLICY, Outcome
from lipika.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_readme_settings_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = {name.lower() for name in re.findall(r"`LIPIKA_([A-Z_]+)`", readme)}
    assert documented == set(Settings.model_fields)


def test_charge_policy_page_has_every_outcome_with_its_charge() -> None:
    page = (ROOT / "docs" / "charge-policy.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", page, flags=re.MULTILINE))
    assert set(rows) == {o.value for o in Outcome}
    for outcome, rule in POLICY.items():
        charged_nothing = rows[outcome.value].strip() == "nothing"
        assert charged_nothing == (rule.charge == "nothing"), outcome


DOC_PAGES = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
ROUTE_CODE = re.compile(r"`((?:GET|POST|PUT|PATCH|DELETE)(?:/(?:GET|POST|PUT|PATCH|DELETE))*) (/[^`\s]*)`")


def _api_section(readme: str) -> str:
    return readme.split("\n## API\n", 1)[1].split("\n## ", 1)[0]


def readme_routes(readme: str) -> set[tuple[str, str]]:
    """The (method, path) pairs of the API section's route table: the first cell of each row
    names them as `GET /v1/x` or `GET/POST /v1/x`, comma-separated."""
    table = _api_section(readme).split("| route | what |", 1)[1].split("\n\n", 1)[0]
    routes = set()
    for row in table.strip().splitlines()[1:]:
        first_cell = row.split(" | ", 1)[0]
        codes = ROUTE_CODE.findall(first_cell)
        assert codes, f"a route-table row names no route: {row[:80]}"
        routes |= {(method, path) for methods, path in codes for method in methods.split("/")}
    return routes


def app_routes() -> list:
    from lipika.app import create_app
    from tests.workspaces.test_isolation import endpoints

    return [e for e in endpoints(create_app()) if e.path not in DOC_PAGES]


def test_readme_route_table_is_the_apps_routes() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = readme_routes(readme)
    served = {(e.method, e.path) for e in app_routes()}
    assert served - documented == set(), "routes the README's table lacks"
    assert documented - served == set(), "routes in the README's table the app lacks"
    for page in DOC_PAGES:  # the documentation pages are named above the table
        assert f"`{page}`" in _api_section(readme)


def test_readme_names_every_idempotent_route() -> None:
    from fastapi.routing import iter_route_contexts

    from lipika.app import create_app
    from lipika.idempotency.dependencies import idempotency_key, idempotency_key_in_path

    def calls(dependant) -> set:
        return {dependant.call} | {c for d in dependant.dependencies for c in calls(d)}

    idempotent = {
        c.path
        for c in iter_route_contexts(create_app().routes)
        if getattr(c.original_route, "dependant", None)
        and {idempotency_key, idempotency_key_in_path} & calls(c.original_route.dependant)
    }
    section = (ROOT / "README.md").read_text().split("### Idempotency keys", 1)[1].split("\n### ", 1)[0]
    named = set(re.findall(r"`(/v1/[^`]+)`", section.strip().split("\n\n", 1)[0]))
    assert idempotent and named == idempotent
