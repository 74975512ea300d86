#!/usr/bin/env python3
"""Runs the real binary on the configuration a rendered chart gives the server, so a
setting the chart sets under a name the server does not know fails CI.

    chart-config.py RENDERED.yaml BINARY

Takes the container args and environment (Secret-backed variables get placeholder
values) and the mounted ConfigMap's config.toml, then runs
`BINARY --config <config.toml> config`, which loads and validates every layer the
way `serve` and `migrate` do and exits non-zero naming the bad key. Does so for the
Deployment's server and, when rendered, for the migration hook Job (its own env,
e.g. extraEnv, and its hook copy of config.toml).
"""

import os
import subprocess
import sys
import tempfile

import yaml

CONFIG_FILE = "/etc/session-service/config.toml"
PLACEHOLDERS = {
    "DATABASE_URL": "postgres://user:secret@db:5432/sessions",
    "REDIS_URL": "redis://redis:6379",
}


def mounted_config(docs, workload):
    """config.toml of the ConfigMap mounted at CONFIG_FILE in the workload's container."""
    pod = workload["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0].get("volumeMounts", []) if m["mountPath"] == CONFIG_FILE)
    volume = next(v for v in pod.get("volumes", []) if v["name"] == mount["name"])
    name = volume["configMap"]["name"]
    configmap = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
    return configmap["data"]["config.toml"]


def check(rendered, binary, what, container, config_toml):
    env = {"PATH": os.environ.get("PATH", "")}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            env[e["name"]] = PLACEHOLDERS.get(e["name"], "placeholder")
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "config.toml")
        with open(config, "w") as f:
            f.write(config_toml)
        args = container.get("args", [])
        flags = [a for a in args if a.startswith("--") and a != "--config" and not a.startswith("--config=")]
        if "--insecure-allow-no-auth" in flags:
            env["SESSION__SERVER__INSECURE_ALLOW_NO_AUTH"] = "true"
        result = subprocess.run([binary, "--config", config, "config"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"chart-config: {rendered}: the {what} refuses the chart's settings:\n{result.stderr}", file=sys.stderr)
        return 1
    print(f"chart-config: {os.path.basename(rendered)}: the {what} accepts the chart's settings")
    return 0


def main(rendered, binary):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    failed = 0
    for kind, what in (("Deployment", "server"), ("Job", "migration Job")):
        for workload in (d for d in docs if d["kind"] == kind):
            container = workload["spec"]["template"]["spec"]["containers"][0]
            failed |= check(rendered, binary, what, container, mounted_config(docs, workload))
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
