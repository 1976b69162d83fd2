"""End-to-end message signing: HMAC-SHA256 over canonical JSON without `sig`.

Canonical JSON: keys sorted, no insignificant whitespace, UTF-8 without
escaping. The verifier canonicalises the object it received, not a re-encoding
of a model, so fields it does not know are covered too.
"""

import hashlib
import hmac
import json
from typing import Any

from pydantic import BaseModel

from protocol.codec import encode, load_object
from protocol.errors import SignatureError


def canonical_json(obj: dict[str, Any]) -> bytes:
    """Return the canonical bytes of a message object, leaving out `sig`."""
    body = {k: v for k, v in obj.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(obj: dict[str, Any], key: bytes) -> str:
    """Return the hex HMAC-SHA256 of an object's canonical JSON."""
    return hmac.new(key, canonical_json(obj), hashlib.sha256).hexdigest()


def sign(message: BaseModel, key: bytes) -> bytes:
    """Encode a message with its `sig` field filled in."""
    obj = json.loads(encode(message))
    obj["sig"] = signature(obj, key)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def verify(payload: bytes | str, key: bytes) -> None:
    """Raise SignatureError unless the payload carries a valid `sig` for `key`."""
    obj = load_object(payload)
    sig = obj.get("sig")
    if not isinstance(sig, str):
        raise SignatureError("message is not signed")
    if not hmac.compare_digest(sig.lower(), signature(obj, key)):
        raise SignatureError("signature does not match")
