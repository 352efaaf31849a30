from __future__ import annotations

from kassa.errors import KassaError, Unauthorized


class EmailTaken(KassaError):
    def __init__(self) -> None:
        super().__init__("email_taken", 409, "An account with this email already exists.")


class InvalidCredentials(KassaError):
    def __init__(self) -> None:
        super().__init__(
            "invalid_credentials",
            401,
            "The email or password is incorrect.",
            title="Invalid Credentials",
            headers={"WWW-Authenticate": "Bearer"},
        )


class TooManyAttempts(KassaError):
    def __init__(
        self,
        retry_after: int,
        detail: str = "Too many failed logins for this email; try again later.",
    ) -> None:
        super().__init__(
            "too_many_attempts",
            429,
            detail,
            title="Too Many Attempts",
            headers={"Retry-After": str(retry_after)},
        )


class InvalidRefreshToken(Unauthorized):
    def __init__(self) -> None:
        super().__init__("The refresh token is invalid, expired or already used.")
        self.code = "invalid_refresh_token"


class WrongPassword(KassaError):
    def __init__(self) -> None:
        super().__init__(
            "invalid_credentials",
            401,
            "The current password is incorrect.",
            title="Invalid Credentials",
            headers={"WWW-Authenticate": "Bearer"},
        )


class LoginTokenRequired(KassaError):
    """Key management, password changes and sessions need a person's login token: an API key
    (a server's credential) is refused there, so a leaked key cannot mint or keep keys."""

    def __init__(self) -> None:
        super().__init__(
            "forbidden",
            403,
            "This operation needs a login token; API keys cannot use it.",
            title="Forbidden",
        )


class InsufficientScope(KassaError):
    def __init__(self, scope: str) -> None:
        super().__init__(
            "insufficient_scope",
            403,
            f"This API key lacks the `{scope}` scope this operation needs.",
            title="Insufficient Scope",
        )


class InvalidMode(KassaError):
    def __init__(self, detail: str) -> None:
        super().__init__("invalid_mode", 422, detail, title="Invalid Mode")
