"""SIP account credentials: strong passwords and the digest Asterisk stores.

Rules kept here:

- The plain password is generated once, shown to the customer once and never
  stored: the database and ``pjsip_callcontrol.conf`` hold only
  HA1 = MD5("login:realm:password") (RFC 2617/3261 digest), which Asterisk 22
  reads as ``password_digest=MD5:<ha1>`` in a ``type=auth`` section with
  ``auth_type=digest`` (the older ``auth_type=md5`` + ``md5_cred=`` is
  deprecated there and converted).
- HA1 binds the realm: if the realm Asterisk challenges with changes, every
  password must be reset. ``ha1_md5`` must be given the realm rendered in the
  auth section.
- Generated passwords use letters and digits only, without look-alikes
  (0/O/o, 1/l/I): nothing a SIP phone's web form, a config file or a keypad
  could mangle; 24 characters of a 56-symbol alphabet is about 139 bits.
"""

from __future__ import annotations

import hashlib
import secrets
import string

PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0Oo1lI")
DEFAULT_PASSWORD_LENGTH = 24
MIN_PASSWORD_LENGTH = 20


def generate_password(length: int = DEFAULT_PASSWORD_LENGTH) -> str:
    """A random password with at least one lower-case letter, upper-case letter and digit."""
    if length < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a SIP password needs at least {MIN_PASSWORD_LENGTH} characters")
    while True:
        password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
        ):
            return password


def ha1_md5(login: str, realm: str, password: str) -> str:
    """MD5("login:realm:password") in lower-case hex, as Asterisk and SIP phones compute it."""
    return hashlib.md5(f"{login}:{realm}:{password}".encode()).hexdigest()


def password_digest_value(ha1_hex: str) -> str:
    """The value of Asterisk 22's ``password_digest`` option for an MD5 HA1."""
    return f"MD5:{ha1_hex.lower()}"
