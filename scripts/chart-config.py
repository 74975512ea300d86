#!/usr/bin/env python3
"""Runs the real binary on the configuration a rendered chart gives the server, so a
setting the chart sets under a name the server does not know fails CI.

    chart-config.py RENDERED.yaml BINARY

Takes the Deployment's container args and environment (Secret-backed variables get
placeholder values) and the ConfigMap's config.toml, then runs
`BINARY --config <config.toml> config`, which loads and validates every layer the
way `serve` does and exits non-zero naming the bad key.
"""

import os
import subprocess
import sys
import tempfile

import yaml

PLACEHOLDERS = {
    "DATABASE_URL": "postgres://user:secret@db:5432/sessions",
    "REDIS_URL": "redis://redis:6379",
}


def main(rendered, binary):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {"PATH": os.environ.get("PATH", "")}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            env[e["name"]] = PLACEHOLDERS.get(e["name"], "placeholder")
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "config.toml")
        with open(config, "w") as f:
            f.write(configmap["data"]["config.toml"])
        args = container.get("args", [])
        flags = [a for a in args if a.startswith("--") and a != "--config" and not a.startswith("--config=")]
        if "--insecure-allow-no-auth" in flags:
            env["SESSION__SERVER__INSECURE_ALLOW_NO_AUTH"] = "true"
        result = subprocess.run([binary, "--config", config, "config"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"chart-config: {rendered}: the server refuses the chart's settings:\n{result.stderr}", file=sys.stderr)
        return 1
    print(f"chart-config: {os.path.basename(rendered)}: the server accepts the chart's settings")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
