"""Real local servers for the live tests: mosquitto, a GStreamer RTSP server, HTTP MJPEG, a silent HTTP stream.

Every server listens on 127.0.0.1 only, on a free port, and is a child process of the test
(so it is always waited for and never left behind).  Servers that pick their own port print
``READY <port>`` on stdout.

This file is also the servers' entry point:

    /usr/bin/python3 tests/servers.py rtsp CLIP [PORT] [MOUNT] [h264|jpeg]   (Debian's python: needs python3-gi)
    python tests/servers.py mjpeg CLIP [PORT] [FPS]                          (project venv: needs cv2)
    python tests/servers.py silent [PORT]                                    (stdlib: a stream that never sends a frame)

Nothing at module level imports more than the standard library, because the RTSP server
runs under Debian's /usr/bin/python3, not the project venv.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DEBIAN_PYTHON = "/usr/bin/python3"
LOCALHOST = "127.0.0.1"


# --------------------------------------------------------------------------------------
# Helpers used by the tests (project venv)
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class ServerProcess:
    """A server child process: ``port``, ``kill()`` (SIGKILL, as a crash), ``stop()`` (graceful), context manager."""

    def __init__(self, proc: subprocess.Popen[str], port: int, name: str) -> None:
        self.proc = proc
        self.port = port
        self.name = name

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL always ends it
            pass
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn_ready(cmd: list[str], name: str, timeout_s: float = 15.0, env: dict[str, str] | None = None) -> ServerProcess:
    """Start ``cmd`` and wait for its ``READY <port>`` line; raises RuntimeError (process reaped) otherwise."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("READY"):
        server = ServerProcess(proc, 0, name)
        server.kill()
        raise RuntimeError(f"{name} did not get ready within {timeout_s:g} s (rc={proc.returncode}, said {line.strip()!r})")
    return ServerProcess(proc, int(line.split()[1]), name)


def rtsp_server_available() -> bool:
    """Debian's python3-gi, the GStreamer RTSP server and the elements the loop server uses."""
    if not os.path.exists(DEBIAN_PYTHON):
        return False
    probe = (
        "import gi\n"
        "for ns in ('Gst','GstRtsp','GstRtspServer'): gi.require_version(ns,'1.0')\n"
        "from gi.repository import Gst, GstRtspServer\n"
        "Gst.init(None)\n"
        "assert all(Gst.ElementFactory.find(e) for e in ('intervideosink','intervideosrc','x264enc','rtph264pay','avidemux'))\n"
    )
    try:
        return subprocess.run([DEBIAN_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_rtsp(clip: Path, port: int = 0, mount: str = "/cam", codec: str = "h264") -> ServerProcess:
    return spawn_ready([DEBIAN_PYTHON, str(HERE), "rtsp", str(clip), str(port), mount, codec], "RTSP server")


def start_mjpeg(clip: Path, port: int = 0, fps: float = 25.0) -> ServerProcess:
    return spawn_ready([sys.executable, str(HERE), "mjpeg", str(clip), str(port), str(fps)], "MJPEG server")


def start_silent(port: int = 0) -> ServerProcess:
    return spawn_ready([sys.executable, str(HERE), "silent", str(port)], "silent stream server")


def mosquitto_available() -> bool:
    return shutil.which("mosquitto") is not None


def _listening(server: ServerProcess, timeout_s: float) -> bool:
    """Wait until the server's port accepts connections; kill it (and say False) if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        if port_open(server.port):
            return True
        time.sleep(0.01)
    server.kill()
    return False


def start_mosquitto(
    workdir: Path, port: int | None = None, timeout_s: float = 5.0, users: dict[str, str] | None = None
) -> ServerProcess:
    """Run ``mosquitto -c conf`` in the foreground on 127.0.0.1:port (free port when None); no persistence.

    With ``users``, anonymous clients are refused and a password file is written with
    ``mosquitto_passwd``; ``user root`` keeps the broker able to read it from pytest's 0700 tmp dir.
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / f"mosquitto-{port}.conf"
    lines = [f"listener {port} {LOCALHOST}", "persistence false", "log_dest stderr"]
    if users:
        pwfile = workdir / f"passwd-{port}"
        pwfile.unlink(missing_ok=True)
        for i, (user, password) in enumerate(users.items()):
            flags = ["-c"] if i == 0 else []
            subprocess.run(["mosquitto_passwd", *flags, "-b", str(pwfile), user, password], check=True, capture_output=True, timeout=10)
        lines += ["allow_anonymous false", f"password_file {pwfile}", "user root"]
    else:
        lines.append("allow_anonymous true")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    server = ServerProcess(proc, port, "mosquitto")
    if _listening(server, timeout_s):
        return server
    raise RuntimeError(f"mosquitto did not listen on {port} within {timeout_s:g} s (rc={proc.returncode})")


REDIS_CONF = HERE.parent.parent / "docs" / "redis-edgewatch.conf"


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def start_redis(workdir: Path, port: int | None = None, timeout_s: float = 10.0) -> ServerProcess:
    """Run ``redis-server`` with the shipped docs/redis-edgewatch.conf (AOF, fsync always) in the
    foreground on 127.0.0.1:port, its data in ``workdir`` — start it again on the same folder and
    port to restart it with what it persisted."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = ["redis-server", str(REDIS_CONF), "--bind", LOCALHOST, "--port", str(port), "--dir", str(workdir),
           "--daemonize", "no", "--logfile", str(workdir / "redis.log"), "--maxmemory", "256mb"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    server = ServerProcess(proc, port, "redis-server")
    if _listening(server, timeout_s):
        return server
    log = (workdir / "redis.log").read_text(errors="replace")[-500:] if (workdir / "redis.log").exists() else ""
    raise RuntimeError(f"redis-server did not listen on {port} within {timeout_s:g} s (rc={proc.returncode}): {log}")


# --------------------------------------------------------------------------------------
# The servers themselves (run as separate processes)
# --------------------------------------------------------------------------------------


def _serve_rtsp(clip: str, port: str, mount: str, codec: str) -> None:
    """Loop ``clip`` forever over RTSP (TCP only, 127.0.0.1).  See /work/shared/notes/live-test-servers.md §3."""
    import gi

    for ns in ("Gst", "GstRtsp", "GstRtspServer"):
        gi.require_version(ns, "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    encoders = {
        "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! rtph264pay name=pay0 pt=96 config-interval=1",
        "jpeg": "jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26",
    }
    # A producer pipeline decodes the file in real time into an in-process channel and seeks
    # back to 0 at the end; the RTSP media (shared by all clients) reads that channel.
    producer = Gst.parse_launch(f'filesrc location="{clip}" ! decodebin ! videoconvert ! intervideosink channel=loop')

    def on_message(bus: object, msg: "Gst.Message") -> None:
        if msg.type == Gst.MessageType.EOS:
            producer.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif msg.type == Gst.MessageType.ERROR:
            print("ERROR", msg.parse_error()[0].message, flush=True)
            os._exit(1)

    bus = producer.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    producer.set_state(Gst.State.PLAYING)
    if producer.get_state(10 * Gst.SECOND)[0] != Gst.StateChangeReturn.SUCCESS:
        sys.exit(f"cannot play {clip}")
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(True)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)  # UDP would bind RTP ports on 0.0.0.0
    factory.set_launch(f"( intervideosrc channel=loop ! video/x-raw,framerate=25/1 ! videoconvert ! {encoders[codec]} )")
    server = GstRtspServer.RTSPServer()
    server.set_address(LOCALHOST)
    server.set_service(port)
    server.get_mount_points().add_factory(mount, factory)
    server.attach(None)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"READY {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


def _serve_http(port: str, handler: type) -> None:
    """Serve ``handler`` (quietly) on 127.0.0.1:port and say READY with the bound port."""
    from http.server import ThreadingHTTPServer

    class Quiet(handler):  # type: ignore[misc, valid-type]
        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer((LOCALHOST, int(port)), Quiet)
    srv.daemon_threads = True
    print(f"READY {srv.server_address[1]}", flush=True)
    srv.serve_forever()


def _serve_mjpeg(clip: str, port: str, fps: str) -> None:
    """multipart/x-mixed-replace JPEG stream of ``clip``, looping, at ``fps``."""
    from http.server import BaseHTTPRequestHandler

    import cv2

    cap = cv2.VideoCapture(clip)
    frames: list[bytes] = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", image)[1].tobytes())
    cap.release()
    if not frames:
        sys.exit(f"no frames in {clip}")
    period = 1.0 / float(fps)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != "/stream.mjpg":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                i = 0
                while True:
                    jpg = frames[i % len(frames)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
                    self.wfile.write(jpg + b"\r\n")
                    i += 1
                    time.sleep(period)
            except (BrokenPipeError, ConnectionResetError):
                pass

    _serve_http(port, Handler)


def _serve_silent(port: str) -> None:
    """Answers like an MJPEG camera (200, multipart headers) and then never sends a frame."""
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            self.wfile.flush()
            try:
                while self.rfile.read(1):  # hold the connection open until the client goes away
                    pass
            except (OSError, ValueError):
                pass

    _serve_http(port, Handler)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    kind, args = argv[0], argv[1:]
    if kind == "rtsp":
        a = args + [""] * 4
        _serve_rtsp(a[0], a[1] or "0", a[2] or "/cam", a[3] or "h264")
    elif kind == "mjpeg":
        a = args + [""] * 3
        _serve_mjpeg(a[0], a[1] or "0", a[2] or "25")
    elif kind == "silent":
        _serve_silent((args + ["0"])[0])
    else:
        sys.exit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
