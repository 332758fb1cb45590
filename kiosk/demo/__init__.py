"""The whole system on embedded defaults, for `kiosk demo` (the README's `make demo`).

story.py     who is in the demo: two venues, their kiosks and visitors, the inspector
samples.py   sample health codes of a throwaway issuer
frames.py    camera-like frames holding QR codes
visitors.py  the frames in front of each kiosk's camera, round after round
city.py      the collector, provisioned and given the issuer's lists
doors.py     the kiosks (real door processes in collector mode) and the attendant
report.py    what the demo prints
world.py     `run_demo`: all of it, then the inspector's non-compliant list
kit.py       a standalone kiosk's files (the door's tests and benchmarks)
"""
