"""mcu: a multipoint control unit for WebRTC sites."""

__version__ = "0.1.0"
