"""The collector and the upload, end to end over real sockets on 127.0.0.1.

A collector runs as ``probe collector serve`` in a subprocess (tests/collectorlib.py); the
probe side is :mod:`probe.upload` and ``probe run --once`` with ``[upload] url``. The main
test SIGKILLs the collector in the middle of the probes' campaigns and while an upload
streams, restarts it, and checks the archive holds exactly the measurements made.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from collectorlib import Collector, measurement
from loopback import internet

from probe import consent, store
from probe.__main__ import main
from probe.config import Upload
from probe.upload import OUTBOX, REFUSED, enqueue, pending, send

ROOT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "x.toml"
RECORDS = {"x.com": {"A": ["127.0.0.1"]}, "www.example.com": {"A": ["127.0.0.1"]}}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "collector").start()
    yield c
    c.stop()


def post(url: str, body: Any, *, raw: bytes | None = None, **headers: str) -> httpx.Response:
    data = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(url, content=data, headers=headers, timeout=10)


def open_report(c: Collector, m: dict[str, Any], token: str = "") -> str:
    keys = ("probe_asn", "probe_cc", "test_name", "software_name", "software_version",
            "test_version", "data_format_version")  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    r = post(f"{c.url}/report", {"format": "json", **{k: m[k] for k in keys}}, **auth)
    assert r.status_code == 200, r.text
    assert r.json()["supported_formats"] == ["json"]
    return str(r.json()["report_id"])


def test_upload_sends_everything_once_and_a_resend_adds_nothing(
    tmp_path: Path, collector: Collector
) -> None:
    state = tmp_path / "state"
    made = [measurement("AS64500", f"r{i % 3}") for i in range(30)]
    made += [measurement("AS64501", "b") for _ in range(10)]
    enqueue(state, made)
    u = Upload(url=collector.url, max_time=30)
    sent = asyncio.run(send(state, u))
    assert (sent.sent, sent.refused, sent.left) == (40, 0, 0)
    assert pending(state) == [] and not list((state / OUTBOX).glob("*.done"))
    # the answers were lost: the same measurements are sent again, and none is archived twice
    enqueue(state, made)
    assert asyncio.run(send(state, u)).sent == 40
    archived = collector.archived()
    assert sorted(m["measurement_uid"] for m in archived) == sorted(
        m["measurement_uid"] for m in made
    )
    assert collector.indexed() == 40
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert {
        p.relative_to(collector.data).as_posix() for p in store.iter_files([collector.data])
    } == {f"archive/AS64500/{day}.jsonl", f"archive/AS64501/{day}.jsonl"}
    # the collector's report id replaces the probe's (bk-003): one report per probe report
    assert len({m["report_id"] for m in archived}) == 4


def test_a_measurement_holding_the_probe_address_is_never_sent(
    tmp_path: Path, collector: Collector
) -> None:
    state = tmp_path / "state"
    leaky = measurement(probe_network_name="ISP 203.0.113.77")
    loopback_ip = measurement(probe_ip="203.0.113.77")
    clean = measurement(probe_network_name="ISP 203.0.113.770")  # a longer number: not it
    enqueue(state, [leaky, loopback_ip, clean])
    sent = asyncio.run(send(state, Upload(url=collector.url), frozenset({"203.0.113.77"})))
    assert (sent.sent, sent.refused, sent.left) == (1, 2, 0)
    assert [m["measurement_uid"] for m in collector.archived()] == [clean["measurement_uid"]]
    assert not (state / OUTBOX / REFUSED).exists()  # not even copied aside


def test_bad_submissions_get_a_4xx_naming_the_field(collector: Collector) -> None:
    m = measurement()
    report = open_report(collector, m)
    url = f"{collector.url}/report/{report}"
    bad = json.loads(json.dumps(m)) | {"report_id": report}
    bad["test_keys"]["queries"][0]["failure"] = "no_such_failure"
    r = post(url, {"format": "json", "content": bad})
    assert r.status_code == 400 and r.json()["field"] == "test_keys.queries.0.failure"
    r = post(url, {"format": "json", "content": m})  # the probe's report_id, not the collector's
    assert r.status_code == 400 and r.json()["field"] == "report_id"
    wrong_asn = m | {"report_id": report, "probe_asn": "AS1"}
    assert post(url, {"format": "json", "content": wrong_asn}).json()["field"] == "probe_asn"
    assert post(url, None, raw=b"{not json").status_code == 400
    assert post(url, None, raw=b"[1]").status_code == 400
    assert post(url, {"format": "json", "content": "x"}).json()["field"] == "content"
    # what no archive line may hold (invalid JSON once written back): a 400, never a 500
    good = json.dumps({"format": "json", "content": m | {"report_id": report}})
    for evil in ('"input": "\\ud800"', '"input": NaN'):
        raw = good.replace('"input": "https://x.com/"', evil)
        assert evil in raw
        r = post(url, None, raw=raw.encode())
        assert (r.status_code, r.json()["error"]) == (400, "body: not JSON")
    r = post(f"{collector.url}/report", {"format": "json", "probe_asn": "AS../../etc"})
    assert r.status_code == 400 and r.json()["field"] == "probe_asn"
    # bounded: on the wire, once inflated (a gzip bomb), unknown encodings
    assert post(url, None, raw=b"x" * (2 << 20)).status_code == 413
    bomb = gzip.compress(b" " * (64 << 20))
    assert len(bomb) < 1 << 20
    r = post(url, None, raw=bomb, **{"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "inflated" in r.json()["error"]
    assert post(url, None, raw=b"x", **{"Content-Encoding": "br"}).status_code == 415
    assert post(url, None, raw=b"x", **{"Content-Encoding": "gzip"}).status_code == 400
    assert post(f"{collector.url}/report/nope", {}).status_code == 404
    assert post(f"{url}/close", {}).json() == {"status": "success"}
    ok = m | {"report_id": report}
    assert post(url, {"format": "json", "content": ok}).status_code == 409  # closed
    assert collector.indexed() == 0


def test_rate_per_report_is_limited(tmp_path: Path) -> None:
    c = Collector(tmp_path / "c", "--rate", "0.01", "--burst", "3").start()
    try:
        m = measurement()
        report = open_report(c, m)
        codes = [
            post(f"{c.url}/report/{report}",
                 {"format": "json", "content": measurement(report_id=report)}).status_code
            for _ in range(5)
        ]  # fmt: skip
        assert codes[:3] == [200] * 3 and 429 in codes[3:]
        other = open_report(c, m)  # another report has its own budget
        r = post(
            f"{c.url}/report/{other}", {"format": "json", "content": measurement(report_id=other)}
        )
        assert r.status_code == 200
    finally:
        c.stop()


def test_tokens_are_required_and_a_report_is_its_probes_alone(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("# probe tokens\nalice s3cret-a\nbob s3cret-b\n")
    c = Collector(tmp_path / "c", "--tokens", str(tmp_path / "tokens")).start()
    try:
        m = measurement()
        assert post(f"{c.url}/report", {"format": "json", **m}).status_code == 401
        report = open_report(c, m, token="s3cret-a")
        content = {"format": "json", "content": measurement(report_id=report)}
        url = f"{c.url}/report/{report}"
        assert post(url, content, Authorization="Bearer s3cret-b").status_code == 404
        assert post(f"{url}/close", {}, Authorization="Bearer s3cret-b").status_code == 404
        assert post(url, content, Authorization="Bearer s3cret-a").status_code == 200
        state = tmp_path / "state"
        enqueue(state, [measurement()])
        u = Upload(url=c.url, token="wrong", max_time=5)
        assert asyncio.run(send(state, u)).left == 1  # kept for when the token is fixed
        assert asyncio.run(send(state, Upload(url=c.url, token="s3cret-b"))).sent == 1
    finally:
        c.stop()


def test_a_torn_tail_and_unindexed_lines_are_recovered(tmp_path: Path) -> None:
    from probe.collector.store import Entry, Store

    s = Store(tmp_path)
    made = [measurement() for _ in range(3)]
    line = [json.dumps(m).encode() for m in made]
    s.add([Entry.of(made[0], line[0])])
    path = next((tmp_path / "archive").rglob("*.jsonl"))
    with open(path, "ab") as f:  # a batch fsynced but not committed, then a torn line
        f.write(line[1] + b"\n" + line[2][:100])
    s.close()
    s = Store(tmp_path)
    assert s.recover() == 1 and s.count() == 2
    s.add([Entry.of(made[1], line[1]), Entry.of(made[2], line[2]), Entry.of(made[2], line[2])])
    assert s.count() == 3
    uids = [m["measurement_uid"] for m in store.read([tmp_path / "archive"])]
    assert sorted(uids) == sorted(m["measurement_uid"] for m in made)
    # a past day is compressed at the next day's first batch, indexed before
    s.add([Entry.of(m := measurement(), json.dumps(m).encode())], now=time.time() + 86400)
    assert len(list((tmp_path / "archive").rglob("*.jsonl.gz"))) == 1
    assert len(list(store.read([tmp_path / "archive"]))) == 4
    s.close()


def run_once(tmp_path: Path, config: str, state: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    consent.record(state)
    monkeypatch.setenv("PROBE_STATE_DIR", str(state))
    path = state / "config.toml"
    path.write_text(config)
    return main(["run", "--once", "--config", str(path), "--output", str(state / "results")])


def test_probes_upload_through_a_collector_killed_mid_campaign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Collector(tmp_path / "collector").start()
    probes = {asn: tmp_path / asn for asn in ("AS64500", "AS64501")}
    try:
        with internet(tmp_path, RECORDS) as net:
            base = net.config(["x.com"], ["www.example.com"])
            for campaign in range(4):
                if campaign == 2:
                    c.kill()  # the collector dies between two probes' campaigns
                for asn, state in probes.items():
                    config = base.replace('"AS64500"', f'"{asn}"')
                    config += f'[upload]\nurl = "{c.url}"\nmax_time = 1.5\n'
                    assert run_once(tmp_path, config, state, monkeypatch) == 0
                if campaign == 2:
                    assert all(pending(s) for s in probes.values())  # waiting in the outbox
                    c.start()
        # a big backlog streams while the collector is SIGKILLed and restarted
        backlog = tmp_path / "AS64500"
        enqueue(backlog, [measurement("AS64500", f"r{i % 7}") for i in range(600)])
        killed_at: list[int] = []
        killer = threading.Thread(target=kill_when, args=(c, 200, killed_at))
        killer.start()
        sent = asyncio.run(send(backlog, Upload(url=c.url, max_time=60)))
        killer.join()
        assert sent.left == 0 and sent.refused == 0
        assert 16 + 200 <= killed_at[0] < 616  # the kill came in the middle of the stream
        made = [m for s in probes.values() for m in store.read([s / "results"])]
        archived = c.archived()
        assert len(made) == 16 and len(archived) == 616 == c.indexed()
        uids = [m["measurement_uid"] for m in archived]
        assert len(set(uids)) == len(uids)
        assert {m["measurement_uid"] for m in made} <= set(uids)
        # probe report over the collector's archive tells each ISP's story
        out = tmp_path / "report.json"
        assert main(["report", str(c.data / "archive"), "--json", str(out)]) == 0
        text = out.read_text()
        assert "AS64500" in text and "AS64501" in text
    finally:
        c.stop()


def kill_when(c: Collector, count: int, killed_at: list[int]) -> None:
    """SIGKILL the collector once it has ``count`` more lines, then start it again."""
    before = c.indexed()
    deadline = time.monotonic() + 30
    while c.indexed() < before + count and time.monotonic() < deadline:
        time.sleep(0.01)
    c.kill()
    killed_at.append(c.indexed())
    time.sleep(0.5)
    c.start()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('url = "http://collector.example.org"', "upload.url: expected an https:// URL"),
        ('proxy = "http://127.0.0.1:9050"', "upload.proxy: expected socks5h://"),
        ('ca_bundle = "/nonexistent.pem"', "upload.ca_bundle: expected a readable PEM"),
    ],
)
def test_upload_config_is_checked(tmp_path: Path, line: str, problem: str) -> None:
    from probe.config import ConfigError, load

    key = line.split()[0]  # the [upload] key's line in the shipped config becomes ``line``
    head, upload = ROOT_CONFIG.read_text().split("[upload]\n")
    text = head + "[upload]\n" + re.sub(rf"^{key} = .*$", line, upload, count=1, flags=re.M)
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem.replace(".", r"\.", 1)):
        load(path)


def test_tls_with_a_pinned_ca(tmp_path: Path) -> None:
    from probe.lab.pki import Authority, write_pair

    ca = Authority.create("collector CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    cert, key = write_pair(ca.issue(["localhost"], ip_addresses=["127.0.0.1"]), tmp_path, "c")
    c = Collector(tmp_path / "c", "--tls-cert", str(cert), "--tls-key", str(key))
    c.start(scheme="https", ca=str(tmp_path / "ca.pem"))
    try:
        state = tmp_path / "state"
        enqueue(state, [measurement()])
        url = f"https://127.0.0.1:{c.port}"
        unpinned = asyncio.run(send(state, Upload(url=url, max_time=2)))
        assert unpinned.sent == 0 and unpinned.left == 1  # the system CAs do not vouch for it
        pinned = asyncio.run(send(state, Upload(url=url, ca_bundle=str(tmp_path / "ca.pem"))))
        assert pinned.sent == 1 and len(c.archived()) == 1
    finally:
        c.stop()


async def socks5_server(seen: list[str]) -> asyncio.Server:
    """A minimal SOCKS5 proxy on 127.0.0.1 (no auth, CONNECT) that records the names asked."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, methods = await reader.readexactly(2)
        await reader.readexactly(methods)
        writer.write(b"\x05\x00")
        _, _, _, kind = await reader.readexactly(4)
        assert kind == 3  # a name: socks5h leaves the resolving to the proxy
        name = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        seen.append(name)
        assert name == "localhost"  # the proxy resolves it; only to loopback here
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_upload_through_a_socks5h_proxy(tmp_path: Path, collector: Collector) -> None:
    state, seen = tmp_path / "state", []
    enqueue(state, [measurement(), measurement()])

    async def upload() -> int:
        proxy = await socks5_server(seen)
        port = proxy.sockets[0].getsockname()[1]
        u = Upload(url=f"http://localhost:{collector.port}", proxy=f"socks5h://127.0.0.1:{port}")
        sent = await send(state, u)
        proxy.close()
        return sent.sent

    assert asyncio.run(upload()) == 2
    assert seen and set(seen) == {"localhost"} and len(collector.archived()) == 2
