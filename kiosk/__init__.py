"""kiosk: the door-side health-code kiosk and the central collector."""

__version__ = "0.1.0"
