"""`python -m tests.oidc_provider COMMAND`:

- `serve PORT`: migrate, then run the provider on 127.0.0.1:PORT (runserver, no reloader);
- `client CLIENT_ID SECRET REDIRECT_URI POST_LOGOUT_URI`: the confidential RS256 client;
- `user NAME PASSWORD EMAIL [GROUP ...]`: create or update a user with exactly these groups.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oidc_provider.settings")
    import django
    from django.core.management import call_command

    django.setup()
    command, args = argv[0], argv[1:]
    if command == "serve":
        call_command("migrate", "--noinput", verbosity=0)
        call_command("runserver", f"127.0.0.1:{args[0]}", "--noreload", "--skip-checks")
    elif command == "client":
        from oauth2_provider.models import Application

        client_id, secret, redirect_uri, post_logout = args
        Application.objects.filter(client_id=client_id).delete()
        Application.objects.create(
            name="chatsite", client_id=client_id, client_secret=secret,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=redirect_uri, post_logout_redirect_uris=post_logout,
            algorithm=Application.RS256_ALGORITHM, skip_authorization=True,
        )
    elif command == "user":
        from django.contrib.auth.models import Group, User

        name, password, email, *groups = args
        user, _ = User.objects.get_or_create(username=name)
        user.email = email
        # A new password would end the user's session at the provider (Django's session hash).
        if not user.check_password(password):
            user.set_password(password)
        user.save()
        user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
