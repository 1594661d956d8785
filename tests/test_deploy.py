"""Production settings: `manage.py check --deploy` is clean with the environment of
docs/deploy.md, and the production switches select PostgreSQL and the Redis layer."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.livesrv import ROOT

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x7Kq2vN9pL4mR8tW1yB6cF3hJ5dS0gA-zE_uI9oP2wQ7rT4yU1iO8pL3kJ6hG5fD",
    "ALLOWED_HOSTS": "chat.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "BEHIND_HTTPS_PROXY": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_COOKIES": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "DATABASE_URL": "postgres://chatsite@db.internal:5432/chatsite",
    "REDIS_URL": "redis://redis.internal:6379/0",
}


def run(*code: str) -> subprocess.CompletedProcess[str]:
    # The test run's own tuning (make test sets CONN_MAX_AGE=0 for its PostgreSQL pass) must
    # not leak into "production".
    env = {k: v for k, v in os.environ.items() if k not in ("CONN_MAX_AGE", "DB_HEALTH_CHECKS")}
    env.update(PRODUCTION_ENV)
    return subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(ROOT / "manage.py"), *code], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_it_passes_the_deploy_check_with_production_settings():
    done = run("check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_it_selects_postgresql_and_the_redis_pubsub_layer():
    done = run("shell", "--no-imports", "-c",
               "from django.conf import settings as s; d = s.DATABASES['default']; "
               "print(d['ENGINE'], d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], "
               "s.CHANNEL_LAYERS['default']['BACKEND'])")
    assert done.stdout.split() == [
        "django.db.backends.postgresql", "60", "False",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
    ]
