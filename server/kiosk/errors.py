"""Errors of the kiosk package.

KioskError (a RollcallError)
└── DeviceRefused   no device token, an unknown or revoked one, or one for another screen

DeviceRefused is also an auth NotSignedIn, so the console's handlers answer it 401.
"""

from server.errors import RollcallError
from server.services.auth import NotSignedIn


class KioskError(RollcallError):
    """Base of the kiosk package's errors."""


class DeviceRefused(KioskError, NotSignedIn):
    """The request carries no device token valid for what it asks (answered like no sign-in)."""
