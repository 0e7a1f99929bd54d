"""The README's settings table and the charge-policy page must match the code."""

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
