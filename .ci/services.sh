#!/usr/bin/env bash
# CI: install the real local servers the live tests start on 127.0.0.1 (run as root on Debian 12).
#   mosquitto                      MQTT broker for tests/test_mqtt.py (started by the tests, never as a daemon)
#   redis-server                   the escalation bus for tests/test_fleet.py (started by the tests with
#                                  docs/redis-edgewatch.conf on free ports; any daemon of the package is left alone)
#   python3-gi + gst-rtsp-server   the GStreamer RTSP server tests/servers.py runs under /usr/bin/python3
#   gstreamer1.0-plugins-base      decodebin, videoconvert
#   gstreamer1.0-plugins-good      avidemux, jpegdec, rtph264pay, the RTSP/TCP plumbing
#   gstreamer1.0-plugins-bad       intervideosrc/intervideosink (loops the clip forever)
#   gstreamer1.0-plugins-ugly      x264enc (the test stream is H.264, like real cameras)
#   chromium + chromium-driver    the headless browser tests/test_review_browser.py drives through selenium
# The test clip is MJPG in .avi, so gstreamer1.0-libav is not needed.
# tests/test_faults.py mounts a small tmpfs for the full-disk test: mount(8) is in util-linux (always there).
# Idempotent: packages already present are skipped by apt-get; quiet unless something fails.
set -euo pipefail

PACKAGES=(
  mosquitto
  redis-server
  python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  chromium chromium-driver
)

if [ "$(id -u)" -ne 0 ]; then
  # apt-get needs root: use sudo where there is one, otherwise say so in one line.
  if command -v sudo >/dev/null 2>&1; then
    exec sudo bash "$0" "$@"
  fi
  echo "services.sh: must run as root (apt-get install); run it as root or install sudo" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  log="$(mktemp)"
  # Another apt/dpkg process (unattended-upgrades on a fresh machine) may hold the lock: wait up to 5 min.
  apt_opts=(-o DPkg::Lock::Timeout=300)
  if ! { apt-get "${apt_opts[@]}" update -q && apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "services.sh: apt-get failed for: ${missing[*]}" >&2
    exit 1
  fi
  rm -f "$log"
fi

# Fail here, clearly, rather than as skipped tests: check what the tests actually use.
command -v mosquitto >/dev/null || { echo "services.sh: mosquitto not on PATH after install" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "services.sh: redis-server not on PATH after install" >&2; exit 1; }
redis-server --version | grep -Eq 'v=(6\.[2-9]|[7-9]\.)' || { echo "services.sh: redis-server >= 6.2 needed (XAUTOCLAIM)" >&2; exit 1; }
/usr/bin/python3 - <<'PY' || { echo "services.sh: GStreamer RTSP server not usable from /usr/bin/python3" >&2; exit 1; }
import gi
for ns in ("Gst", "GstRtsp", "GstRtspServer"):
    gi.require_version(ns, "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
for element in ("intervideosink", "intervideosrc", "x264enc", "rtph264pay", "decodebin", "videoconvert", "avidemux"):
    assert Gst.ElementFactory.find(element) is not None, f"GStreamer element {element} missing"
PY
for browser in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$browser" ] || { echo "services.sh: $browser missing after install (chromium, chromium-driver)" >&2; exit 1; }
done
/usr/bin/chromedriver --version >/dev/null 2>&1 || { echo "services.sh: chromedriver does not run" >&2; exit 1; }
echo "services.sh: mosquitto, redis-server, the GStreamer RTSP server and headless chromium are ready"
