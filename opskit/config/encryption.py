"""The `encryption:` setting of a target or a job: age recipients, and where the identity is."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Encryption(BaseModel):
    """Encrypt every backup with age to these recipients (public keys: no secret here)."""

    model_config = ConfigDict(extra="forbid")

    recipients: list[str] = Field(
        default_factory=list,
        description="age X25519 public keys (age1…) or SSH public keys (ssh-ed25519, ssh-rsa) "
        "every backup is encrypted to; any one of their identities can decrypt it.",
        examples=[["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]],
    )
    recipients_file: str | None = Field(
        default=None,
        description="A file of recipients, one per line (as `age -R` reads it).",
        examples=["/etc/opskit/recipients.txt"],
    )
    identity_file: str | None = Field(
        default=None,
        description="The identity (age identity file or SSH private key) the daemon's restore "
        "drills decrypt with; restores take --identity or $OPSKIT_AGE_IDENTITY_FILE first. "
        "Without it, drills of encrypted backups fail; leave it out where the host must not "
        "be able to read its own backups (and run drills elsewhere).",
        examples=["/etc/opskit/age-identity.txt"],
    )

    @field_validator("recipients")
    @classmethod
    def _recipients_are_keys(cls, recipients: list[str]) -> list[str]:
        from opskit import errors
        from opskit.archive import age

        for text in recipients:
            try:
                age.parse_recipient(text)
            except errors.UsageError as exc:
                raise ValueError(exc.message) from exc
        return recipients

    def is_set(self) -> bool:
        return bool(self.recipients or self.recipients_file)
