"""The deployment files agree with the project: commands exist, probes hit served routes,
ports line up, the manifests parse, and nothing secret is committed. Nothing is built."""

from __future__ import annotations

import asyncio
import fnmatch
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from pipebot.logs import SECRET_PATTERNS
from pipelines.config import parse_config
from pipelines.db import dispose_engine
from scheduler.schedules import block_validator
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "pipebot.service"


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Status of GET for every probe path, asked of the real API app over loopback."""
    from api.app import create_app
    from api.settings import ApiSettings

    paths = ["/healthz", "/readyz", "/metrics", "/"]
    url = f"sqlite:///{tmp_path_factory.mktemp('deploy') / 'pipebot.db'}"
    scheduler = PipelineScheduler(SchedulerSettings(database_url=url))

    async def ask() -> dict[str, int]:
        runner = web.AppRunner(create_app(scheduler, ApiSettings()))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            async with aiohttp.ClientSession() as session:
                statuses = {}
                for path in paths:
                    async with session.get(f"http://{host}:{port}{path}") as response:
                        statuses[path] = response.status
                return statuses
        finally:
            await runner.cleanup()

    try:
        return asyncio.run(ask())
    finally:
        dispose_engine(url)


def assert_served(served: dict[str, int], path: str) -> None:
    assert path in served, f"{path}: add it to the paths the served fixture asks for"
    assert served[path] != 404, f"{path} is not a route of the API app"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def unit() -> dict[str, list[tuple[str, str]]]:
    """Sections of the systemd unit as (key, value) lists (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def unit_value(section: str, key: str) -> str:
    values = [v for k, v in unit()[section] if k == key]
    assert values, f"{key}= missing from [{section}]"
    return values[-1]


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            for document in yaml.safe_load_all(handle):
                if document is not None:
                    yield path, document


def manifest(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for p, d in manifests()
        if d["kind"] == kind and p.name != "secret.example.yaml"
        if name is None or d["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container() -> dict[str, Any]:
    containers = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def container_env() -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container()["env"]}


def shutdown_grace() -> float:
    return SchedulerSettings.from_env({}).shutdown_grace


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)\s*(s|min)?", text)
    assert match, text
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_runs_the_entry_point_as_a_non_root_user() -> None:
    instructions = dockerfile()
    assert instructions[0][0] == "FROM" and re.match(
        r"python:3\.11(\.\d+)?-slim", instructions[0][1]
    )
    cmd = [rest for word, rest in instructions if word == "CMD"]
    assert cmd == ['["python", "main_scheduler.py"]']
    assert (ROOT / "main_scheduler.py").is_file()
    user = [rest for word, rest in instructions if word == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"useradd .*--uid (\d+)", DOCKERFILE.read_text()) is not None
    installs = [rest for word, rest in instructions if word == "RUN" and "pip install" in rest]
    assert any('".[postgres]"' in rest or "'.[postgres]'" in rest for rest in installs)


def test_dockerfile_copies_only_what_exists() -> None:
    for word, rest in dockerfile():
        if word == "COPY" and "--from" not in rest:
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the project"


def test_dockerfile_environment_volume_and_port() -> None:
    env = docker_env()
    assert env["SCHEDULER_DB_URL"] == "sqlite:////data/pipebot.db"
    assert env["API_HOST"] == "0.0.0.0"
    instructions = dockerfile()
    assert ("VOLUME", '["/data"]') in instructions
    exposed = [rest for word, rest in instructions if word == "EXPOSE"]
    assert exposed == [env["API_PORT"]] == ["8080"]


def test_dockerfile_healthcheck_uses_urllib_on_a_served_path(served: dict[str, int]) -> None:
    checks = [rest for word, rest in dockerfile() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "urllib.request" in checks[0] and "curl" not in checks[0]
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", checks[0])
    assert match is not None
    assert match.group(1) == docker_env()["API_PORT"]
    assert_served(served, match.group(2))
    assert served[match.group(2)] == 200


def test_dockerignore_keeps_secrets_out_and_the_project_in() -> None:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.removeprefix("**/").rstrip("/") for p in lines if p and p[0] not in "#!"]
    for pattern in (".env", "*.db", ".git"):
        assert pattern in patterns

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)

    needed = ["pyproject.toml", "README.md", "main.py", "main_scheduler.py", "pipelines.yml"]
    needed += [
        p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"
    ]
    needed.append("sample_site")
    assert {"api", "bot", "pipebot", "pipelines", "scheduler"} <= set(needed)
    assert [name for name in needed if ignored(name)] == []


# --- systemd -----------------------------------------------------------------------------------


def test_unit_restarts_stops_and_reloads_as_the_process_expects() -> None:
    assert unit_value("Service", "Restart") == "on-failure"
    assert unit_value("Service", "KillSignal") == "SIGTERM"
    assert seconds(unit_value("Service", "TimeoutStopSec")) > shutdown_grace()
    assert unit_value("Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert unit_value("Service", "StateDirectory") == "pipebot"
    assert unit_value("Service", "EnvironmentFile").startswith("/etc/pipebot/")
    assert unit_value("Install", "WantedBy") == "multi-user.target"


def test_unit_runs_unprivileged_with_its_database_in_the_state_directory() -> None:
    keys = dict(unit()["Service"])
    assert keys.get("DynamicUser") == "yes" or keys.get("User") not in (None, "root", "0")
    env = " ".join(v for k, v in unit()["Service"] if k == "Environment")
    assert "SCHEDULER_DB_URL=sqlite:////var/lib/pipebot/pipebot.db" in env


def test_unit_exec_start_script_exists_in_the_project() -> None:
    command = shlex.split(unit_value("Service", "ExecStart"))
    scripts = [c for c in command if c.endswith(".py")]
    assert scripts, command
    installed = Path(unit_value("Service", "WorkingDirectory"))
    for script in scripts:
        relative = Path(script).relative_to(installed)
        assert (ROOT / relative).is_file(), f"{script}: {relative} is not in the project"


# --- Kubernetes --------------------------------------------------------------------------------


def test_manifests_parse_and_name_their_kind() -> None:
    kinds = []
    for path, document in manifests():
        assert {"apiVersion", "kind"} <= document.keys(), path
        if document["kind"] != "Kustomization":
            assert document["metadata"]["name"], path
        kinds.append(document["kind"])
    assert sorted(kinds) == sorted(
        ["ConfigMap", "Deployment", "Kustomization", "PersistentVolumeClaim", "Secret", "Service"]
    )
    listed = manifest("Kustomization")["resources"]
    assert all((K8S / name).is_file() for name in listed)
    assert "secret.example.yaml" not in listed


def test_deployment_is_a_single_replica_recreated() -> None:
    spec = manifest("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > shutdown_grace()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0


def test_probes_hit_served_paths_on_the_container_port(served: dict[str, int]) -> None:
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = container_env()
    assert ports == {"http": int(env["API_PORT"]["value"])}
    assert ports["http"] == int(docker_env()["API_PORT"])
    assert env["API_HOST"]["value"] == "0.0.0.0"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["port"] in ports or get["port"] in ports.values()
        assert_served(served, get["path"])


def test_service_targets_the_container_port_and_pod_labels() -> None:
    service = manifest("Service")["spec"]
    labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    names = {p["name"] for p in container()["ports"]}
    assert [p["targetPort"] for p in service["ports"]] == ["http"] and "http" in names


def test_secrets_come_from_a_secret_and_the_database_from_the_secret_or_the_volume() -> None:
    env = container_env()
    for name in ("DISCORD_TOKEN", "API_TOKEN", "SCHEDULER_DB_URL"):
        assert "value" not in env[name], name
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name
    assert env["SCHEDULER_DB_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    claim = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
    assert manifest("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert docker_env()["SCHEDULER_DB_URL"].startswith("sqlite:////data/")


def test_pipelines_yml_comes_from_a_valid_config_map() -> None:
    config_path = Path(container_env()["PIPELINES_CONFIG"]["value"])
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    config_map = manifest(
        "ConfigMap", volumes[mounts[str(config_path.parent)]]["configMap"]["name"]
    )
    text = config_map["data"][config_path.name]
    config = parse_config(text, source="configmap", validate_schedule=block_validator("UTC"))
    assert config.pipelines


# --- no secrets --------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"^(|<.*|\$.*|\*+|\.\.\..*|….*)$")
"""Values that stand for a secret: empty, <your token>, $VARIABLE, ***, ... or …"""


def deploy_texts() -> Iterator[tuple[Path, str]]:
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            yield path, path.read_text(encoding="utf-8")
    yield ROOT / "README.md", (ROOT / "README.md").read_text(encoding="utf-8")


def findings(text: str) -> list[str]:
    """Secret-looking values in ``text`` (the log redaction's shapes), placeholders aside."""
    found = []
    for pattern in SECRET_PATTERNS:
        for match in pattern.finditer(text):
            value = match.group(0)[len(match.group(1)) :]
            if match.re.groups >= 2:
                value = value[: len(value) - len(match.group(2) or "")]
            if not PLACEHOLDER.match(value.strip("'\"")):
                found.append(match.group(0))
    return found


def test_no_secret_is_committed() -> None:
    assert findings("DISCORD_TOKEN=MTA4NzY1NDMy.GaBcDe.abcdefghijklmnopqrstuvwxyz0123")
    assert findings("postgresql+psycopg://pipebot:hunter2@db/pipebot")
    assert not findings("API_TOKEN=<token> DISCORD_TOKEN=... SCHEDULER_DB_URL=$URL")
    for path, text in deploy_texts():
        assert findings(text) == [], path.name
    secret = next(d for p, d in manifests() if d["kind"] == "Secret")
    assert all(v == "" for v in secret["stringData"].values())
    assert not (DEPLOY / ".env").exists()


def test_the_app_serves_what_the_deployments_point_at(served: dict[str, int]) -> None:
    """Loopback, no token: health, metrics (the scrape annotations) and the status page."""
    assert served["/healthz"] == 200
    assert served["/metrics"] == 200
    assert served["/"] == 200
    annotations = manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(container()["ports"][0]["containerPort"])


# --- docs ----------------------------------------------------------------------------------------


def test_api_doc_lists_every_route_of_the_openapi_document() -> None:
    from api.openapi import openapi_document

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for path, item in openapi_document()["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in text or (
                path == "/api/schedules/health" and "alias `/api/schedules/health`" in text
            ), f"{method.upper()} {path} is not in the README's HTTP API section"


def test_systemd_recipe_moves_every_sink_path_to_the_state_directory() -> None:
    """The README's systemd recipe rewrites pipelines.yml's output paths: none stays relative."""
    doc = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"sed 's#([^#]+)#([^#]+)#' pipelines.yml", doc)
    assert match is not None
    old, new = match.groups()
    rewritten = (ROOT / "pipelines.yml").read_text(encoding="utf-8").replace(old, new)
    paths = re.findall(r"\bpath: ([^,}\s]+)", rewritten)
    assert paths and all(p.startswith("/var/lib/pipebot/") for p in paths), paths
    unit_env = " ".join(v for k, v in unit()["Service"] if k == "Environment")
    assert "/var/lib/pipebot/" in unit_env and unit_value("Service", "StateDirectory") == "pipebot"
    parse_config(rewritten, source="pipelines.yml", validate_schedule=block_validator("UTC"))
