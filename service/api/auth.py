"""Bearer tokens with roles (DESIGN.md section 8).

Tokens are configured hashed: one line per principal, ``NAME ROLE[,ROLE...] sha256:HEX``.
``flashpoint token`` makes a new token and prints its line. A presented token is hashed and
compared with every configured hash in constant time, so neither the secret nor which
entry matched leaks through timing.

A tokens file is read again when it changes (its size, modification time or inode, looked at
about once a second on the call path) and on SIGHUP (``flashpoint serve``), so removing a
line refuses that principal without a restart. A file that does not parse, or cannot be
read, keeps the tokens in force and logs an error once per change; an authenticator that
started with tokens never turns into an open one, even if the file is emptied.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from service.api.errors import PermissionDenied, Unauthenticated

log = structlog.get_logger()

#: At most how often the call path looks whether the tokens file changed.
RELOAD_CHECK_SECONDS = 1.0

ROLES = frozenset({"reporter", "analyst", "auditor", "admin"})

#: Which roles may call each service (by method prefix). ``admin`` may call everything.
REQUIRED_ROLES: dict[str, frozenset[str]] = {
    "/flashpoint.v1.CommandService/": frozenset({"reporter", "admin"}),
    "/flashpoint.v1.QueryService/": frozenset({"analyst", "admin"}),
    "/flashpoint.v1.AuditService/": frozenset({"auditor", "admin"}),
}

#: Methods whose roles differ from their service's (checked before REQUIRED_ROLES): the
#: administrative ones need admin; one resource's history is what an analyst reads beside
#: the incident itself (the dashboard's incident page), so it is open to analysts too.
EXACT_ROLES: dict[str, frozenset[str]] = {
    "/flashpoint.v1.AuditService/GetHistory": frozenset({"analyst", "auditor", "admin"}),
    "/flashpoint.v1.AuditService/RebuildProjection": frozenset({"admin"}),
    "/flashpoint.v1.AuditService/SealLog": frozenset({"admin"}),
    "/flashpoint.v1.AuditService/RetryQuarantinedEvents": frozenset({"admin"}),
}

#: Methods anyone may call: health checks and reflection.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


#: The principal of every call when auth is off (loopback development mode).
LOCAL_DEVELOPER = Principal("local", ROLES)


class TokenConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TokenEntry:
    principal: Principal
    digest: bytes


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token(name: str, roles: Iterable[str]) -> tuple[str, str]:
    """A fresh random token and the configuration line that admits it."""
    role_set = sorted(set(roles))
    unknown = set(role_set) - ROLES
    if unknown or not role_set:
        raise TokenConfigError(f"roles must be among {sorted(ROLES)}, got {role_set}")
    token = "fp_" + secrets.token_urlsafe(32)
    return token, f"{name} {','.join(role_set)} {hash_token(token)}"


def parse_tokens(text: str, origin: str = "tokens") -> list[TokenEntry]:
    entries = []
    for number, raw in enumerate(text.replace(";", "\n").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("sha256:"):
            raise TokenConfigError(
                f"{origin} line {number}: expected 'NAME ROLE[,ROLE] sha256:HEX' "
                "(make one with `flashpoint token NAME ROLE`)"
            )
        name, roles_text, digest_text = parts
        roles = frozenset(role.strip() for role in roles_text.split(","))
        if not roles <= ROLES:
            raise TokenConfigError(
                f"{origin} line {number}: unknown role(s) {sorted(roles - ROLES)}"
            )
        try:
            digest = bytes.fromhex(digest_text.removeprefix("sha256:"))
        except ValueError:
            raise TokenConfigError(f"{origin} line {number}: the hash is not hex") from None
        if len(digest) != 32:
            raise TokenConfigError(f"{origin} line {number}: a sha256 hash has 64 hex digits")
        entries.append(TokenEntry(Principal(name, roles), digest))
    return entries


def load_tokens(tokens_file: str | None, tokens: str | None) -> list[TokenEntry]:
    entries: list[TokenEntry] = []
    if tokens_file:
        entries += parse_tokens(Path(tokens_file).read_text(), tokens_file)
    if tokens:
        entries += parse_tokens(tokens, "FLASHPOINT_TOKENS")
    return entries


def _file_version(path: str) -> tuple[int, int, int] | None:
    """What tells a changed file: inode (replaced by rename), size, modification time."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class Authenticator:
    """Decides who is calling and whether they may call the method.

    Made with :meth:`load`, it follows its tokens file (see the module's documentation).
    """

    def __init__(
        self,
        entries: list[TokenEntry],
        *,
        tokens_file: str | None = None,
        tokens: str | None = None,
    ) -> None:
        self._entries = entries
        # Once on, never off: a server with auth must not serve everyone once its file
        # empties (nobody is admitted then).
        self._enabled = bool(entries)
        self._tokens_file = tokens_file
        self._tokens = tokens
        self._version = _file_version(tokens_file) if tokens_file else None
        self._checked = time.monotonic()
        self._reloading = threading.Lock()

    @classmethod
    def load(cls, tokens_file: str | None, tokens: str | None) -> Authenticator:
        """The tokens of ``tokens_file`` and ``tokens`` (FLASHPOINT_TOKENS), following the
        file; raises TokenConfigError (or OSError) if they cannot be read now."""
        entries = load_tokens(tokens_file, tokens)
        if tokens_file is None:
            return cls(entries)
        return cls(entries, tokens_file=tokens_file, tokens=tokens)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def reload(self, *, force: bool = True) -> bool:
        """Read the tokens file again (only if it changed, unless ``force``); whether the
        tokens in force are now the file's."""
        if self._tokens_file is None:
            return False
        # One thread reads the file; calls arriving meanwhile use the tokens in force.
        if not self._reloading.acquire(blocking=force):
            return False
        try:
            self._checked = time.monotonic()
            version = _file_version(self._tokens_file)
            if not force and version == self._version:
                return False
            self._version = version
            try:
                entries = load_tokens(self._tokens_file, self._tokens)
            except (OSError, TokenConfigError) as error:
                log.error(
                    "auth.tokens_reload_failed", tokens_file=self._tokens_file,
                    error=str(error), kept=len(self._entries),
                )  # fmt: skip
                return False
            self._entries = entries
            self._enabled = self._enabled or bool(entries)
            log.info(
                "auth.tokens_reloaded", tokens_file=self._tokens_file,
                principals=sorted({entry.principal.name for entry in entries}),
            )  # fmt: skip
            if not entries:
                log.warning("auth.no_tokens", tokens_file=self._tokens_file)
            return True
        finally:
            self._reloading.release()

    def _follow(self) -> None:
        if self._tokens_file is not None and (
            time.monotonic() - self._checked >= RELOAD_CHECK_SECONDS
        ):
            self.reload(force=False)

    def authenticate(self, authorization: str | None) -> Principal:
        self._follow()
        if not self._enabled:
            return LOCAL_DEVELOPER
        if not authorization:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        presented = hashlib.sha256(token.strip().encode()).digest()
        found: Principal | None = None
        for entry in self._entries:  # the list in force now; a reload replaces it whole
            # No early exit: every entry is compared, whichever matches.
            if hmac.compare_digest(presented, entry.digest):
                found = entry.principal
        if found is None:
            raise Unauthenticated("the token is not valid")
        return found

    @staticmethod
    def authorize(principal: Principal, method: str) -> None:
        rules = [(method, EXACT_ROLES[method])] if method in EXACT_ROLES else []
        for prefix, allowed in [*rules, *REQUIRED_ROLES.items()]:
            if method.startswith(prefix):
                if principal.roles & allowed:
                    return
                raise PermissionDenied(
                    f"{principal.name} may not call {method}: it needs one of "
                    f"{', '.join(sorted(allowed))}",
                    needed=",".join(sorted(allowed)),
                )
        raise PermissionDenied(f"{method} is not open to any role", needed="")
