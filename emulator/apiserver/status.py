"""Errors as the Kubernetes API reports them: ``Status`` objects with the code, reason and wording of the real
API server, so kubectl prints what it prints against a real cluster (``Error from server (NotFound): pods
"nginx" not found``). Handlers raise ``ApiError``; the server turns it into the response."""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": self.message, "reason": self.reason}
        if self.details:
            out["details"] = self.details
        out["code"] = self.code
        return out


def success(details: dict | None = None) -> dict:
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        out["details"] = details
    return out


def _res(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(404, "NotFound", f'{_res(resource, group)} "{name}" not found',
                    {"name": name, **({"group": group} if group else {}), "kind": resource})


def not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def already_exists(resource: str, name: str, group: str = "", terminating: bool = False) -> ApiError:
    what = "object is being deleted: " if terminating else ""
    return ApiError(409, "AlreadyExists", f'{what}{_res(resource, group)} "{name}" already exists',
                    {"name": name, **({"group": group} if group else {}), "kind": resource})


def conflict(resource: str, name: str, group: str = "", why: str = "") -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_res(resource, group)} "{name}": {why}',
                    {"name": name, **({"group": group} if group else {}), "kind": resource})


def invalid(kind: str, name: str, causes: list[tuple[str, str, str]], group: str = "") -> ApiError:
    """422 Invalid: ``causes`` are (field, reason type, message), e.g. ("spec.type", "FieldValueNotSupported",
    'Unsupported value: "LoadBalancer": ...'); the message joins them as the real server does."""
    parts = [f"{f}: {m}" if f else m for f, _, m in causes]
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}',
                    {"name": name, **({"group": group} if group else {}), "kind": kind,
                     "causes": [{"reason": t, "message": m, "field": f} for f, t, m in causes]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def strict_decoding(kind: str, version: str, fields: list[str]) -> ApiError:
    errs = ", ".join(f'unknown field "{f}"' for f in fields)
    return bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {errs}')


def gone(rv: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {rv} ({oldest})")


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def unsupported_media(ct: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format ("{ct}") - '
                    "accepted media types include: application/json, application/yaml, "
                    "application/vnd.kubernetes.protobuf, "
                    "application/apply-patch+yaml, application/json-patch+json, application/merge-patch+json, "
                    "application/strategic-merge-patch+json")


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def not_acceptable(accept: str) -> ApiError:
    return ApiError(406, "NotAcceptable", f"only the following media types are accepted: application/json, "
                    f"application/yaml (asked for {accept})")


def unsupported(kind: str, name: str, field: str, value: object, why: str) -> ApiError:
    """What podlab does not emulate: refused by name (422), never accepted and ignored."""
    shown = f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value
    return invalid(kind, name, [(field, "FieldValueNotSupported", f"Unsupported value: {shown}: podlab does not "
                                 f"emulate this ({why})")])
