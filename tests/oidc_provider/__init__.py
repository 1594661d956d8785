"""A real OpenID provider for the single sign-on tests: a small Django project on
django-oauth-toolkit with OIDC on, PKCE required, a fresh RSA key and its own SQLite file per
run, and the users' groups in a `groups` claim. `tests/test_sso.py` starts it as a separate
process (`python -m tests.oidc_provider serve PORT`) and sets it up with the commands of
`__main__.py`."""
