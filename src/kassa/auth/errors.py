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
