"""The deploy files cannot be started here (no Docker engine), so check what can be checked:
the compose file's shape, and the Dockerfile's own commands run against this checkout."""
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _dockerfile():
    env, runs, cmd = {}, [], None
    lines = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    for line in lines:
        line = line.strip()
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
        elif line.startswith("RUN "):
            runs.append(line[4:])
        elif line.startswith("CMD "):
            cmd = yaml.safe_load(line[4:])
    return env, runs, cmd


def _production_env(tmp_path, **extra):
    env = dict(os.environ)
    env.pop("DJANGO_DEBUG", None)
    env.update(
        DJANGO_SETTINGS_MODULE="apps.samplescope.settings.production",
        DJANGO_SECRET_KEY="deploy-test-secret-key-0123456789",
        DATA_DIR=str(tmp_path / "data"),
        STATIC_ROOT=str(tmp_path / "static"),
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
    )
    env.update(extra)
    return env


def test_compose_runs_one_image_for_web_worker_and_beat():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"web", "worker", "beat", "redis"}
    images = {services[name]["image"] for name in ("web", "worker", "beat")}
    assert images == {"samplescope:latest"}
    assert services["web"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for name in ("web", "worker", "beat"):
        assert "samplescope-data:/data" in services[name]["volumes"]
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["worker"]["command"][:4] == ["celery", "-A", "apps.samplescope", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "apps.samplescope", "beat"]
    assert services["web"]["command"][:2] == ["gunicorn", "apps.samplescope.wsgi"]
    assert set(compose["volumes"]) == {"samplescope-data", "redis-data"}


def test_dockerfile_collectstatic_runs_and_collects_vendored_js(tmp_path):
    env, runs, _ = _dockerfile()
    assert env["DJANGO_SETTINGS_MODULE"] == "apps.samplescope.settings.production"
    collect = next(r for r in runs if "collectstatic" in r).split("&&")[0].strip()
    assignments, command = [], shlex.split(collect)
    while "=" in command[0]:
        assignments.append(command.pop(0))
    run_env = _production_env(tmp_path, **dict(a.split("=", 1) for a in assignments))
    run_env["DATA_DIR"] = str(tmp_path / "build-data")
    command[0] = sys.executable if command[0] == "python" else command[0]
    result = subprocess.run(command, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    collected = tmp_path / "static"
    assert (collected / "vendor" / "htmx-2.0.11.min.js").exists()
    assert (collected / "vendor" / "plotly-cartesian-3.7.0.min.js").exists()
    assert (collected / "staticfiles.json").exists()  # manifest storage in production


def test_dockerfile_cmd_is_a_valid_gunicorn_config(tmp_path):
    _, _, cmd = _dockerfile()
    assert cmd[0] == "gunicorn"
    result = subprocess.run([str(Path(sys.executable).parent / "gunicorn"), *cmd[1:], "--check-config"],
                            cwd=ROOT, env=_production_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout


def test_production_celery_app_finds_its_tasks(tmp_path):
    code = "from apps.samplescope.celery import app; app.loader.import_default_modules(); print(sorted(app.tasks))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_production_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "core.worker_roundtrip" in result.stdout


def _settings_import(env):
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_production_refuses_without_a_secret_key(tmp_path):
    env = _production_env(tmp_path)
    env.pop("DJANGO_SECRET_KEY")
    result = _settings_import(env)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_debug(tmp_path):
    result = _settings_import(_production_env(tmp_path, DJANGO_DEBUG="true"))
    assert result.returncode != 0 and "DJANGO_DEBUG must be off" in result.stderr


def test_production_starts_with_a_secret_and_debug_off(tmp_path):
    result = _settings_import(_production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
