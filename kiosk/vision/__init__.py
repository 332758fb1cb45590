"""Reading QR codes from camera frames.

Public interface:
- `kiosk.vision.decode.read_qr_texts(frame) -> list[str]`: every QR text in a frame (BGR or
  grayscale numpy array), zxing-cpp first, pyzbar as fallback; never raises.
- `kiosk.vision.decode.read_qr_texts_async(frame) -> list[str]`: the same in a worker thread.
- `kiosk.vision.camera`: frame sources (device index, video file or RTSP URL, image folder replay)
  behind one small protocol, captured in a thread into a bounded drop-oldest queue.
"""
