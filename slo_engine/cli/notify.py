"""`slo-engine notify-test`: check a Slack set-up by sending it a sample page."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

from slo_engine.cli.arguments import Commands
from slo_engine.redaction import redact


def register(commands: Commands) -> None:
    test = commands.add_parser(
        "notify-test", help="send a sample page to a Slack channel, to check the token, the "
        "base URL and the channel before a real incident does")
    test.add_argument("--channel", required=True, metavar="CHANNEL",
                      help="channel ID (C...) or #name the bot can post to")
    test.add_argument("--config", type=Path, default=None, metavar="FILE",
                      help="engine config (slo-engine.yaml): its slack section gives the token "
                      "and base_url; default: the token in SLACK_BOT_TOKEN")
    test.add_argument("--dry-run", action="store_true",
                      help="render the page in the terminal instead of sending it")
    test.set_defaults(handler=_notify_test)


def _notify_test(args: argparse.Namespace) -> int:
    from pydantic import SecretStr

    from slo_engine.config import SlackConfig, load_config
    from slo_engine.paging.page import render_page, sample_context
    from slo_engine.paging.slack import DryRunDelivery, SlackDelivery

    if args.config is not None:
        config = load_config(args.config)
        slack, prometheus_url = config.slack, config.prometheus.url
    else:
        token = os.environ.get("SLACK_BOT_TOKEN")
        slack = SlackConfig(token=SecretStr(token) if token else None)
        prometheus_url = "http://prometheus.example:9090"
    page = render_page(sample_context(datetime.now(UTC), redact(prometheus_url)))
    if args.dry_run or slack.dry_run:
        DryRunDelivery().post(args.channel, page)
        return 0
    delivery = SlackDelivery(slack)
    who = delivery.identity()
    posted = delivery.post(args.channel, page)
    print(f"sample page sent to {posted.channel} (ts {posted.ts}) as {who}, "
          f"via {redact(delivery.base_url)}")
    return 0
