"""A READER on a read-only mount of the store's directory, as the NRI hook has it.

The DaemonSet mounts /var/lib/dranet read-only into the hook. The file is in
WAL mode, held open by the plugin and the agent, and SQLite cannot create or
write anything in that directory: the reader must still open it and see rows
committed after it opened. The reader runs in a child process with a private
mount namespace (`unshare -m`) in which the directory is bind-mounted `ro`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dranet.store import Role, Store

from .store_helpers import BOOT, make_claim

READER = """
import errno, json, sys
from dranet.store import Role, Store
path = sys.argv[1]
try:
    open(path + "-probe", "w")
    sys.exit("the directory is writable: the read-only bind mount did not take")
except OSError as exc:
    assert exc.errno == errno.EROFS, exc
with Store(path, role=Role.READER, boot_id="boot-1111") as store:
    for line in sys.stdin:  # one pod uid a line -> its claim uids
        print(json.dumps([c.uid for c in store.claims_for_pod(line.strip())]), flush=True)
"""


def ask(reader: subprocess.Popen[str], pod_uid: str) -> list[str]:
    assert reader.stdin is not None and reader.stdout is not None
    reader.stdin.write(pod_uid + "\n")
    reader.stdin.flush()
    line = reader.stdout.readline()
    assert line, f"the reader died: {reader.communicate(timeout=10)[1]}"
    answer: list[str] = json.loads(line)
    return answer


@pytest.mark.root
def test_reader_opens_the_wal_store_in_a_read_only_directory(tmp_path: Path) -> None:
    db = tmp_path / "state" / "state.db"
    with (
        Store(db, role=Role.PLUGIN, boot_id=BOOT) as plugin,
        Store(db, role=Role.AGENT, boot_id=BOOT),
    ):
        plugin.put_claim(make_claim("claim-1", ("pod-a",)))
        assert {p.name for p in db.parent.iterdir()} >= {"state.db-wal", "state.db-shm"}
        d = str(db.parent)
        script = f'mount --bind -o ro "{d}" "{d}" && exec "$0" -c "$1" "$2"'
        reader = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private",
             "sh", "-c", script, sys.executable, READER, str(db)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert ask(reader, "pod-a") == ["claim-1"]
            assert ask(reader, "pod-b") == []
            plugin.put_claim(make_claim("claim-2", ("pod-b",)))  # after the reader opened
            assert ask(reader, "pod-b") == ["claim-2"]
            plugin.delete_claim("claim-1")
            assert ask(reader, "pod-a") == []
        finally:
            _, err = reader.communicate(timeout=30)
        assert reader.returncode == 0, err
    assert not (db.parent / "state.db-probe").exists()
