"""End-user documents a carrier asks for before it activates some numbers
(passport scan, proof of address).

Rules kept here:
- Only PDF, JPEG and PNG are accepted, recognised by their first bytes (the
  declared content type is not trusted); an empty file or one above the size
  limit is refused; each refusal says what was found and what is expected.
- A document is ``submitted`` until the operator reviews it: ``approved``, or
  ``rejected`` with a reason the customer sees. Approval of a number's
  documents lets its activation proceed; a rejected document is not reviewed
  again (the customer uploads a new one).
"""

from __future__ import annotations

from enum import StrEnum

from callcontrol.domain.errors import InvalidInput

MAGIC: dict[bytes, tuple[str, str]] = {
    b"%PDF-": ("application/pdf", "pdf"),
    b"\xff\xd8\xff": ("image/jpeg", "jpg"),
    b"\x89PNG\r\n\x1a\n": ("image/png", "png"),
}


class DocumentKind(StrEnum):
    PASSPORT = "passport"
    PROOF_OF_ADDRESS = "proof_of_address"
    OTHER = "other"


class DocumentState(StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


def document_type(data: bytes, *, max_bytes: int) -> tuple[str, str]:
    """(content type, file extension) of an acceptable document, else ``InvalidInput``."""
    if not data:
        raise InvalidInput("the file is empty; send a PDF, JPEG or PNG")
    if len(data) > max_bytes:
        raise InvalidInput(f"the file is {len(data)} bytes; at most {max_bytes}")
    for magic, found in MAGIC.items():
        if data.startswith(magic):
            return found
    raise InvalidInput(
        f"the file starts with {data[:8]!r}, which is not a PDF, JPEG or PNG; send one of those"
    )


def review(state: DocumentState, approved: bool, reason: str | None) -> DocumentState:
    """The state after the operator's review; a reason is required to reject."""
    if state is not DocumentState.SUBMITTED:
        raise InvalidInput(f"the document was already {state}")
    if not approved and not (reason or "").strip():
        raise InvalidInput("say why the document is rejected (the customer sees it)")
    return DocumentState.APPROVED if approved else DocumentState.REJECTED
