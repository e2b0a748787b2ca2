"""deploy/ and grafana/ are wired together: no Docker engine or cluster here, so parse the
files and check that images, ports, mounted paths, service names and commands agree with
each other, with the repository, and with Volley's own defaults and CLI."""

from __future__ import annotations

import configparser
import json
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

import engine.runtime.supervisor
from engine import cli
from engine.config import Settings, load_settings
from tests.support.dockerfile import instructions

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "kubernetes" / "volley.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "volley.service"
VOLLEY_TOML = DEPLOY / "volley.toml"
DASHBOARD = REPO / "grafana" / "dashboards" / "volley.json"

DEFAULT_METRICS_PORT = int(Settings().metrics_listen.rpartition(":")[2])
CONFIG_IN_IMAGE = "/etc/volley/volley.toml"
SMTPD_PORT = 2525  # the listener's port in deploy/volley.toml


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def k8s() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object per kind expected"
    return by_kind


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"use the exec form: {args}"
    return [str(v) for v in value]


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def mount(spec: str) -> tuple[str, str]:
    source, target, *_ = spec.split(":")
    return source, target


def run_cli(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, config: Path = VOLLEY_TOML
) -> Settings:
    """Run `volley <argv>` for real up to the point it would start the supervisor, with
    the in-image config path pointing at `config`; return the Settings it would run with."""
    got: list[Settings] = []

    def fake_run(settings: Settings, version: str = "0", reload: object = None) -> int:
        got.append(settings)
        return 0

    monkeypatch.setattr(engine.runtime.supervisor, "run", fake_run)
    argv = [str(config) if a == CONFIG_IN_IMAGE else a for a in argv]
    assert cli.main(argv) == 0
    (settings,) = got
    return settings


def console_script() -> str:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["volley"] == "engine.cli:main"
    return "volley"


# -- the shared Volley config -----------------------------------------------------------------
def test_deploy_config_is_valid_and_listens_on_the_default_port() -> None:
    s = load_settings(VOLLEY_TOML)
    assert port_of(s.metrics_listen) == DEFAULT_METRICS_PORT == 9108
    assert s.metrics_listen.startswith("0.0.0.0:")  # scraped from another container
    assert s.spool_path.is_relative_to("/var/lib/volley")
    assert s.log_path.is_relative_to("/var/lib/volley")
    # Applications submit from other containers: all interfaces, relaying for loopback
    # only unless configured (never an open relay).
    assert [port_of(a) for a in s.smtpd.listen] == [SMTPD_PORT]
    assert s.smtpd.listen[0].startswith("0.0.0.0:")
    assert s.smtpd.relay_networks == ("127.0.0.0/8", "::1/128")


# -- Dockerfile -------------------------------------------------------------------------------
def test_dockerfile_copies_what_exists_and_runs_volley(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = instructions()
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11")
    copies = [args.split() for word, args in steps if word == "COPY"]
    for *sources, _dest in copies:
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: not in the repository"
    assert ["deploy/volley.toml", CONFIG_IN_IMAGE] in copies
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for *sources, _dest in copies:  # the build context sends everything COPY needs
        for src in sources:
            assert f"!{src}" in ignore or f"!{src}/" in ignore, src
    expose = [int(p) for word, args in steps if word == "EXPOSE" for p in args.split()]
    assert expose == [DEFAULT_METRICS_PORT, SMTPD_PORT]
    (entry,) = [exec_form(a) for w, a in steps if w == "ENTRYPOINT"]
    (cmd,) = [exec_form(a) for w, a in steps if w == "CMD"]
    assert entry == [console_script()]
    settings = run_cli(cmd, monkeypatch)
    assert settings == load_settings(VOLLEY_TOML)
    volumes = [exec_form(a) for w, a in steps if w == "VOLUME"]
    assert volumes == [["/var/lib/volley"]]


# -- docker compose ---------------------------------------------------------------------------
def test_compose_services_images_and_ports() -> None:
    services = compose()["services"]
    assert set(services) == {"volley", "prometheus", "grafana"}
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
    build = services["volley"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO and (context / build["dockerfile"]).resolve() == DOCKERFILE
    k8s_image = k8s()["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert services["volley"]["image"] == k8s_image
    published = {
        name: [int(p.rpartition(":")[2]) for p in svc.get("ports", [])]
        for name, svc in services.items()
    }
    assert published == {
        "volley": [DEFAULT_METRICS_PORT, SMTPD_PORT],
        "prometheus": [9090],
        "grafana": [3000],
    }
    for svc in services.values():  # published on the host's loopback only
        assert all(p.startswith("127.0.0.1:") for p in svc.get("ports", []))
    # Longer than the drain, so SIGTERM lets in-flight transactions finish.
    grace = int(services["volley"]["stop_grace_period"].removesuffix("s"))
    assert grace > load_settings(VOLLEY_TOML).drain_timeout


def test_compose_mounts_exist_in_the_repository() -> None:
    data = compose()
    named = set(data["volumes"])
    for name, svc in data["services"].items():
        for spec in svc.get("volumes", []):
            source, target = mount(spec)
            assert target.startswith("/"), spec
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is not in the repository"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
    volley_mounts = dict(reversed(mount(s)) for s in data["services"]["volley"]["volumes"])
    assert (DEPLOY / volley_mounts[CONFIG_IN_IMAGE]).resolve() == VOLLEY_TOML
    assert volley_mounts["/var/lib/volley"] in named  # the spool survives `down`/`up`


def test_prometheus_scrapes_volley_and_loads_the_rules() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "volley"]
    (target,) = [t for sc in job["static_configs"] for t in sc["targets"]]
    host, _, port = target.rpartition(":")
    assert host == "volley" and host in compose()["services"]
    assert int(port) == DEFAULT_METRICS_PORT == port_of(load_settings(VOLLEY_TOML).metrics_listen)
    prom_mounts = dict(reversed(mount(s)) for s in compose()["services"]["prometheus"]["volumes"])
    config_target = next(t for t, s in prom_mounts.items() if s.endswith("prometheus.yml"))
    for rule_file in prom["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).exists()
        in_container = str(PurePosixPath(config_target).parent / rule_file)
        assert (DEPLOY / prom_mounts[in_container]).resolve() == DEPLOY / "prometheus" / rule_file


def test_grafana_provisioning_finds_the_dashboard_and_prometheus() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = {
        target: (DEPLOY / source).resolve() for source, target in map(mount, grafana["volumes"])
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == REPO / "grafana" / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "volley.yaml").read_text())[
        "providers"
    ]
    dash_dir = mounts[provider["options"]["path"]]
    assert (dash_dir / "volley.json").resolve() == DASHBOARD
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (mounts[str(PurePosixPath(home).parent)] / PurePosixPath(home).name).exists()
    (ds,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": ds["uid"]}, p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert p.get("description"), f"{p['title']}: say what the panel answers"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"instance", "domain"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


# -- Kubernetes -------------------------------------------------------------------------------
def test_kubernetes_statefulset_wiring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    objs = k8s()
    assert set(objs) == {"ConfigMap", "Service", "StatefulSet"}
    sts, svc, cm = objs["StatefulSet"], objs["Service"], objs["ConfigMap"]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert spec["serviceName"] == svc["metadata"]["name"] and svc["spec"]["clusterIP"] == "None"

    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    metrics_port, smtp_port = svc["spec"]["ports"]
    assert ports[metrics_port["targetPort"]] == metrics_port["port"] == DEFAULT_METRICS_PORT
    assert ports[smtp_port["targetPort"]] == smtp_port["port"] == SMTPD_PORT
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    annotations = svc["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == DEFAULT_METRICS_PORT

    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"]: c for c in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for name in mounts.values():
        assert name in volumes or name in claims, name
    assert volumes[mounts["/etc/volley"]]["configMap"]["name"] == cm["metadata"]["name"]
    assert mounts["/var/lib/volley"] in claims  # the spool lives on the PersistentVolumeClaim
    claim = claims[mounts["/var/lib/volley"]]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and claim["resources"]["requests"]["storage"]

    # The config the pod reads is a valid Volley config whose port and paths fit the pod.
    path = PurePosixPath(CONFIG_IN_IMAGE)
    assert str(path.parent) in mounts and path.name in cm["data"]
    config = tmp_path / path.name
    config.write_text(cm["data"][path.name])
    settings = load_settings(config)
    assert port_of(settings.metrics_listen) == DEFAULT_METRICS_PORT
    assert settings.spool_path.is_relative_to("/var/lib/volley")
    assert settings.workers == 2  # os.cpu_count() would be the node's, not the pod's
    assert pod["terminationGracePeriodSeconds"] > settings.drain_timeout
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's `volley` user
    assert "--uid 10001" in DOCKERFILE.read_text()
    entry = next(exec_form(a) for w, a in instructions() if w == "ENTRYPOINT")
    assert entry == [console_script()]
    assert run_cli(container["args"], monkeypatch, config) == settings


# -- systemd ----------------------------------------------------------------------------------
def test_systemd_unit_runs_the_real_command(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # case-sensitive keys
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].startswith("/") and PurePosixPath(argv[0]).name == console_script()
    settings = run_cli(argv[1:], monkeypatch)
    assert settings == load_settings(VOLLEY_TOML)
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > settings.drain_timeout
    state = PurePosixPath("/var/lib") / service["StateDirectory"]
    assert settings.spool_path.is_relative_to(state) and settings.log_path.is_relative_to(state)
    assert str(state) in service["ReadWritePaths"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_sendmail_drop_in_gives_the_drop_group_reach_and_nothing_more() -> None:
    """deploy/systemd/volley.service.d/sendmail.conf, as README "Sendmail" installs it
    (tests/integration/test_sendmail_drop_permissions.py runs Volley the same way)."""
    drop_in = configparser.ConfigParser(strict=False, interpolation=None)
    drop_in.optionxform = str  # type: ignore[assignment,method-assign]
    drop_in.read_string((DEPLOY / "systemd" / "volley.service.d" / "sendmail.conf").read_text())
    service = drop_in["Service"]
    assert service["SupplementaryGroups"] == "volley-drop"
    umask = int(service["UMask"], 8)
    assert umask & 0o007 == 0o007 and umask & 0o020  # others nothing, the group no write
    state = int(service["StateDirectoryMode"], 8)
    assert state & 0o001 and not state & 0o044  # others pass through, nobody else lists
    readme = (REPO / "README.md").read_text()
    assert "groupadd --system volley-drop" in readme
    assert "deploy/systemd/volley.service.d/sendmail.conf" in readme
