"""A campaign's settings (pydantic, validated): schedule, limits, retry policy, caller ID. One model for
`POST /api/campaigns`, the CLI and the stored row."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parley.campaigns.numbers import NumberError, check_zone, normalise
from parley.campaigns.policy import RetryByOutcome
from parley.campaigns.windows import Window, parse_days


class CampaignConfig(BaseModel):
    """How a campaign dials. Every field has a safe default; `window` is in each recipient's local time."""

    model_config = ConfigDict(extra="forbid")

    window: str | None = Field(None, description="Local calling hours HH:MM-HH:MM (default: any time).")
    days: str | list[str] | list[int] | None = Field(
        None, description="Days of week: 'mon-fri', 'mon,wed,sat' or a list (default: every day).")
    start_date: date | None = Field(None, description="First day to call (recipient's local date).")
    end_date: date | None = Field(None, description="Last day to call (recipient's local date).")
    timezone: str = Field("UTC", description="Zone of numbers whose country spans several zones.")
    max_concurrent: int = Field(4, ge=1, le=1000, description="Calls of this campaign at once.")
    calls_per_minute: float | None = Field(None, ge=1, le=6000, description="New calls per minute.")
    retry: dict[str, Any] | None = Field(None, description="Per outcome (busy, no_answer, voicemail, failed): "
                                                           "{max_attempts, backoff_s, multiplier, max_backoff_s}.")
    from_number: str | None = Field(None, description="Caller ID (E.164); default the trunk's number.")
    trunk: str | None = Field(None, max_length=64, description="Outbound trunk (default the default trunk).")
    webhook_url: str | None = Field(None, description="Where the calls' events go (default the agent's).")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value:
            Window.parse(value)
        return value or None

    @field_validator("days")
    @classmethod
    def _days(cls, value: Any) -> Any:
        parse_days(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("retry")
    @classmethod
    def _retry(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        RetryByOutcome.from_mapping(value)
        return value

    @field_validator("from_number")
    @classmethod
    def _from(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return normalise(value)
        except NumberError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s):// URL")
        return value or None

    @model_validator(mode="after")
    def _dates(self) -> CampaignConfig:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self

    def schedule(self) -> Window:
        return Window.parse(self.window, self.days, start_date=self.start_date, end_date=self.end_date)

    def retry_policy(self) -> RetryByOutcome:
        return RetryByOutcome.from_mapping(self.retry)
