"""The deploy files cannot be started here (no Docker engine), so check what can be checked:
the compose file's shape, and the Dockerfile's own commands run against this checkout."""
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GOOD_SECRET_KEY = "deploy-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"  # 60 characters, 38 different


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
        DJANGO_SECRET_KEY=GOOD_SECRET_KEY,
        DATA_DIR=str(tmp_path / "data"),
        STATIC_ROOT=str(tmp_path / "static"),
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
    )
    env.update(extra)
    return env


def test_compose_runs_one_image_for_web_workers_and_beat():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"web", "worker", "batch-worker", "beat", "redis"}
    images = {services[name]["image"] for name in ("web", "worker", "batch-worker", "beat")}
    assert images == {"samplescope:latest"}
    assert services["web"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for name in ("web", "worker", "batch-worker", "beat"):
        assert "samplescope-data:/data" in services[name]["volumes"]
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["worker"]["command"][:4] == ["celery", "-A", "apps.samplescope", "worker"]
    # Batch scoring has a worker and queue of its own: long CSV jobs never hold the fallbacks' slots.
    assert services["batch-worker"]["command"][:4] == ["celery", "-A", "apps.samplescope", "worker"]
    queues = {name: services[name]["command"][services[name]["command"].index("-Q") + 1]
              for name in ("worker", "batch-worker")}
    assert queues == {"worker": "celery", "batch-worker": "batch"}
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
    assert (collected / "vendor" / "plotly-basic-3.7.0.min.js").exists()
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


def test_production_refuses_the_placeholder_secret_from_env_example(tmp_path):
    example = dict(line.split("=", 1) for line in (DEPLOY / "env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    result = _settings_import(_production_env(tmp_path, DJANGO_SECRET_KEY=example["DJANGO_SECRET_KEY"]))
    assert result.returncode != 0 and "placeholder" in result.stderr


def test_dockerignore_keeps_secrets_data_and_caches_out_of_the_image():
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    assert {"deploy/.env", "var", ".git", ".venv", "**/__pycache__", "**/*.sqlite3"} <= lines
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["web"]["build"]["context"] == ".."  # the root, where .dockerignore is read


def test_compose_health_check_passes_against_production_settings(tmp_path):
    """Start gunicorn as the image does (production settings, a real ALLOWED_HOSTS, HTTPS redirect on) and
    run the compose health check's own command against it."""
    import socket
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _production_env(tmp_path, DJANGO_ALLOWED_HOSTS="samplescope.internal.example.com")  # HTTPS defaults
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "apps.samplescope.wsgi", "--bind",
                               f"127.0.0.1:{port}", "--workers", "1"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except urllib.error.HTTPError:
                break  # answering (400 for the bare IP host)
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        check = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["web"]["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"] and "127.0.0.1:8000/healthz" in check[3]
        code = check[3].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        # The same request as the check, printed: liveness only, no redirect to HTTPS.
        request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz",
                                         headers={"Host": "samplescope.internal.example.com"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200 and response.read() == b'{"status": "ok"}'
        # Anything else over plain HTTP is redirected to HTTPS, and HTTPS answers carry HSTS (a year).
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(urllib.request.Request(f"http://127.0.0.1:{port}/accounts/login/",
                                               headers={"Host": "samplescope.internal.example.com"}), timeout=5)
        assert redirect.value.code == 301
        assert redirect.value.headers["Location"] == "https://samplescope.internal.example.com/accounts/login/"
        secure = urllib.request.Request(f"http://127.0.0.1:{port}/api/me", headers={  # no template: no static
            "Host": "samplescope.internal.example.com", "X-Forwarded-Proto": "https"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(secure, timeout=5)
        assert answer.value.code == 401  # served, not redirected
        assert answer.value.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        server.terminate()
        server.wait(20)


@pytest.mark.parametrize("key", [
    "x",  # the example
    "9f2c4e1a7b3d8c6e0f5a2b9d4c7e1f3a8b6d0c2e5f7a9b1",  # 47 random characters: too short
    "ab" * 40,  # long, but two different characters
    "django-insecure-" + "q8v3m1z7k2x9c4n6b0l5j8h2g7f1d3s9a6p4o0i",  # Django's own marker of a throwaway key
])
def test_production_refuses_a_weak_secret_key(tmp_path, key):
    result = _settings_import(_production_env(tmp_path, DJANGO_SECRET_KEY=key))
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is too weak" in result.stderr


def test_production_accepts_a_generated_secret_key(tmp_path):
    import secrets

    result = _settings_import(_production_env(tmp_path, DJANGO_SECRET_KEY=secrets.token_urlsafe(50)))
    assert result.returncode == 0, result.stderr


def _settings_values(env, *names):
    code = ("import django, json; django.setup(); from django.conf import settings; "
            f"print(json.dumps([getattr(settings, n) for n in {list(names)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_redirects_to_https_and_sends_hsts_by_default(tmp_path):
    names = ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_REDIRECT_EXEMPT",
             "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "DEMO_USERS_ALLOWED", "TRUST_X_FORWARDED_FOR")
    assert _settings_values(_production_env(tmp_path), *names) == [
        True, 31536000, False, ["^healthz$"], True, True, False, True]
    # each can still be turned down from the environment (e.g. a first rollout with a short HSTS)
    turned_down = _production_env(tmp_path, DJANGO_SSL_REDIRECT="false", DJANGO_HSTS_SECONDS="3600")
    assert _settings_values(turned_down, "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS") == [False, 3600]
    # and Django's own deployment check has nothing to say about HSTS, the redirect or the key
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT,
                            env=_production_env(tmp_path), capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    for warning in ("security.W004", "security.W008", "security.W009", "security.W012", "security.W016"):
        assert warning not in report, report


def test_setup_demo_refuses_under_production_settings(tmp_path):
    """The demo login is a superuser whose password is in the README: a server must never get it."""
    result = subprocess.run([sys.executable, "manage.py", "setup_demo"], cwd=ROOT, env=_production_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "DEMO_USERS_ALLOWED" in result.stderr and "createsuperuser" in result.stderr
    assert "Created the demo login" not in result.stdout


def test_gitignore_keeps_the_deploy_env_file_out_of_git():
    lines = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    assert "deploy/.env" in lines
    if (ROOT / ".git").exists():
        result = subprocess.run(["git", "check-ignore", "-q", "deploy/.env"], cwd=ROOT, timeout=30)
        assert result.returncode == 0, "git would commit deploy/.env"


def test_nginx_example_times_out_slow_clients_and_limits_connections():
    """README: the proxy is required in production; it is what stops slow bodies (gunicorn copes with slow headers)."""
    conf = (DEPLOY / "nginx.conf").read_text()
    directives = {}
    for line in conf.splitlines():
        words = line.split("#")[0].strip().rstrip(";").split()
        if words:
            directives.setdefault(words[0], []).append(words[1:])
    assert directives["client_header_timeout"][0] == ["10s"]
    assert directives["client_body_timeout"][0] == ["30s"]
    assert directives["limit_conn_zone"][0][1].startswith("zone=samplescope_per_ip:")
    assert directives["limit_conn"][0] == ["samplescope_per_ip", "20"]
    assert ["X-Forwarded-For", "$proxy_add_x_forwarded_for"] in directives["proxy_set_header"]
    assert ["X-Forwarded-Proto", "$scheme"] in directives["proxy_set_header"]
    server_section = (ROOT / "README.md").read_text().split("## Running it on a server")[1]
    assert "**A reverse proxy in front of it is required**" in server_section
