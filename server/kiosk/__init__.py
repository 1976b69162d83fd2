"""Kiosks and live check-in screens: device tokens, the event hub, and what the screens show."""
