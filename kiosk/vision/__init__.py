"""Reading QR codes from camera frames.

Public interface:
- `kiosk.vision.decode.read_qr_texts(frame, *, fallback=True) -> list[str]`: every distinct QR
  text in a frame (BGR, BGRA or grayscale uint8 numpy array), left to right; [] when none;
  never raises. zxing-cpp passes first, pyzbar as fallback (the order and bounds, and why, are
  in that module's docstring). `read_qr_texts_async` is the same in a worker thread.
  `DecoderChain(ChainSettings(...))` for a chain of one's own with its own `stats`;
  `default_chain()` is the one the functions above use.
- `kiosk.vision.decoders`: each library alone (`read_zxing`, `read_pyzbar`, `read_opencv`) for
  the benchmark, returning `QrRead(text, corners, decoder)`.
- `kiosk.vision.camera`: frame sources (device index, video file or stream URL, image folder
  replay, frames in memory) behind the `FrameSource` protocol, and the `Camera` that runs one in
  a capture thread into a bounded drop-oldest queue, reports ok/fault and reopens with backoff.
  `build_camera(section)` builds one from the door configuration's [camera] section.
- `kiosk.vision.images.read_image_file(path)`: an image file as 8-bit gray (alpha over white).

OpenCV, zxing-cpp and pyzbar stay inside this package and the commands; the pure core never
imports it.
"""
