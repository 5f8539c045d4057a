"""compose.yaml is valid YAML naming the whole stack (no Docker engine runs here to `config` it)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_names_the_whole_stack():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "mosquitto", "mailpit", "web", "worker", "bridge"}
    for name in ("web", "worker", "bridge"):
        assert "dockerfile_inline" in services[name]["build"]
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://")
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose["volumes"] or (ROOT / source).exists(), volume
