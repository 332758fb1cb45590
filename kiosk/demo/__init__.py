"""The whole system on embedded defaults, for `kiosk demo` (the README's `make demo`)."""
