"""The imagery provider's API token, read once at worker start-up from AWS Secrets Manager.

The deployment passes the secret's *name* (``LG_IMAGERY_SECRET``, from ``imagery_secret_name``
in ``cdk.json``); the value is fetched here and only ever handed to the tile fetcher. The value
may be the token itself, or a JSON object with a ``"token"`` member (the shape the Secrets
Manager console writes for key/value secrets). Nothing in this module puts the value into an
exception message or a log line: errors name the secret and the AWS error code only.
"""

from __future__ import annotations

import json
import logging

from botocore.exceptions import BotoCoreError, ClientError

from looking_glass.errors import LookingGlassError


class _DropSecretBodies(logging.Filter):
    """botocore logs every response body at DEBUG level, GetSecretValue's SecretString too: such
    records are dropped (a filter on the logger that emits them, so no handler ever sees them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "SecretString" not in message and "SecretBinary" not in message


_DROP_SECRET_BODIES = _DropSecretBodies()
_BOTOCORE_BODY_LOGGERS = ("botocore.parsers", "botocore.endpoint", "botocore.hooks", "botocore.httpchecksum")


class ImagerySecretError(LookingGlassError, RuntimeError):
    """The secret cannot be used; the message names the secret and the reason, never its value."""


def token_from_secret_string(value: str, secret_id: str) -> str:
    """The imagery token in a secret's string: the text itself, or the ``token`` member of a JSON
    object, stripped. Raises :class:`ImagerySecretError` (naming ``secret_id``, never the value)
    for JSON that does not parse or lacks a string ``token``, an empty token, or control characters."""
    text = value.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            raise ImagerySecretError(
                f"imagery secret {secret_id!r} looks like JSON but does not parse"
            ) from None
        token = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(token, str):
            raise ImagerySecretError(
                f"imagery secret {secret_id!r} is a JSON object without a string \"token\" member"
            )
        text = token.strip()
    if not text:
        raise ImagerySecretError(f"imagery secret {secret_id!r} is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        # It goes into a URL or an HTTP header: a newline there would be a header injection.
        raise ImagerySecretError(f"imagery secret {secret_id!r} contains control characters")
    return text


def header_safe(token: str) -> bool:
    """Whether ``token`` can be an HTTP header value as sent: printable ASCII (and inner spaces)
    only. Anything else (a newline, a non-ASCII letter) would be refused or mangled by the HTTP
    library in the middle of a run, with the value in its error."""
    return all(32 <= ord(c) < 127 for c in token) and token == token.strip()


def check_header_token(token: str, secret_id: str, header: str) -> str:
    """``token`` if it can be sent in ``header``; else ImagerySecretError, whose message shows no
    part of the token (not even its length)."""
    if not header_safe(token):
        raise ImagerySecretError(
            f"imagery secret {secret_id!r} holds a token with characters an HTTP header cannot "
            f"carry (it is sent in the {header} header; only printable ASCII is possible): "
            "store the token as issued, or put {token} in the URL template"
        )
    return token


def read_imagery_token(session, secret_id: str) -> str:
    """The token held by ``secret_id`` (a name or ARN), or ImagerySecretError saying why not."""
    for name in _BOTOCORE_BODY_LOGGERS:
        logging.getLogger(name).addFilter(_DROP_SECRET_BODIES)  # once: the same filter object
    client = session.client("secretsmanager")
    try:
        resp = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ImagerySecretError(f"cannot read imagery secret {secret_id!r}: {code}") from None
    except BotoCoreError as exc:
        raise ImagerySecretError(
            f"cannot read imagery secret {secret_id!r}: {type(exc).__name__}"
        ) from None
    value = resp.get("SecretString")
    if value is None:
        raise ImagerySecretError(
            f"imagery secret {secret_id!r} has no SecretString (binary secrets are not supported)"
        )
    return token_from_secret_string(value, secret_id)
