"""deploy/kubernetes: every manifest, and what the Kustomize base and the example overlay render, is valid
against the Kubernetes schemas (kubernetes-validate, which bundles them: no network), and the planner and
worker containers run real granny command lines (parsed by granny's own argument parser)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from granny.cli import build_parser, planner_config
from granny.config import parse_address

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests promise to work on (docs/operations.md)
CLUSTER_SCOPED = {"Namespace"}


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def validate(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        for version in (K8S_VERSION, kubernetes_validate.latest_version()):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: "
                                     f"{exc.message} at {'.'.join(map(str, exc.path))}") from None


def render(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIR``; without kubectl, the base only, by the few rules it uses."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return documents(proc.stdout)
    if directory != BASE:
        pytest.skip("no kubectl here to render an overlay with (the base is checked without it)")
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "resources", "images"}, \
        "the base uses more of Kustomize than this fallback renders"
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kustomization.get("images", [])}
    docs = [d for name in kustomization["resources"] for d in documents((BASE / name).read_text())]
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for container in pod_spec(doc).get("containers", []) + pod_spec(doc).get("initContainers", []):
            container["image"] = images.get(container["image"], container["image"])
    return docs


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc.get("spec", {}).get("template", {}).get("spec", {}))


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(doc: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    return next(c for c in pod_spec(doc)["initContainers" if init else "containers"] if c["name"] == name)


def cli_args(c: dict[str, Any]) -> argparse.Namespace:
    """The container's granny command line (the image's entrypoint is ``granny``), parsed as granny does;
    ``$(VAR)`` is expanded from the container's env, as the kubelet would."""
    env = {e["name"]: e.get("value", f"<{e['name']}>") for e in c.get("env", [])}
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], a) for a in c.get("command", []) + c["args"]]
    return build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def overlay_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The overlay as an operator has it: with its two credential files, in a copy of deploy/kubernetes
    (they are never committed)."""
    root = tmp_path_factory.mktemp("deploy") / "kubernetes"
    shutil.copytree(KUBE, root)
    for name in ("cluster-secret.txt", "api-token.txt"):
        (root / "overlays" / "example" / name).write_text(os.urandom(16).hex())
    return root / "overlays" / "example"


def test_every_manifest_file_is_valid() -> None:
    files = [p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"]
    assert {p.name for p in files} == set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]), \
        "a manifest in base/ that the kustomization does not list, or the other way round"
    for path in files:
        validate(documents(path.read_text()))


def test_the_base_renders_to_valid_resources() -> None:
    docs = render(BASE)
    validate(docs)
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [("DaemonSet", "granny-worker"), ("Namespace", "granny"), ("Secret", "granny-secret"),
                     ("Secret", "granny-token"), ("Service", "granny-planner"), ("StatefulSet", "granny-planner")]
    assert all(d["metadata"].get("namespace") == "granny" for d in docs if d["kind"] != "Namespace")


def test_the_example_overlay_renders_to_valid_resources(overlay_copy: Path) -> None:
    docs = render(overlay_copy)
    validate(docs)
    secret = one(docs, "Secret", "granny-secret")
    assert "stringData" not in secret and set(secret["data"]) == {"secret"}, "the placeholder was not replaced"
    worker = one(docs, "DaemonSet", "granny-worker")
    assert container(worker, "worker")["image"].startswith("registry.example.com/")
    assert cli_args(container(worker, "worker")).command == "worker"


def test_the_planner_runs_a_real_planner_command_with_its_data_on_the_volume() -> None:
    docs = render(BASE)
    sts = one(docs, "StatefulSet", "granny-planner")
    assert sts["spec"]["replicas"] == 1, "one planner per cluster"
    planner = container(sts, "planner")
    args = cli_args(planner)
    assert args.command == "planner" and args.bind == "0.0.0.0"
    config = planner_config(args)  # the values themselves are accepted too
    mounts = {m["name"]: m["mountPath"] for m in planner["volumeMounts"]}
    assert str(config.data_dir).startswith(mounts["data"] + "/"), "the journal must be on the persistent volume"
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    ports = {p["name"]: p["containerPort"] for p in planner["ports"]}
    assert (ports["rpc"], ports["http"]) == (args.port, args.http_port)

    service = one(docs, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None", "headless: the planner's store listens on ports chosen at run time"
    assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


def test_the_workers_run_a_real_worker_command_on_labelled_nodes_on_the_host_network() -> None:
    docs = render(BASE)
    ds = one(docs, "DaemonSet", "granny-worker")
    spec = pod_spec(ds)
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["nodeSelector"] == {"granny.io/worker": "true"}
    worker = container(ds, "worker")
    args = cli_args(worker)
    assert args.command == "worker" and args.host_id == "<NODE_NAME>"
    host, port = parse_address(args.planner, "--planner")
    service = one(docs, "Service", host)
    assert port in [p["port"] for p in service["spec"]["ports"] if p["name"] == "rpc"]
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    secret_volume = mounts[str(Path(args.secret_file).parent)]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[secret_volume]["secret"]["secretName"] == "granny-secret"
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


def known_env_names() -> set[str]:
    return {name for path in (REPO / "src" / "granny").rglob("*.py")
            for name in re.findall(r"GRANNY_[A-Z_]+", path.read_text())}


def test_every_granny_variable_the_manifests_set_is_one_granny_reads() -> None:
    known = known_env_names()
    for d in render(BASE):
        for c in pod_spec(d).get("containers", []):
            for e in c.get("env", []):
                if e["name"].startswith("GRANNY_"):
                    assert e["name"] in known, f"{d['kind']}/{c['name']} sets {e['name']}, which granny never reads"


def run_credentials_script(tmp_path: Path, secret: str, token: str) -> subprocess.CompletedProcess[str]:
    """The planner's init container, its paths moved under ``tmp_path``."""
    script = container(one(render(BASE), "StatefulSet", "granny-planner"), "credentials", init=True)
    assert script["command"][:2] == ["sh", "-ec"]
    for name, value in (("secret", secret), ("token", token)):
        (tmp_path / "etc" / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "etc" / name / name).write_text(value)
    body = script["command"][2].replace("/etc/granny/", f"{tmp_path}/etc/").replace("/var/lib/granny", f"{tmp_path}/var")
    return subprocess.run(["sh", "-ec", body], capture_output=True, text=True, timeout=30)


def test_the_init_container_refuses_placeholder_credentials(tmp_path: Path) -> None:
    base = {d["metadata"]["name"]: d["stringData"] for d in render(BASE) if d["kind"] == "Secret"}
    proc = run_credentials_script(tmp_path, base["granny-secret"]["secret"], "a-real-token")
    assert proc.returncode != 0 and "granny-secret" in proc.stderr
    assert not (tmp_path / "var" / "data" / "secret").exists()


def test_the_init_container_puts_the_credentials_where_the_planner_reads_them(tmp_path: Path) -> None:
    from granny.config import Config

    proc = run_credentials_script(tmp_path, "s3cret", "t0ken")
    assert proc.returncode == 0, proc.stderr
    planner = container(one(render(BASE), "StatefulSet", "granny-planner"), "planner")
    data_dir = str(planner_config(cli_args(planner)).data_dir).replace("/var/lib/granny", f"{tmp_path}/var")
    config = Config(data_dir=Path(data_dir))
    assert config.secret_path.read_text() == "s3cret" and config.token_path.read_text() == "t0ken"
    assert stat.S_IMODE(config.secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.data_dir.stat().st_mode) == 0o700
