"""The study database keeps every sample once, in order, and refuses what it cannot read."""

import sqlite3

import numpy as np
import pytest

from watch import protocol as P
from wears.db import SCHEMA_VERSION, Study
from wears.errors import ProtocolError, WearsError
from wears.protocol import decode
from wears.record import SessionWriter


def _samples_packet(seq, first, values):
    buf = bytearray(256)
    n = P.pack_samples_header(buf, seq, 1000 + first * 10, P.PPG, len(values), first)
    for i, (ir, red) in enumerate(values):
        off = P.HEADER_SIZE + P.SAMPLES_BODY_SIZE + 8 * i
        buf[off:off + 8] = ir.to_bytes(4, "little") + red.to_bytes(4, "little")
    return bytes(buf[:n])


def _info_packet():
    buf = bytearray(64)
    n = P.pack_body(buf, P.STREAM_INFO, 0, 5, P.STREAM_INFO_BODY, P.PPG, 2, 100000, 1.0, 5)
    return bytes(buf[:n])


@pytest.fixture
def study(tmp_path):
    s = Study.open(tmp_path / "study.db")
    yield s
    s.close()


def test_new_database_is_at_the_current_schema_in_wal_mode(study):
    assert study.schema_version == SCHEMA_VERSION
    assert study.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_duplicate_and_reordered_packets_give_every_sample_exactly_once(study):
    sid = study.new_session("P01", device=("VW:01", "WEARS-VW01", "esp32s3-wrist"))
    writer = SessionWriter(study, sid)
    writer.handle("stream", decode(_info_packet()))
    packets = [_samples_packet(i + 1, 3 * i, [(100 + 3 * i + k, 50) for k in range(3)]) for i in range(4)]
    for raw in (packets[1], packets[0], packets[0], packets[3], packets[2], packets[3]):
        writer.handle("stream", decode(raw))
    writer.commit()
    data = study.stream(sid, P.PPG)
    assert data.first_index == 0 and data.gaps == 0
    assert data.samples[:, 0].tolist() == list(range(100, 112))
    assert writer.stats.duplicates == 2


def test_a_lost_packet_splits_the_stream_and_is_counted(study):
    sid = study.new_session("P01")
    writer = SessionWriter(study, sid)
    writer.handle("stream", decode(_info_packet()))
    for i in (0, 1, 3, 4, 5):
        writer.handle("stream", decode(_samples_packet(i + 1, 3 * i, [(i, 0)] * 3)))
    writer.commit()
    data = study.stream(sid, P.PPG)
    assert data.gaps == 3 and data.first_index == 9 and len(data.samples) == 9
    assert writer.stats.lost_samples == 3


def test_bad_packet_is_recorded_as_an_event_and_nothing_else_is_lost(study):
    sid = study.new_session("P01")
    writer = SessionWriter(study, sid)
    writer.handle("stream", decode(_info_packet()))
    writer.handle("stream", decode(_samples_packet(1, 0, [(7, 8)] * 3)))
    with pytest.raises(ProtocolError) as err:
        decode(b"\x01\x01\x02")
    writer.bad_packet("stream", b"\x01\x01\x02", err.value)
    writer.commit()
    assert study.sample_count(sid, P.PPG) == 3
    assert study.conn.execute("SELECT bad_packets FROM sessions WHERE id=?", (sid,)).fetchone()[0] == 1
    assert "bad packet" in study.conn.execute("SELECT text FROM events WHERE source='host'").fetchone()[0]


def test_committed_samples_survive_a_host_that_dies_without_closing(tmp_path):
    path = tmp_path / "study.db"
    study = Study.open(path)
    sid = study.new_session("P01")
    writer = SessionWriter(study, sid)
    writer.handle("stream", decode(_info_packet()))
    writer.handle("stream", decode(_samples_packet(1, 0, [(1, 2)] * 3)))
    writer.commit()
    # A second connection (another process would do the same) sees the committed rows at once.
    other = sqlite3.connect(path)
    assert other.execute("SELECT SUM(count) FROM chunks").fetchone()[0] == 3


def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(WearsError, match="not a WEARS study database"):
        Study.open(bad)


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(WearsError, match="schema"):
        Study.open(path)


def test_annotations_and_predictions_round_trip(study):
    sid = study.new_session("P02")
    study.add_annotations(sid, [(0, 60, "rest"), (60, 150, "pleasant")])
    study.add_prediction(sid, 1000, 3000, 0xABCD, 0, 1, (40, 215))
    study.commit()
    assert study.annotations(sid) == [(0.0, 60.0, "rest"), (60.0, 150.0, "pleasant")]
    assert study.predictions(sid)[0]["proba"] == [40, 215]
    np.testing.assert_equal(study.sample_count(sid, P.PPG), 0)


def test_a_streams_samples_for_training_come_from_the_first_boot_its_labels_are_timed_in(tmp_path):
    study = Study.open(tmp_path / "s.db")
    sid = study.new_session("P01")
    for boot, n in ((1, 50), (2, 200)):  # the watch rebooted; its second boot recorded longer
        for stream, channels in ((P.PPG, 2), (P.ACC, 3)):
            study.add_stream_info(sid, stream, channels, 100000, 1.0, 0, boot=boot)
            study.add_chunk(sid, stream, 0, n, 0, bytes(n * P.SAMPLE_SIZES[stream]), boot=boot)
    assert study.first_boot(sid) == 1
    ppg, acc = study.stream(sid, P.PPG), study.stream(sid, P.ACC)
    assert (ppg.boot, len(ppg.samples)) == (acc.boot, len(acc.samples)) == (1, 50)
