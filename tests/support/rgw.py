"""A single-node Ceph cluster in a temp dir with one RADOS Gateway: a real S3 store that
checks every signature and sends bucket events (Debian's ceph-mon, ceph-osd, radosgw).

One monitor, one OSD on memstore (nothing touches a disk), one gateway; no systemd, no
manager. Authentication between the daemons is off (S3 signatures are checked
regardless); msgr2 only; pools of size 1; a short paxos interval so start-up takes a
couple of seconds.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.daemons import free_port
from tests.support.environment import make_env

START_TIMEOUT = 120.0


@dataclass(frozen=True)
class RgwUser:
    uid: str
    access_key: str
    secret_key: str

    @property
    def principal(self) -> str:
        """How bucket policies name this user on RGW."""
        return f"arn:aws:iam:::user/{self.uid}"

    def sole_credential(self) -> dict[str, str]:
        """Settings for a store this user alone reaches (service and uploads alike),
        without SSE-S3 or bucket events."""
        return {
            "S3_ACCESS_KEY": self.access_key,
            "S3_SECRET_KEY": self.secret_key,
            "S3_ALLOW_SHARED_UPLOAD_CREDENTIALS": "true",
            "S3_UPLOAD_ACCESS_KEY": self.access_key,
            "S3_UPLOAD_SECRET_KEY": self.secret_key,
            "S3_SSE": "false",
            "BUCKET_EVENTS_SOURCE": "none",
        }


# RGW's HTTP front ends. Beast is RGW's default; under a burst of concurrent PUTs, RGW
# 16.2.15's beast segfaulted in one 500-upload run of four (in
# RGWPutObj_ObjStore_S3::get_params, on a coroutine's stack); civetweb ran 13 of 13.
FRONTENDS = {
    "beast": "beast endpoint=127.0.0.1:{port}",
    "civetweb": "civetweb port=127.0.0.1:{port}",
}


def _config(
    workdir: Path,
    fsid: str,
    mon_port: int,
    rgw_port: int,
    memstore_bytes: int,
    frontend: str,
    gateway: str,
) -> str:
    return f"""
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr1 = false
ms bind msgr2 = true
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon warn on pool no redundancy = false
paxos propose interval = 0.05
run dir = {workdir}/run
admin socket = {workdir}/run/$name.asok
log file = {workdir}/log/$name.log
keyring = {workdir}/keyring
[mon]
mon data = {workdir}/mon/$cluster-$id
[osd]
osd data = {workdir}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
[client.rgw.gw]
rgw frontends = {FRONTENDS[frontend].format(port=rgw_port)}
rgw data = {workdir}/rgw
ms mon client mode = crc
{gateway}
"""


class CephGateway:
    """`frontend`: a key of FRONTENDS; `gateway_config`: more lines for the gateway's
    section of ceph.conf."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        memstore_bytes: int = 2 * 1024**3,
        gateway_config: str = "",
        frontend: str = "beast",
    ) -> None:
        self.workdir = workdir
        self.memstore_bytes = memstore_bytes
        self.frontend = frontend
        self.gateway_config = gateway_config
        self.mon_port = free_port()
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.conf = workdir / "ceph.conf"
        self._daemons: list[subprocess.Popen[bytes]] = []

    def _run(self, *args: str) -> str:
        done = subprocess.run([*args], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def _ceph(self, *args: str) -> str:
        return self._run("ceph", "-c", str(self.conf), *args)

    def _daemon(self, *args: str) -> None:
        log = (self.workdir / "log" / f"{Path(args[0]).name}.out").open("ab")
        self._daemons.append(
            subprocess.Popen([*args, "-c", str(self.conf), "-f"], stdout=log, stderr=log)
        )

    def start(self) -> None:
        for folder in ("run", "log", "mon/ceph-a", "osd/ceph-0", "rgw"):
            (self.workdir / folder).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        self.conf.write_text(
            _config(
                self.workdir,
                fsid,
                self.mon_port,
                self.port,
                self.memstore_bytes,
                self.frontend,
                self.gateway_config,
            )
        )
        monmap = self.workdir / "monmap"
        self._run(
            "monmaptool", "--create", "--fsid", fsid,
            "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", str(monmap),
        )  # fmt: skip
        self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(monmap))
        self._daemon("ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph("osd", "new", osd_uuid).strip()
        self._run("ceph-osd", "-c", str(self.conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("ceph-osd", "-i", osd_id)
        self._daemon("radosgw", "-n", "client.rgw.gw")
        self._wait_for_http()

    def daemon_pids(self) -> list[tuple[str, int]]:
        """Each daemon's program name and pid: monitor, OSD, gateway."""
        found = []
        for daemon in self._daemons:
            assert isinstance(daemon.args, list)
            found.append((Path(daemon.args[0]).name, daemon.pid))
        return found

    def _wait_for_http(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                httpx.get(self.endpoint, timeout=1)
                return
            except httpx.TransportError:
                pass
            for daemon in self._daemons:
                if daemon.poll() is not None:
                    raise RuntimeError(f"{daemon.args!r} exited; see {self.workdir}/log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway never answered; see {self.workdir}/log")
            time.sleep(0.1)

    def _admin(self, *args: str) -> str:
        return self._run("radosgw-admin", "-c", str(self.conf), "-n", "client.rgw.gw", *args)

    def create_user(self, uid: str) -> RgwUser:
        user = RgwUser(uid, f"{uid}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
        self._admin(
            "user", "create", f"--uid={uid}", f"--display-name={uid}",
            f"--access-key={user.access_key}", f"--secret-key={user.secret_key}",
        )  # fmt: skip
        return user

    def process_lifecycle(self) -> None:
        """Apply every bucket's lifecycle rules now, rather than at the gateway's hour."""
        self._admin("lc", "process")

    def status(self) -> dict[str, object]:
        report: dict[str, object] = json.loads(self._ceph("status", "-f", "json"))
        return report

    def stop(self) -> None:
        # The gateway first, then the OSD, then the monitor.
        for daemon in reversed(self._daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        self._daemons.clear()


def rgw_environment(
    database_url: str,
    gateway: CephGateway,
    service_user: RgwUser,
    upload_user: RgwUser,
    **overrides: str,
) -> dict[str, str]:
    """mediagate's environment on the gateway. Its settings differ from the S3 test
    server's where the store does: no SSE-S3 (RGW 16 refuses it), events from an RGW
    topic, the upload credential granted by bucket policy, and a public endpoint
    (`localhost`) that is not the one the service uses (`127.0.0.1`), so a URL signed
    for the wrong host would fail."""
    return make_env(
        database_url,
        gateway.endpoint,
        S3_PUBLIC_ENDPOINT=f"http://localhost:{gateway.port}",
        S3_ACCESS_KEY=service_user.access_key,
        S3_SECRET_KEY=service_user.secret_key,
        S3_UPLOAD_ACCESS_KEY=upload_user.access_key,
        S3_UPLOAD_SECRET_KEY=upload_user.secret_key,
        S3_UPLOAD_PRINCIPAL=upload_user.principal,
        S3_SERVICE_PRINCIPAL=service_user.principal,
        S3_SSE="false",
        BUCKET_EVENTS_SOURCE="rgw",
        **overrides,
    )


def main() -> None:
    """Run a gateway in the foreground for `scripts/dev --store rgw`; prints its endpoint
    and two users (the service's and the upload credential) as one JSON line."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    gateway = CephGateway(args.workdir, args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        gateway.start()
        users = {name: gateway.create_user(name) for name in ("mediagate", "mediagate-upload")}
        report = {name: {**vars(user), "principal": user.principal} for name, user in users.items()}
        print(json.dumps({"endpoint": gateway.endpoint, "users": report}), flush=True)
        signal.pause()
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
