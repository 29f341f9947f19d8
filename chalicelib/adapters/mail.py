"""SES: notification e-mails."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.errors import DependencyDown, MailRejected

# SES errors that another attempt cannot fix.
PERMANENT_SES_ERRORS = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "InvalidParameterValue",
                                  "ConfigurationSetDoesNotExistException", "AccountSendingPausedException",
                                  "ConfigurationSetSendingPausedException"})


class SesMailer:
    def __init__(self, client: Any, sender: str) -> None:
        self._ses = client
        self.sender = sender

    def send(self, to: Sequence[str], subject: str, text: str, html: str) -> str:
        """Send one message to every address in `to`; its SES message id."""
        try:
            response = self._ses.send_email(
                Source=self.sender,
                Destination={"ToAddresses": list(to)},
                Message={"Subject": {"Data": subject, "Charset": "UTF-8"},
                         "Body": {"Text": {"Data": text, "Charset": "UTF-8"},
                                  "Html": {"Data": html, "Charset": "UTF-8"}}},
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", str(error))
            if code in PERMANENT_SES_ERRORS:
                raise MailRejected(f"SES {code}: {message}") from error
            raise DependencyDown.of("SES", f"{code} {message}") from error
        except BotoCoreError as error:
            raise DependencyDown.of("SES", error) from error
        return str(response["MessageId"])
