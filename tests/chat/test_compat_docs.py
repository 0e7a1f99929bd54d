"""The README's table of what each provider honours must match the adapters' declarations."""

from __future__ import annotations

import re
from pathlib import Path

from lipika.config import Settings
from lipika.providers.chat import FEATURES
from lipika.providers.registry import build_registry

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_what_each_adapter_declares() -> None:
    text = README.read_text()
    section = text[text.index("### OpenAI compatibility") :]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    providers = re.findall(r"`([a-z]+)`", lines[0])
    table = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        feature = re.match(r"`([a-z_]+)`", cells[0])[1]
        table[feature] = dict(zip(providers, cells[1:], strict=True))
    registry = build_registry(Settings(_env_file=None))
    assert set(providers) == set(registry.providers)
    assert list(table) == list(FEATURES)
    for feature, row in table.items():
        for name, cell in row.items():
            declared = feature in registry.get(name).features
            assert cell == ("yes" if declared else "no"), (feature, name)
