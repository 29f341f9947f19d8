"""The local Mailer: notification e-mails are kept in the local database and logged, never
sent (a laptop runtime has no mail service to hand them to)."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.domain.errors import MailRejected
from chalicelib.observability import logger

from .db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS mail (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    sent_at REAL NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL,
    html TEXT NOT NULL
);
"""


class LocalMailer:
    def __init__(self, db: Database, sender: str, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._sender = sender
        self._clock = clock
        self._db.ensure_schema(SCHEMA)

    def send(self, to: Sequence[str], subject: str, text: str, html: str) -> str:
        if not to:
            raise MailRejected("an e-mail needs at least one recipient")
        message_id = f"local-{uuid.uuid4()}"
        with self._db.write() as connection:
            connection.execute("INSERT INTO mail (id, sent_at, sender, recipients, subject, text, html)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (message_id, self._clock(), self._sender, json.dumps(list(to)), subject, text, html))
        logger.info("e-mail kept in the local database, not sent",
                    extra={"message_id": message_id, "to": list(to), "subject": subject})
        return message_id

    def sent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest e-mails kept, newest first."""
        with self._db.read() as connection:
            rows = connection.execute("SELECT id, sent_at, sender, recipients, subject, text, html FROM mail"
                                      " ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r["id"], "sentAt": r["sent_at"], "from": r["sender"], "to": json.loads(r["recipients"]),
                 "subject": r["subject"], "text": r["text"], "html": r["html"]} for r in rows]
