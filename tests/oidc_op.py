"""The real OpenID provider of the single sign-on tests (tests/oidc_provider/), as a separate
process on a free loopback port, and a scripted person signing in at it."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.livesrv import PYTHON, ROOT, free_port


@dataclass
class Provider:
    issuer: str
    env: dict[str, str]
    log: Path

    def run(self, *args: str) -> None:
        done = subprocess.run(  # noqa: S603 - fixed argv, our own test provider
            [PYTHON, "-m", "tests.oidc_provider", *args], env=self.env, cwd=ROOT,
            capture_output=True, text=True, check=False, timeout=120)
        if done.returncode:
            raise RuntimeError(f"provider {args[0]} failed: {done.stderr[-2000:]}")

    def client(self, client_id: str, secret: str, site: str) -> None:
        self.run("client", client_id, secret, f"{site}/oidc/callback/", f"{site}/accounts/login/")

    def user(self, name: str, password: str, *groups: str) -> None:
        self.run("user", name, password, f"{name}@example.com", *groups)


@contextlib.contextmanager
def provider(tmp: Path) -> Iterator[Provider]:
    port = free_port()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    issuer = f"http://127.0.0.1:{port}/o"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
           "OP_DATABASE": str(tmp / "op.sqlite3"), "OP_RSA_KEY": key, "OP_ISSUER": issuer}
    log = tmp / "provider.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603
            [PYTHON, "-m", "tests.oidc_provider", "serve", str(port)], env=env, cwd=ROOT,
            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{issuer}/.well-known/openid-configuration",
                                timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the provider did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Provider(issuer, env, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def sign_in_at_provider(authorize_url: str, username: str, password: str) -> str:
    """A person at the provider: follows the authorize URL to its login form, signs in, and
    returns where the provider sends the browser back (chatsite's callback with code and state)."""
    s = requests.Session()
    first = s.get(authorize_url, allow_redirects=False, timeout=10)
    assert first.status_code == 302, first.text[:500]
    login_url = urljoin(authorize_url, first.headers["Location"])
    form = s.get(login_url, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    nxt = parse_qs(urlsplit(login_url).query)["next"][0]
    posted = s.post(login_url, data={"csrfmiddlewaretoken": token.group(1), "username": username,
                                     "password": password, "next": nxt},
                    allow_redirects=False, timeout=10)
    assert posted.status_code == 302, posted.text[:500]
    back = s.get(urljoin(login_url, posted.headers["Location"]), allow_redirects=False,
                 timeout=10)
    assert back.status_code == 302, back.text[:500]
    return str(back.headers["Location"])
