"""The errors a use case raises. Each surface turns them into its own shape: the HTML views a
page or a 404, the JSON API `{"error": {"code", "message", "details"}}`, the websocket an
`error` frame (or a refused handshake). No use case knows about HTTP or sockets."""

from __future__ import annotations

from typing import Any


class InvalidInput(Exception):
    """Bad input from a user: `code` is stable (API/websocket), `message` is for people, in the
    active language (the request's, or the websocket user's)."""

    def __init__(
        self, code: str, message: str, *, field: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status

    @property
    def details(self) -> dict[str, Any]:
        return {"field": self.field} if self.field else {}


class NotFound(Exception):
    """The conversation or reply does not exist or is not the user's: the two are the same
    answer on purpose, so nobody learns which ids exist. `message` is for people, in the active
    language; every surface answers 404 (or its websocket equivalent) with code `not_found`."""

    code = "not_found"
    status = 404

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(InvalidInput):
    """No usable credentials on an API request (a bearer token that is unknown, expired, revoked
    or malformed): 401 `unauthenticated` with `WWW-Authenticate: Bearer`."""

    def __init__(self, message: str) -> None:
        super().__init__("unauthenticated", message, status=401)


class MissingScope(InvalidInput):
    """The request's API token lacks the scope the endpoint needs: 403 `forbidden`, details
    naming the scope."""

    def __init__(self, message: str, scope: str) -> None:
        super().__init__("forbidden", message, status=403)
        self.scope = scope

    @property
    def details(self) -> dict[str, Any]:
        return {"scope": self.scope}
