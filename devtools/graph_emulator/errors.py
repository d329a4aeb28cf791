"""Graph's error bodies, raised as exceptions from anywhere in a handler.

Graph answers every failure with `{"error": {"code", "message", "innerError": {"date",
"request-id", "client-request-id"}}}`. Handlers raise `GraphError` (or use the helpers below); the
envelope middleware renders it with the request's ids, so no handler builds an error body itself.
"""

from __future__ import annotations

from collections.abc import Mapping


class GraphError(Exception):
    """An error response: HTTP status, Graph `code`, `message`, and optionally the inner error's
    `code` (Outlook throttling puts e.g. "MailboxConcurrency" there) and extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code
        self.headers = dict(headers or {})


def bad_request(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found(message: str = "The specified object was not found in the store.") -> GraphError:
    return GraphError(404, "ErrorItemNotFound", message)


def access_denied() -> GraphError:
    # The wording Exchange uses for a token without the needed role or scope.
    return GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


def invalid_token(message: str) -> GraphError:
    return GraphError(
        401,
        "InvalidAuthenticationToken",
        message,
        headers={
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
            'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
        },
    )


def invalid_user(key: str) -> GraphError:
    return GraphError(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")


def throttled(message: str, retry_after: int, inner_code: str | None = None) -> GraphError:
    return GraphError(
        429,
        "ApplicationThrottled",
        message,
        inner_code=inner_code,
        headers={"Retry-After": str(max(1, retry_after))},
    )
