"""Every setting is documented where users look: config.example.yaml and the README's table."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel

from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _yaml_keys(value: object, prefix: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(f"{prefix}{key}")
            found |= _yaml_keys(item, f"{prefix}{key}.")
    return found


def test_every_setting_is_in_config_example() -> None:
    text = (ROOT / "config.example.yaml").read_text()
    documented = _yaml_keys(yaml.safe_load(text)) | {
        # Optional settings shown commented out, as their absence selects the embedded default.
        line.strip().lstrip("# ").split(":", 1)[0].strip()
        for line in text.splitlines()
        if line.strip().startswith("#")
    }
    flat = {key.rsplit(".", 1)[-1] for key in documented}
    missing = [key for key in _keys(Settings) if key not in documented and key.rsplit(".", 1)[-1] not in flat]
    assert not missing, f"settings missing from config.example.yaml: {missing}"


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        key for key in _keys(Settings) if key != "meters" and "TALLY_" + key.upper().replace(".", "__") not in readme
    ]
    assert not missing, f"settings missing from the README's configuration table: {missing}"
