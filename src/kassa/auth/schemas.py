from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from kassa.text import NoControl, TrimmedNoControl

PASSWORD_MIN = 12
PASSWORD_MAX = 1024

Password = Annotated[str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX), NoControl]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), TrimmedNoControl
]


class StrictBody(BaseModel):
    """Request bodies: unknown fields are refused and nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterRequest(StrictBody):
    name: Name
    email: Annotated[EmailStr, NoControl]
    password: Password


class LoginRequest(StrictBody):
    email: Annotated[str, Field(min_length=1, max_length=320), NoControl]
    password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX), NoControl]


class RefreshRequest(StrictBody):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096), NoControl]


class PasswordChangeRequest(StrictBody):
    current_password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX), NoControl]
    new_password: Password


class UserOut(BaseModel):
    id: uuid.UUID
    name: str
    email: str
    created_at: datetime


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int
    refresh_token: str
