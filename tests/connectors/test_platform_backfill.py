"""``engage-streams backfill --api platform`` against the fake platform API, into the real broker.

Run through ``engage_streams.cli.main`` with settings from the environment: twice publishes
each content once (and a third run only what is new), an interrupted run resumes where the
last acknowledged page ended, and the records are the ones the platform webhook gives. The
classic API's backfill keeps the same checkpoint (against tests/plugins/fake_engage.py).
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.backfill import backfill_contents, classic_source
from connectors.checkpoint import BackfillCheckpoint
from connectors.envelopes import parse_platform
from connectors.progress import ProgressBar
from connectors.publisher import KafkaPublisher
from engage_streams import cli
from engage_streams.record import ContentEvent, decode_event
from engage_streams.rest.classic import EngageRestClient
from engage_streams.settings import Settings
from simulator.platform_api import FakePlatform, serving_in_thread
from tests.plugins.fake_engage import TOKEN
from tests.plugins.topics import read_topic

START = datetime(2026, 3, 1, tzinfo=UTC)
CONTENTS = "/cx/social-messaging/v1/contents"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def conversation(count: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """Customers writing and agents answering, a minute apart, some at the same second."""
    contents = []
    for n in range(offset, offset + count):
        agent = n % 3 == 2
        contents.append(
            {
                "id": f"content-{n:05d}",
                "threadId": f"thread-{n // 3}",
                "channelId": "whatsapp-main",
                "channelType": "WhatsApp",
                "interventionId": f"intervention-{n // 3}",
                "authorIdentityId": f"identity-{'agent' if agent else n // 3}",
                "creatorId": "400131234008" if agent else None,
                "status": "UserReply" if agent else "New",
                "contentDirection": "Outgoing" if agent else "Incoming",
                "inReplyToContentId": f"content-{n - 1:05d}" if agent else None,
                "createdFrom": "Interface" if agent else "Synchronizer",
                # threes share a creation time: ties across page boundaries must not be lost
                "creationTime": iso(START + timedelta(minutes=n // 3)),
                "body": "words of a customer",
            }
        )
    return contents


@pytest.fixture
def platform(
    kafka_broker: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakePlatform]:
    platform = FakePlatform()
    suffix = uuid.uuid4().hex[:10]
    with serving_in_thread(platform) as url:
        for name, value in {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "ENGAGE_TOPIC": f"test.platform-backfill.{suffix}",
            "ENGAGE_DLQ_TOPIC": f"test.platform-backfill.{suffix}.dlq",
            "ENGAGE_TOPIC_PARTITIONS": "1",
            "ENGAGE_DATA_DIR": str(tmp_path / "data"),
            "RINGCENTRAL_SERVER_URL": url,
            "RINGCENTRAL_CLIENT_ID": platform.client_id,
            "RINGCENTRAL_CLIENT_SECRET": platform.client_secret,
            "RINGCENTRAL_JWT": platform.jwt,
        }.items():
            monkeypatch.setenv(name, value)
        yield platform


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["backfill", "--api", "platform", *args])
    out, err = capsys.readouterr()
    return code, out, err


def topic_records(topic_variable: str) -> list[Any]:
    """Every record of the topic the environment names, as the command saw it."""
    bootstrap, topic = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ[topic_variable]
    return asyncio.run(read_topic(bootstrap, topic, 0))


def events() -> list[ContentEvent]:
    return [decode_event(r.value) for r in topic_records("ENGAGE_TOPIC")]


@pytest.mark.kafka
def test_two_runs_publish_each_content_once(
    platform: FakePlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    platform.add_contents(conversation(1203))
    platform.add_content({"id": "no-thread", "creationTime": iso(START), "threadId": ""})

    code, out, err = run(capsys)
    assert code == 0, err
    assert "1203 records published, 1 to the DLQ, 0 already done" in out
    assert "backfill platform:" in err  # the progress line
    first = events()
    assert [e.content_id for e in first] == [f"content-{n:05d}" for n in range(1203)]
    ((dead,),) = [[orjson.loads(r.value) for r in topic_records("ENGAGE_DLQ_TOPIC")]]
    assert (dead["reason"], dead["endpoint"]) == ("missing_thread_id", "backfill")
    assert "words of a customer" not in str(dead)

    listed = platform.calls("GET", CONTENTS)
    code, out, _ = run(capsys)
    assert code == 0 and "0 records published, 0 to the DLQ" in out
    assert len(events()) == 1203
    assert platform.calls("GET", CONTENTS) - listed == 1  # the last page only, no re-reading

    platform.add_contents(conversation(4, offset=1203))  # new since the last run
    code, out, _ = run(capsys)
    assert code == 0 and "4 records published" in out
    assert [e.content_id for e in events()] == [f"content-{n:05d}" for n in range(1207)]


@pytest.mark.kafka
def test_records_are_the_ones_the_platform_webhook_gives(
    platform: FakePlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    contents = platform.add_contents(conversation(6))
    assert run(capsys)[0] == 0
    published = events()
    for content, record in zip(contents, published, strict=True):
        notification = {
            "uuid": f"n-{content['id']}",
            "event": f"{CONTENTS}/Imported",
            "timestamp": content["creationTime"],
            "body": content,
        }
        (live,) = parse_platform(
            orjson.dumps(notification), received_at=record.received_at, forward_body=False
        ).records
        assert (record.event_id, record.origin) == (f"backfill:{content['id']}", "backfill")
        same = {"event_id": record.event_id, "origin": "backfill"}
        assert record == live.__class__(**{**_fields(live), **same})
    assert [e.direction for e in published[:3]] == ["inbound", "inbound", "outbound"]
    assert published[2].agent_id == "400131234008" and published[2].body is None


def _fields(record: ContentEvent) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__struct_fields__}


@pytest.mark.kafka
def test_an_interrupted_run_resumes_after_the_last_acknowledged_page(
    platform: FakePlatform, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    platform.add_contents(conversation(2500))
    checkpoint = tmp_path / "resume.json"
    platform.fail(500, times=1, path=CONTENTS, after=1)  # the 2nd page of 1000 fails

    code, _, err = run(capsys, "--checkpoint", str(checkpoint))
    assert code == 1 and "list_contents" in err and "resume" in err
    assert len(events()) == 1000  # two acknowledged pages of 500
    saved = orjson.loads(checkpoint.read_bytes())
    assert saved["published"] == 1000
    # content 999 was the last acknowledged; 1000 was created in the same minute
    assert saved["watermark"] == (START + timedelta(minutes=333)).isoformat()
    assert saved["ids_at_watermark"] == ["content-00999"]

    assert saved["page_token"] is not None  # page 1 was all done: resume on page 2

    listed = len(platform.requests)
    code, out, err = run(capsys, "--checkpoint", str(checkpoint))
    assert code == 0, err
    assert "1500 records published" in out
    ids = [e.content_id for e in events()]
    assert ids == [f"content-{n:05d}" for n in range(2500)]  # each once, oldest first
    pages = [path for _, path in platform.requests[listed:] if path.startswith(CONTENTS)]
    assert len(pages) == 2 and "pageToken=" in pages[0]  # pages 2 and 3, not page 1 again


@pytest.mark.kafka
def test_a_page_token_the_platform_refuses_means_paging_from_the_start(
    platform: FakePlatform, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    platform.add_contents(conversation(1500))
    checkpoint = tmp_path / "stale.json"
    platform.fail(500, times=1, path=CONTENTS, after=1)
    assert run(capsys, "--checkpoint", str(checkpoint))[0] == 1
    saved = orjson.loads(checkpoint.read_bytes())
    checkpoint.write_bytes(orjson.dumps({**saved, "page_token": "expired!"}))

    listed = len(platform.requests)
    code, out, err = run(capsys, "--checkpoint", str(checkpoint))
    assert code == 0, err
    assert "500 records published, 0 to the DLQ" in out
    assert [e.content_id for e in events()] == [f"content-{n:05d}" for n in range(1500)]
    pages = [path for _, path in platform.requests[listed:] if path.startswith(CONTENTS)]
    assert "pageToken=expired" in pages[0] and "pageToken" not in pages[1]  # from page 1


@pytest.mark.kafka
def test_since_until_and_a_foreign_checkpoint(
    platform: FakePlatform, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    platform.add_contents(conversation(100))
    since, until = iso(START + timedelta(minutes=10)), iso(START + timedelta(minutes=20))
    code, out, _ = run(capsys, "--since", since, "--until", until)
    assert code == 0 and "30 records published" in out
    assert [e.content_id for e in events()] == [f"content-{n:05d}" for n in range(30, 60)]

    checkpoint = tmp_path / "shared.json"
    assert run(capsys, "--checkpoint", str(checkpoint), "--source", "whatsapp-main")[0] == 0
    code, _, err = run(capsys, "--checkpoint", str(checkpoint), "--source", "another-channel")
    assert code == 2 and "belongs to another backfill" in err

    with pytest.raises(SystemExit) as refused:  # argparse's own exit
        run(capsys, "--since", "last tuesday")
    assert refused.value.code == 2 and "not a time" in capsys.readouterr().err


def test_progress_bar_counts_without_a_terminal() -> None:
    ticks = iter(range(100))
    out = io.StringIO()
    bar = ProgressBar("backfill platform", stream=out, total=10, clock=lambda: next(ticks) * 20.0)
    bar.update(published=4, reached=START)
    bar.update(skipped=2, dead_lettered=1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[-1].startswith("backfill platform: [")
    assert "70% 7/10" in lines[-1] and "4 published, 1 to the DLQ" in lines[-1]
    assert "2 already done" in lines[-1] and "up to 2026-03-01T00:00:00+00:00" in lines[-1]


@pytest.mark.kafka
async def test_classic_backfill_resumes_from_its_checkpoint_too(
    fake: Any,  # the fake classic Engage API (tests/plugins/fake_engage.py)
    kafka_broker: Any,
    tmp_path: Path,
) -> None:
    _, url = fake
    suffix = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"test.classic-backfill.{suffix}",
        dlq_topic=f"test.classic-backfill.{suffix}.dlq",
        topic_partitions=1,
        engage_api_url=url,
    )
    await asyncio.to_thread(kafka_broker.create_topic, settings.topic, 1)
    await asyncio.to_thread(kafka_broker.create_topic, settings.dlq_topic, 1)
    path = tmp_path / "classic.json"
    publisher = KafkaPublisher(settings.kafka_bootstrap_servers)
    await publisher.start()
    try:
        async with EngageRestClient(url, TOKEN) as api:
            source = classic_source(api, base_url=url)
            checkpoint = BackfillCheckpoint.load(path, source.key)
            first = await backfill_contents(
                settings, source, publisher, limit=200, checkpoint=checkpoint
            )
            second = await backfill_contents(
                settings, source, publisher, checkpoint=BackfillCheckpoint.load(path, source.key)
            )
    finally:
        await publisher.stop()
    assert (first.published, second.published, second.skipped) == (200, 120, 200)
    records = await read_topic(settings.kafka_bootstrap_servers, settings.topic, 0)
    ids = [decode_event(r.value).content_id for r in records]
    assert ids == [f"content-{i:04d}" for i in range(320)]


@pytest.mark.kafka
def test_a_creator_id_is_the_agent_the_agents_config_names_as_on_the_live_webhook(
    platform: FakePlatform,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Backfill maps ``creatorId`` (an extension id) like the connector: to the agent id of
    the agents config file's ``rc_user_id`` (without the mapping it would keep the extension
    id, and the agent would be two rows on the leaderboard)."""
    agents = tmp_path / "agents.json"
    agents.write_text(
        '{"agents": {"agent-ada": {"name": "Ada Lovelace", "rc_user_id": "400131234008"}}}'
    )
    monkeypatch.setenv("ENGAGE_AGENTS_CONFIG", str(agents))
    contents = platform.add_contents(conversation(6))
    assert run(capsys)[0] == 0
    published = events()
    assert [e.agent_id for e in published] == [None, None, "agent-ada"] * 2
    for content, record in zip(contents, published, strict=True):
        notification = {
            "uuid": record.event_id,
            "event": f"{CONTENTS}/Imported",
            "timestamp": content["creationTime"],
            "body": {"resource": content},  # as the platform notifies it now
        }
        (live,) = parse_platform(
            orjson.dumps(notification),
            received_at=record.received_at,
            forward_body=False,
            agent_ids={"400131234008": "agent-ada"},
        ).records
        assert record == live.__class__(**{**_fields(live), "origin": "backfill"})


@pytest.mark.kafka
async def test_a_creator_id_is_the_engage_user_of_the_classic_users_rc_user_id(
    platform: FakePlatform,
    fake: Any,  # the fake classic Engage API, its GET /users carrying rc_user_id
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engage, url = fake
    engage.collections["users"] = [
        {"id": "5e9f8a7b6c5d4e0099887766", "firstname": "Ada", "rc_user_id": "400131234008"},
        {"id": "5e9f8a7b6c5d4e0099887767", "firstname": "Bo"},
    ]
    monkeypatch.setenv("ENGAGE_API_URL", url)
    monkeypatch.setenv("ENGAGE_API_TOKEN", TOKEN)
    platform.add_contents(conversation(3))
    # The command runs its own event loop: in a thread, while this loop serves the fake.
    code, _, err = await asyncio.to_thread(run, capsys, "--no-progress")
    assert code == 0, err
    agent_ids = [e.agent_id for e in await asyncio.to_thread(events)]
    assert agent_ids == [None, None, "5e9f8a7b6c5d4e0099887766"]


@pytest.mark.kafka
async def test_a_channel_type_is_the_classic_content_sources_type(
    platform: FakePlatform,
    fake: Any,  # the fake classic Engage API, its GET /content_sources carrying the type
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The platform says ``WhatsApp`` where the classic API says ``whatsapp_business``: a
    backfilled record spells the channel as the classic webhook's record of it does."""
    engage, url = fake
    engage.collections["content_sources"] = [
        {"id": "whatsapp-main", "name": "WhatsApp", "type": "whatsapp_business"}
    ]
    monkeypatch.setenv("ENGAGE_API_URL", url)
    monkeypatch.setenv("ENGAGE_API_TOKEN", TOKEN)
    platform.add_contents(conversation(3))
    code, _, err = await asyncio.to_thread(run, capsys, "--no-progress")
    assert code == 0, err
    types = {e.source_type for e in await asyncio.to_thread(events)}
    assert types == {"whatsapp_business"}
