#!/usr/bin/env python3
"""Checks the manifests rendered from helm/session-service and prepares them for
kubernetes-validate. Used by scripts/check-chart.sh (run with the kubernetes-validate
venv's Python, which has PyYAML).

    chart-manifests.py RENDERED.yaml --out FILTERED.yaml [--skip-kind KIND ...]

* Writes every document except the --skip-kind ones to FILTERED.yaml (kinds with no
  built-in Kubernetes schema, e.g. the Prometheus Operator's ServiceMonitor).
* Asserts the chart's invariants that a schema cannot see: the probes target the
  plaintext health port, the shutdown timing fits the grace period, the security
  context is locked down, the ConfigMap/Secret mounts match the environment, the
  migration hook uses the same database Secret, config.toml, extra env and extra
  volumes as the server, only the hook migrates (the Deployment sets
  SESSION__DATABASE__MIGRATE_ON_START=false exactly when the hook exists),
  selectors line up, the egress policy lets the OTLP export out, and no Secret
  object (secret values) is ever rendered.
* Prints one summary line; exits 1 when an invariant is broken.
"""

import argparse
import sys
from urllib.parse import urlsplit

import yaml

CONFIG_FILE = "/etc/session-service/config.toml"
TLS_DIR = "/etc/session-service/tls"
JWT_DIR = "/etc/session-service/jwt"
READINESS_SERVICE = "pixsim.session.v1.SessionService"
MIGRATE_ON_START = "SESSION__DATABASE__MIGRATE_ON_START"
HOOK = "pre-install,pre-upgrade"
HOOK_DELETE_POLICY = "before-hook-creation,hook-succeeded"
# Volumes and environment the chart itself gives the server; everything else in the
# server container comes from extraVolumes/extraVolumeMounts/extraEnv.
CHART_VOLUMES = {"config", "tmp", "jwt", "tls"}
CHART_ENV_PREFIXES = ("SESSION__", "OTEL_")
CHART_ENV = {"DATABASE_URL", "REDIS_URL", "RUST_LOG"}

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container, name):
    e = env_map(container).get(name)
    return None if e is None else e.get("value")


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def is_hook(obj):
    return "helm.sh/hook" in obj["metadata"].get("annotations", {})


def mounted_configmap(pod, container, by_kind):
    """The ConfigMap object mounted at CONFIG_FILE in container, or None."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mount = next((m for m in container.get("volumeMounts", []) if m["mountPath"] == CONFIG_FILE), None)
    if mount is None or mount.get("subPath") != "config.toml":
        return None
    name = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
    return next((d for d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == name), None)


def extra_env(container):
    """Environment entries not set by the chart itself (i.e. from extraEnv)."""
    return [e for e in container.get("env", [])
            if e["name"] not in CHART_ENV and not e["name"].startswith(CHART_ENV_PREFIXES)]


def extra_mounts(pod, container):
    """(mount, volume) pairs of the volumes the chart does not add itself."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return [(m, volumes.get(m["name"])) for m in container.get("volumeMounts", [])
            if m["name"] not in CHART_VOLUMES]


def check_hardened(pod, what):
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{what}: pod runAsNonRoot must be true")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          f"{what}: pod seccompProfile must be RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is False,
          f"{what}: automountServiceAccountToken must be false")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        name = f"{what}/{c['name']}"
        check(sc.get("runAsNonRoot") is True, f"{name}: runAsNonRoot must be true")
        check(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem must be true")
        check(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation must be false")
        check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{name}: must drop ALL capabilities")
        check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
              f"{name}: seccompProfile must be RuntimeDefault")
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        check(len(tmp) == 1 and "emptyDir" in volumes.get(tmp[0]["name"], {}),
              f"{name}: /tmp must be an emptyDir (read-only root filesystem)")


def check_deployment(dep, by_kind):
    pod = dep["spec"]["template"]["spec"]
    check_hardened(pod, "Deployment")
    check(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] in (0, "0", "0%"),
          "Deployment: rollingUpdate.maxUnavailable must be 0")
    check("checksum/config" in dep["spec"]["template"]["metadata"].get("annotations", {}),
          "Deployment: checksum/config annotation missing on the pod template")
    check(dep["spec"]["selector"]["matchLabels"].items()
          <= dep["spec"]["template"]["metadata"]["labels"].items(),
          "Deployment: selector does not match the pod labels")

    c = next(c for c in pod["containers"] if c["name"] == "session-service")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    env = env_map(c)

    # Listeners and probes: probes must target the plaintext health port.
    check("grpc" in ports and "health" in ports, "Deployment: container ports grpc and health required")
    health_listen = env_value(c, "SESSION__SERVER__HEALTH_LISTEN")
    if check(health_listen is not None, "Deployment: SESSION__SERVER__HEALTH_LISTEN must always be set"):
        check(port_of(health_listen) == ports.get("health"),
              "Deployment: SESSION__SERVER__HEALTH_LISTEN does not match the health port")
    listen = env_value(c, "SESSION__SERVER__LISTEN")
    check(listen is not None and port_of(listen) == ports.get("grpc"),
          "Deployment: SESSION__SERVER__LISTEN does not match the grpc port")
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = c.get(kind)
        if probe is None:
            check(kind == "startupProbe", f"Deployment: {kind} missing")
            continue
        grpc = probe.get("grpc")
        if check(grpc is not None, f"Deployment: {kind} must be a native gRPC probe"):
            check(grpc["port"] == ports.get("health"), f"Deployment: {kind} must target the health port")
    if "readinessProbe" in c:
        check(c["readinessProbe"]["grpc"].get("service") == READINESS_SERVICE,
              f"Deployment: readiness must probe {READINESS_SERVICE}")
    if "livenessProbe" in c:
        check(c["livenessProbe"]["grpc"].get("service", "") == "",
              "Deployment: liveness must probe the overall health (\"\")")

    # Shutdown timing: preStop sleep + drain < terminationGracePeriodSeconds.
    grace = env_value(c, "SESSION__SERVER__SHUTDOWN_GRACE_SECS")
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if check(grace is not None, "Deployment: SESSION__SERVER__SHUTDOWN_GRACE_SECS must be set"):
        check(pre_stop + int(grace) < pod["terminationGracePeriodSeconds"],
              "Deployment: preStop sleep + shutdown grace must be below terminationGracePeriodSeconds")

    # Command line and config file.
    mode = env_value(c, "SESSION__AUTH__MODE")
    want_args = ["serve", "--config", CONFIG_FILE] + (["--insecure-allow-no-auth"] if mode == "none" else [])
    check(c.get("args") == want_args, f"Deployment: args must be {want_args}, got {c.get('args')}")
    check(mode in ("none", "jwt", "mtls-trusted-header"), f"Deployment: bad SESSION__AUTH__MODE {mode!r}")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    cfg = mounts.get(CONFIG_FILE)
    if check(cfg is not None, f"Deployment: {CONFIG_FILE} not mounted"):
        cm = mounted_configmap(pod, c, by_kind)
        if check(cm is not None and "config.toml" in cm.get("data", {}),
                 "Deployment: config.toml ConfigMap missing"):
            # A hook object would be deleted after the hooks, or not exist yet.
            check(not is_hook(cm), "Deployment: its ConfigMap must be a regular release object, not a hook")

    # Rate limit: the server takes a float, the chart must pass a plain number.
    per_second = env_value(c, "SESSION__RATE_LIMIT__PER_SECOND")
    if per_second is not None:
        try:
            ok = float(per_second) >= 0 and "e" not in per_second.lower()
        except ValueError:
            ok = False
        check(ok, f"Deployment: SESSION__RATE_LIMIT__PER_SECOND must be a plain number >= 0, got {per_second!r}")

    # Secrets come from existing Secrets only, and their files are mounted.
    db = env.get("DATABASE_URL", {})
    check("secretKeyRef" in db.get("valueFrom", {}), "Deployment: DATABASE_URL must come from a Secret")
    if "REDIS_URL" in env:
        check("secretKeyRef" in env["REDIS_URL"].get("valueFrom", {}), "Deployment: REDIS_URL must come from a Secret")
    tls_env = [n for n in env if n.startswith("SESSION__TLS__")]
    if tls_env:
        check(TLS_DIR in mounts and "secret" in volumes[mounts[TLS_DIR]["name"]],
              f"Deployment: TLS files configured but no Secret mounted at {TLS_DIR}")
        for n in tls_env:
            check(env[n]["value"].startswith(TLS_DIR + "/"), f"Deployment: {n} outside {TLS_DIR}")
    if mode == "mtls-trusted-header":
        check("SESSION__TLS__CLIENT_CA_FILE" in env, "Deployment: mtls-trusted-header needs a client CA")
    if mode == "jwt":
        jwt_env = [n for n in ("SESSION__AUTH__JWT__HS256_SECRET_FILE", "SESSION__AUTH__JWT__PUBLIC_KEYS_DIR") if n in env]
        check(len(jwt_env) == 1, "Deployment: jwt mode needs exactly one of HS256_SECRET_FILE / PUBLIC_KEYS_DIR")
        check(JWT_DIR in mounts and "secret" in volumes[mounts[JWT_DIR]["name"]],
              f"Deployment: jwt mode needs the key Secret mounted at {JWT_DIR}")

    # Metrics: env, container port and Service port go together.
    metrics_on = "SESSION__METRICS__LISTEN" in env
    check(metrics_on == ("metrics" in ports), "Deployment: SESSION__METRICS__LISTEN and the metrics port disagree")
    if metrics_on:
        check(port_of(env_value(c, "SESSION__METRICS__LISTEN")) == ports["metrics"],
              "Deployment: SESSION__METRICS__LISTEN does not match the metrics port")
    return c, ports


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rendered")
    ap.add_argument("--out", required=True)
    ap.add_argument("--skip-kind", action="append", default=[])
    args = ap.parse_args()

    with open(args.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    check("Secret" not in by_kind, "the chart must never render a Secret (secret values)")
    deps = by_kind.get("Deployment", [])
    if check(len(deps) == 1, f"expected one Deployment, got {len(deps)}"):
        dep = deps[0]
        selector = dep["spec"]["selector"]["matchLabels"]
        container, ports = check_deployment(dep, by_kind)
        db_ref = env_map(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]

        svc = by_kind.get("Service", [None])[0]
        if check(svc is not None, "Service missing"):
            check(svc["spec"]["selector"] == selector, "Service: selector differs from the Deployment's")
            sports = {p["name"]: p for p in svc["spec"]["ports"]}
            g = sports.get("grpc", {})
            check(g.get("appProtocol") == "grpc" and g.get("targetPort") == "grpc",
                  "Service: port grpc (appProtocol grpc, targetPort grpc) missing")
            check(("metrics" in sports) == ("metrics" in ports), "Service: metrics port and container disagree")
            check("health" not in sports, "Service: the plaintext health port must not be exposed")
            for sm in by_kind.get("ServiceMonitor", []):
                check(all(e.get("port") in sports for e in sm["spec"]["endpoints"]),
                      "ServiceMonitor: endpoint port is not a Service port")
                check(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(),
                      "ServiceMonitor: selector does not match the Service labels")

        dep_pod = dep["spec"]["template"]["spec"]
        dep_cm = mounted_configmap(dep_pod, container, by_kind)
        jobs = by_kind.get("Job", [])
        check(len(jobs) <= 1, f"expected at most one (migration) Job, got {len(jobs)}")
        # Only the hook migrates: with the hook, the server must not migrate at start
        # (an older image after `helm rollback` would stop on a newer migration);
        # without it, the server's default (migrate at start) must stay.
        migrate_on_start = env_value(container, MIGRATE_ON_START)
        if jobs:
            check(migrate_on_start == "false",
                  f"Deployment: {MIGRATE_ON_START} must be \"false\" while the migration hook runs, "
                  f"got {migrate_on_start!r}")
        else:
            check(MIGRATE_ON_START not in env_map(container),
                  f"Deployment: {MIGRATE_ON_START} must be unset without the migration hook (nothing else migrates)")
        for job in jobs:
            ann = job["metadata"].get("annotations", {})
            check(ann.get("helm.sh/hook") == HOOK, f"Job: must be a {HOOK} hook")
            check(ann.get("helm.sh/hook-delete-policy") == HOOK_DELETE_POLICY,
                  f"Job: hook-delete-policy must be {HOOK_DELETE_POLICY}")
            pod = job["spec"]["template"]["spec"]
            check_hardened(pod, "Job")
            jc = pod["containers"][0]
            want_args = ["migrate", "up", "--config", CONFIG_FILE]
            check(jc.get("args") == want_args, f"Job: args must be {want_args}, got {jc.get('args')}")
            check(env_map(jc).get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef") == db_ref,
                  "Job: DATABASE_URL must use the Deployment's Secret reference")
            labels = job["spec"]["template"]["metadata"].get("labels", {})
            check(not selector.items() <= labels.items(), "Job: pods must not match the Service/PDB selector")
            # config.toml: a hook ConfigMap (the release's own one does not exist yet on
            # first install, and still has the old content during pre-upgrade), created
            # before the Job, with the server's content.
            job_cm = mounted_configmap(pod, jc, by_kind)
            if check(job_cm is not None, f"Job: {CONFIG_FILE} must be mounted (subPath config.toml) from a ConfigMap"):
                cm_ann = job_cm["metadata"].get("annotations", {})
                check(cm_ann.get("helm.sh/hook") == HOOK, f"Job: its ConfigMap must be a {HOOK} hook")
                check(cm_ann.get("helm.sh/hook-delete-policy") == HOOK_DELETE_POLICY,
                      f"Job: its ConfigMap's hook-delete-policy must be {HOOK_DELETE_POLICY}")
                check(int(cm_ann.get("helm.sh/hook-weight", "0")) < int(ann.get("helm.sh/hook-weight", "0")),
                      "Job: its ConfigMap must have a lower hook-weight than the Job (created first)")
                check(dep_cm is not None and job_cm.get("data") == dep_cm.get("data"),
                      "Job: its config.toml differs from the Deployment's")
            # extraEnv and extraVolumes/extraVolumeMounts reach the Job as well.
            jenv = env_map(jc)
            for e in extra_env(container):
                check(jenv.get(e["name"]) == e, f"Job: extra env {e['name']} of the Deployment missing or different")
            jmounts = {(m["name"], m["mountPath"]): (m, v) for m, v in extra_mounts(pod, jc)}
            for m, v in extra_mounts(dep_pod, container):
                check(jmounts.get((m["name"], m["mountPath"])) == (m, v),
                      f"Job: extra volume {m['name']} at {m['mountPath']} of the Deployment missing or different")

        for pdb in by_kind.get("PodDisruptionBudget", []):
            check(pdb["spec"]["selector"]["matchLabels"] == selector, "PDB: selector differs from the Deployment's")
        for hpa in by_kind.get("HorizontalPodAutoscaler", []):
            check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "HPA: wrong scale target")
            check("replicas" not in dep["spec"], "Deployment: replicas must be unset when the HPA is on")
        otlp = env_value(container, "OTEL_EXPORTER_OTLP_ENDPOINT")
        for np in by_kind.get("NetworkPolicy", []):
            check(np["spec"]["podSelector"]["matchLabels"] == selector, "NetworkPolicy: podSelector differs")
            for rule in np["spec"].get("ingress", []):
                for p in rule.get("ports", []):
                    check(p["port"] in ports, f"NetworkPolicy: ingress port {p['port']} is not a container port")
            if otlp and "Egress" in np["spec"].get("policyTypes", []):
                # OTLP over gRPC (the only exporter): the endpoint's port must get out.
                u = urlsplit(otlp)
                port = u.port or (443 if u.scheme == "https" else 80)
                check(any("ports" not in r or any(p.get("port") == port for p in r["ports"])
                          for r in np["spec"].get("egress", [])),
                      f"NetworkPolicy: egress does not allow the OTLP endpoint's port {port}")

    kept = [d for d in docs if d["kind"] not in args.skip_kind]
    skipped = [d["kind"] for d in docs if d["kind"] in args.skip_kind]
    with open(args.out, "w") as f:
        yaml.safe_dump_all(kept, f, sort_keys=False)

    kinds = ", ".join(sorted(d["kind"] for d in kept))
    note = f"; skipped (no built-in schema): {', '.join(skipped)}" if skipped else ""
    if errors:
        for e in errors:
            print(f"  INVARIANT: {e}")
        print(f"  {len(errors)} invariant(s) broken")
        return 1
    print(f"  {len(kept)} objects [{kinds}]{note}; invariants OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
