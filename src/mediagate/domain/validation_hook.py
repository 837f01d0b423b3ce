"""The validation hook's contract: what it is asked and what counts as its answer.
Anything but a well-formed answer is no answer at all: it never counts as acceptance."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

EVENT_TYPE = "media.validate"
MAX_REASON_CHARS = 200


class MalformedAnswer(ValueError):
    """The hook's body is not `{"accept": true}` or `{"accept": false, "reason": …}`."""


@dataclass(frozen=True, slots=True)
class HookVerdict:
    accept: bool
    reason: str


def parse_answer(body: bytes) -> HookVerdict:
    try:
        answer: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedAnswer("the answer is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("accept"), bool):
        raise MalformedAnswer('the answer has no boolean "accept"')
    if answer["accept"]:
        return HookVerdict(True, "")
    reason = answer.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        reason = "refused by the validation hook"
    shown = "".join(char for char in reason if char.isprintable())[:MAX_REASON_CHARS]
    return HookVerdict(False, shown)
