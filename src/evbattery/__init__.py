"""evbattery: battery-cell form-factor classification and background-bias analysis."""

__version__ = "0.1.0"
